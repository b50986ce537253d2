using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>
/// A LoRA adapter on one projection, with PEFT's layout and semantics: y += scale · B(A(dropout(x))), A [r, in] and
/// B [out, r] float32 parameters (registered by the owning <see cref="Projection"/> as <c>lora_A.weight</c> /
/// <c>lora_B.weight</c>, PEFT's names). The one place that draws LoRA dropout masks (<see cref="KeepMask"/>).
/// </summary>
internal sealed class LoraAdapter
{
    public LoraAdapter(long inFeatures, long outFeatures, int rank, double scale, double dropout, Generator gen, Device device)
    {
        // A ~ U(−1/√in, 1/√in) (kaiming_uniform_ with a = √5), B = 0, as PEFT initializes them.
        var bound = 1.0 / Math.Sqrt(inFeatures);
        A = Linear(inFeatures, rank, hasBias: false, device: device, dtype: ScalarType.Float32);
        B = Linear(rank, outFeatures, hasBias: false, device: device, dtype: ScalarType.Float32);
        using (no_grad())
        {
            using var a = rand([rank, inFeatures], ScalarType.Float32, generator: gen) * (2 * bound) - bound;
            A.weight!.copy_(a);
            B.weight!.zero_();
        }
        Scale = scale;
        Dropout = dropout;
    }

    public Linear A { get; }
    public Linear B { get; }
    public double Scale { get; }
    public double Dropout { get; }

    /// <summary>Set by the decoder layer for one forward: the generator of the dropout masks, so a checkpointed layer's
    /// recomputation draws the same masks. Null: no dropout.</summary>
    public Generator? DropoutGenerator { get; set; }

    /// <summary>The keep mask (bool, shaped like the adapter's input) for this call, or null when no dropout applies.
    /// Drawn on the CPU from <see cref="DropoutGenerator"/> (TorchSharp 0.107's Generator(seed, cuda) is a CPU
    /// generator that CUDA rand rejects) and copied: the same bits on every device.</summary>
    public Tensor? KeepMask(long[] shape, Device device, bool training) =>
        training && Dropout > 0 && DropoutGenerator is { } g ? rand(shape, ScalarType.Float32, CPU, generator: g).ge_(Dropout).to(device) : null;

    /// <summary>scale · B(A(x·keep/(1−p))) in x's dtype (the float32 parameters cast to it, gradients landing in
    /// float32), the same operations in the same order as the fused NF4 node.</summary>
    public Tensor Delta(Tensor x, Tensor? keep)
    {
        var h = keep is null ? x : x * keep.to(x.dtype) * (1.0 / (1.0 - Dropout));
        return functional.linear(functional.linear(h, A.weight!.to(x.dtype)), B.weight!.to(x.dtype)) * Scale;
    }
}
