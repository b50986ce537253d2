using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>How <see cref="CausalLM.FromPretrained"/> loads a checkpoint.</summary>
public sealed class LoadOptions
{
    /// <summary>Where the model lives (default: the CPU).</summary>
    public Device? Device;

    /// <summary>Activations, embeddings, norms and dense weights (default: bfloat16 on CUDA, float32 on the CPU).</summary>
    public ScalarType? ComputeDtype;

    /// <summary>NF4 decoder projections (default). False: a dense reference (a bnb-4bit checkpoint is dequantized).</summary>
    public bool Quantize = true;

    /// <summary>One line per loading step (file opened, layer quantized, …).</summary>
    public IProgress<string>? Progress;

    /// <summary>How an NF4 weight read from a bnb-4bit checkpoint (on the CPU, checkpoint key as the first argument) is
    /// placed on <see cref="Device"/> when <see cref="Quantize"/> is on; null: a full copy (<c>Nf4Weight.To</c>).
    /// <see cref="Distributed.ShardedCausalLM.LoadPretrained"/> keeps only a rank's shard through it.</summary>
    internal Func<string, Nf4Weight, Device, Nf4Weight>? PlaceNf4;

    /// <summary>The device and compute dtype these options give (defaults filled in, the dtype checked).</summary>
    internal (Device Device, ScalarType Dtype) Resolve()
    {
        var device = Device ?? CPU;
        var dtype = ComputeDtype ?? (device.type == TorchSharp.DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32);
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"ComputeDtype must be float32, bfloat16 or float16; got {dtype}", nameof(ComputeDtype));
        return (device, dtype);
    }
}
