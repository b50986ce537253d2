using static TorchSharp.torch;
using TorchSharp.Modules;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>QLoRA's linear layer: a frozen NF4 base plus a trainable low-rank update,
/// y = x·dequant(W)ᵀ + (x·Aᵀ·Bᵀ)·(alpha / rank). A: [rank, in] (uniform ±1/√in), B: [out, rank] (zeros, so training
/// starts from the base model). Dropout is 0. The adapters are kept in float32 (optimizer updates of small
/// parameters would otherwise be rounded to bf16) and cast to the input's dtype in forward.</summary>
public sealed class LoraLinear4bit : Module<Tensor, Tensor>
{
    private readonly Linear4bit _base;
    private readonly Parameter lora_A;
    private readonly Parameter lora_B;
    private readonly double _scale;

    /// <summary>Quantizes <paramref name="weight"/> [out, in] (any device; quantization runs on the CPU) and creates
    /// the float32 adapters on <paramref name="device"/>.</summary>
    public LoraLinear4bit(Tensor weight, int rank, double alpha, Generator gen, Device device, string name = "LoraLinear4bit")
        : base(name)
    {
        if (rank < 1) throw new ArgumentOutOfRangeException(nameof(rank), rank, "must be >= 1");
        using var q = Nf4Weight.Quantize(weight);
        var onDevice = q.To(device);
        onDevice.DetachFromDisposeScope();
        _base = new Linear4bit(onDevice);
        var (outF, inF) = (weight.shape[0], weight.shape[1]);
        var bound = 1.0 / Math.Sqrt(inF);
        lora_A = new Parameter(((rand([rank, inF], generator: gen) * 2 - 1) * bound).to(device));
        lora_B = new Parameter(zeros([outF, rank], ScalarType.Float32, device));
        _scale = alpha / rank;
        RegisterComponents();
    }

    public IEnumerable<Parameter> Adapters => [lora_A, lora_B];

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = _base.forward(x) + x.matmul(lora_A.to(x.dtype).t()).matmul(lora_B.to(x.dtype).t()) * _scale;
        return y.MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _base.Dispose();
        base.Dispose(disposing);
    }
}
