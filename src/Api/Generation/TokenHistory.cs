using static TorchSharp.torch;

namespace SlothSharp.Generation;

/// <summary>Which tokens each row has seen, for the repetition penalty: bool [B, V] on the model's device, built from
/// the prompts and extended with each step's chosen ids on the device (no host round trip).</summary>
internal static class TokenHistory
{
    /// <summary>bool [rows, vocab] on <paramref name="device"/>: true where the row's prompt holds the token.</summary>
    public static Tensor FromPrompts(IReadOnlyList<IReadOnlyList<int>> rows, int vocab, Device device)
    {
        var seen = new bool[rows.Count * (long)vocab];
        for (var r = 0; r < rows.Count; r++)
            foreach (var id in rows[r]) seen[r * (long)vocab + id] = true;
        using var cpu = tensor(seen, ScalarType.Bool).reshape(rows.Count, vocab);
        return cpu.to(device);
    }

    /// <summary>Marks chosen int64 [B] (on the history's device) as seen, in place.</summary>
    public static void Add(Tensor seen, Tensor chosen)
    {
        using var scope = NewDisposeScope();
        var index = chosen.reshape(-1, 1);
        seen.scatter_(1, index, ones(index.shape, ScalarType.Bool, seen.device));
    }
}
