using System.Globalization;

namespace SlothSharp.Cli;

/// <summary>What a worker of <see cref="DistributedLauncher"/> finds in its environment: its rank, the number of
/// workers, its CUDA device and the NCCL unique id (hex), under these variable names. One source of truth for both
/// sides.</summary>
public sealed record DistributedEnvironment(int Rank, int WorldSize, int Device, byte[] NcclId)
{
    public const string RankVariable = "SLOTHSHARP_RANK";
    public const string WorldSizeVariable = "SLOTHSHARP_WORLD_SIZE";
    public const string DeviceVariable = "SLOTHSHARP_DEVICE";
    public const string NcclIdVariable = "SLOTHSHARP_NCCL_ID";

    /// <summary>Joins the launcher's NCCL communicator on this worker's device (blocks until every worker has joined).</summary>
    public SlothSharp.Distributed.NcclCommunicator CreateCommunicator() =>
        SlothSharp.Distributed.NcclCommunicator.Create(NcclId, WorldSize, Rank, Device);

    /// <summary>The variables that make a process rank <paramref name="rank"/> of <paramref name="worldSize"/>.</summary>
    public static IReadOnlyDictionary<string, string> For(int rank, int worldSize, int device, byte[] ncclId) => new Dictionary<string, string>
    {
        [RankVariable] = rank.ToString(CultureInfo.InvariantCulture),
        [WorldSizeVariable] = worldSize.ToString(CultureInfo.InvariantCulture),
        [DeviceVariable] = device.ToString(CultureInfo.InvariantCulture),
        [NcclIdVariable] = Convert.ToHexString(ncclId),
    };

    /// <summary>This process's worker settings, or null when it was not started as a worker (no
    /// <see cref="RankVariable"/>). A partial or malformed set is an error naming the variable.</summary>
    public static DistributedEnvironment? Read(Func<string, string?>? getVariable = null)
    {
        getVariable ??= Environment.GetEnvironmentVariable;
        if (string.IsNullOrEmpty(getVariable(RankVariable))) return null;
        int Int(string name, int min)
        {
            var text = getVariable(name);
            if (string.IsNullOrEmpty(text)) throw new ArgumentException($"{name} is not set, but {RankVariable} is: a worker needs {RankVariable}, {WorldSizeVariable}, {DeviceVariable} and {NcclIdVariable}");
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) || v < min)
                throw new ArgumentException($"{name} = '{text}' must be an integer >= {min}");
            return v;
        }
        var size = Int(WorldSizeVariable, 1);
        var rank = Int(RankVariable, 0);
        if (rank >= size) throw new ArgumentException($"{RankVariable} = {rank} must be below {WorldSizeVariable} = {size}");
        var device = Int(DeviceVariable, 0);
        var idText = getVariable(NcclIdVariable) ?? "";
        byte[] id;
        try
        {
            id = Convert.FromHexString(idText);
        }
        catch (FormatException)
        {
            throw new ArgumentException($"{NcclIdVariable} must be hexadecimal; got '{(idText.Length > 16 ? idText[..16] + "…" : idText)}'");
        }
        if (id.Length != Interop.SlothConstants.NcclUniqueIdBytes)
            throw new ArgumentException($"{NcclIdVariable} holds {id.Length} bytes; an NCCL unique id has {Interop.SlothConstants.NcclUniqueIdBytes}");
        return new DistributedEnvironment(rank, size, device, id);
    }
}
