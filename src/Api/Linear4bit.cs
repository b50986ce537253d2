using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp;

/// <summary>
/// A frozen linear layer with an NF4 weight (bitsandbytes' Linear4bit): y = x · dequant(W)ᵀ + b.
/// x: [..., in_features] of float32/float16/bfloat16 on the weight's device; y: [..., out_features] in x's dtype.
/// The dequantized weight is a temporary per call (the autograd graph keeps it only while it needs it for dx).
/// The weight receives no gradient; train adapters (LoRA) beside it.
/// </summary>
public sealed class Linear4bit : Module<Tensor, Tensor>
{
    private readonly Nf4Weight _weight;

    public Linear4bit(Nf4Weight weight, Tensor? bias = null, string name = "Linear4bit") : base(name)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Shape.Length != 2)
            throw new ArgumentException($"a linear weight is [out, in]; got [{string.Join(", ", weight.Shape)}]", nameof(weight));
        _weight = weight;
        if (bias is not null)
        {
            if (bias.ndim != 1 || bias.shape[0] != weight.Shape[0])
                throw new ArgumentException($"bias must be [{weight.Shape[0]}]; got [{string.Join(", ", bias.shape)}]", nameof(bias));
            TensorInterop.RequireSameDevice(weight.Packed, "weight", bias, nameof(bias));
            Bias = bias.detach();
            register_buffer("bias", Bias);
        }
    }

    /// <summary>Quantizes a dense weight [out, in] (and keeps an optional bias [out]).</summary>
    public static Linear4bit FromDense(Tensor weight, Tensor? bias = null, int blocksize = Nf4Weight.DefaultBlocksize) =>
        new(Nf4Weight.Quantize(weight, blocksize), bias?.detach().clone());

    public Nf4Weight Weight => _weight;
    public Tensor? Bias { get; }
    public long InFeatures => _weight.Shape[1];
    public long OutFeatures => _weight.Shape[0];

    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.ndim < 1 || input.shape[^1] != InFeatures)
            throw new ArgumentException($"input's last dimension must be {InFeatures}; got [{string.Join(", ", input.shape)}]", nameof(input));
        if (!TensorInterop.IsFloating16Or32(input.dtype))
            throw new ArgumentException($"input must be float32, float16 or bfloat16; got {input.dtype}", nameof(input));
        TensorInterop.RequireSameDevice(_weight.Packed, "weight", input, nameof(input));
        // Disposing the handle only drops this reference: autograd keeps its own for dx.
        using var w = _weight.Dequantize(input.dtype);
        using var b = Bias?.to(input.dtype);
        return functional.linear(input, w, b);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _weight.Dispose();
        base.Dispose(disposing);
    }
}
