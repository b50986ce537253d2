using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>How <see cref="LlamaForCausalLM.FromPretrained"/> loads a checkpoint.</summary>
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
    /// <see cref="Distributed.ShardedLlama.LoadPretrained"/> keeps only a rank's shard through it.</summary>
    internal Func<string, Nf4Weight, Device, Nf4Weight>? PlaceNf4;
}
