using NUnit.Framework;
using SlothSharp.Autograd;
using SlothSharp.Losses;
using SlothSharp.Models;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// CausalLM.RecomputeNorms: the projections that consume a decoder layer's input or pre-MLP norm keep the norm's input
/// instead of its output and make the output again in backward. The same loss and LoRA gradients bit for bit as with
/// the option off, across the layouts that feed norms into projections differently (Llama: q, k and v each take the
/// input norm; Phi-3: fused qkv_proj and gate_up_proj; Gemma: unit-offset norms plus post-norms that feed residual
/// adds; Qwen3: Q/K norms into RoPE), with LoRA dropout, checkpointed layers and RecomputeAttention; and the norm
/// outputs are really not kept.
/// </summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class RecomputedNormsTests(string device) : DeviceFixture(device)
{
    private static ModelConfig Config(string layout) => layout switch
    {
        "llama" => ModelPresets.Tiny with { QkvBias = true, OutputBias = true },
        "phi3" => ModelPresets.Tiny with { Family = ModelFamilies.Phi3, ModelType = "phi3", FusedQkv = true, FusedGateUp = true },
        "gemma" => ModelPresets.Tiny with { UnitOffsetNorms = true, SandwichNorms = true, Activation = GateActivation.GeluTanh },
        "qwen3" => ModelPresets.Tiny with { QkNorm = true },
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, null),
    };

    private CausalLM Model(string layout, ScalarType dtype, double dropout, IReadOnlyList<string>? targets = null)
    {
        var model = CausalLM.CreateRandom(Config(layout), 5, new LoadOptions { Device = Dev, ComputeDtype = dtype });
        model.AddLora(new LoraConfig(Rank: 4, Alpha: 8, Dropout: dropout, TargetModules: targets), seed: 3);
        using (no_grad())
        {
            foreach (var (_, p) in model.LoraParameters()) p.normal_(0, 0.05);  // B = 0 would leave A without gradient
            // Norm weights away from their identity init: a recomputation with the wrong weight (or offset) would show.
            foreach (var (name, p) in model.named_parameters())
                if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.add_(randn_like(p) * 0.3);
        }
        model.train();
        return model;
    }

    private Tensor Ids(CausalLM model) => randint(0, model.Config.VocabSize, [2, 24], generator: new Generator(9)).to(Dev);

    private static Tensor Loss(CausalLM model, Tensor ids)
    {
        var hidden = model.Forward(ids);
        var t = ids.shape[1];
        return FusedLinearCrossEntropy.Apply(hidden.narrow(1, 0, t - 1), model.LmHeadWeight, null, ids.narrow(1, 1, t - 1));
    }

    private static (double Loss, List<Tensor> Grads) Step(CausalLM model, Tensor ids)
    {
        foreach (var (_, p) in model.LoraParameters()) p.grad = null;
        manual_seed(77);
        var loss = Loss(model, ids);
        loss.backward();
        SlothAutograd.ThrowIfBackwardFailed();
        return (loss.item<float>(), model.LoraParameters().Select(kv => kv.Value.grad!.clone()).ToList());
    }

    private static void AssertSameBits(CausalLM model, (double Loss, List<Tensor> Grads) got, (double Loss, List<Tensor> Grads) want)
    {
        Assert.That(got.Loss, Is.EqualTo(want.Loss), "loss");
        var names = model.LoraParameters().Select(kv => kv.Key).ToList();
        for (var i = 0; i < names.Count; i++) Assert.That(TestEnv.BitEqual(got.Grads[i], want.Grads[i]), Is.True, names[i]);
    }

    [TestCase("llama", ScalarType.Float32, 0.25, false, false)]
    [TestCase("llama", ScalarType.Float32, 0.0, false, false)]
    [TestCase("llama", ScalarType.Float32, 0.25, true, false)]
    [TestCase("llama", ScalarType.Float32, 0.25, false, true)]
    [TestCase("llama", ScalarType.Float32, 0.25, true, true)]
    [TestCase("llama", ScalarType.BFloat16, 0.25, false, true)]
    [TestCase("phi3", ScalarType.Float32, 0.25, false, false)]
    [TestCase("phi3", ScalarType.Float32, 0.25, true, true)]
    [TestCase("phi3", ScalarType.BFloat16, 0.0, false, false)]
    [TestCase("gemma", ScalarType.Float32, 0.25, false, false)]
    [TestCase("gemma", ScalarType.BFloat16, 0.25, true, false)]
    [TestCase("qwen3", ScalarType.Float32, 0.25, false, true)]
    public void RecomputedNormsGiveTheSameBits(string layout, ScalarType dtype, double dropout, bool checkpoint, bool recomputeAttention)
    {
        using var scope = NewDisposeScope();
        using var model = Model(layout, dtype, dropout);
        model.GradientCheckpointing = checkpoint;
        model.RecomputeAttention = recomputeAttention;
        var ids = Ids(model);
        var kept = Step(model, ids);
        model.RecomputeNorms = true;
        var recomputed = Step(model, ids);
        AssertSameBits(model, recomputed, kept);
        Assert.That(kept.Grads.All(g => g.abs().max().item<float>() > 0), Is.True, "every adapter gets a gradient");
    }

    /// <summary>Adapters on some projections only: a norm output feeds projections with and without one (those without
    /// keep nothing of x either way).</summary>
    [TestCase("llama")]
    [TestCase("phi3")]
    public void SomeProjectionsWithoutAdaptersGiveTheSameBits(string layout)
    {
        using var scope = NewDisposeScope();
        string[] targets = layout == "phi3" ? ["qkv_proj", "down_proj"] : ["k_proj", "up_proj", "o_proj"];
        using var model = Model(layout, ScalarType.Float32, 0.25, targets);
        var ids = Ids(model);
        var kept = Step(model, ids);
        model.RecomputeNorms = true;
        AssertSameBits(model, Step(model, ids), kept);
    }

    /// <summary>
    /// Every norm output that feeds projections is overwritten with NaN after the forward. With the option on, backward
    /// never reads them: the gradients are those of an untouched step, bit for bit. With it off, the projections kept
    /// them, so that backward is refused (autograd's check of saved tensors modified in place) — what would happen
    /// with the option on if a projection still kept its input.
    /// </summary>
    [TestCase("llama")]
    [TestCase("phi3")]
    public void NormOutputsAreNotKeptForBackward(string layout)
    {
        using var scope = NewDisposeScope();
        using var model = Model(layout, ScalarType.Float32, 0.25);
        var ids = Ids(model);
        model.RecomputeNorms = true;
        var untouched = Step(model, ids);
        foreach (var recompute in new[] { true, false })
        {
            model.RecomputeNorms = recompute;
            var spy = new NormOutputSpy(model.FusedKernelSet);
            model.InstallKernels(spy);
            try
            {
                foreach (var (_, p) in model.LoraParameters()) p.grad = null;
                manual_seed(77);
                var loss = Loss(model, ids);
                Assert.That(spy.Outputs, Has.Count.EqualTo(2 * model.Config.NumHiddenLayers), "an input and a pre-MLP norm per layer");
                using (no_grad())
                    foreach (var o in spy.Outputs) o.fill_(double.NaN);
                loss.backward();
                if (recompute)
                {
                    SlothAutograd.ThrowIfBackwardFailed();
                    AssertSameBits(model, (loss.item<float>(), model.LoraParameters().Select(kv => kv.Value.grad!.clone()).ToList()), untouched);
                }
                else Assert.Throws<SlothBackwardException>(SlothAutograd.ThrowIfBackwardFailed, "the kept norm outputs were overwritten");
            }
            finally
            {
                foreach (var o in spy.Outputs) o.Dispose();
                model.UseFusedKernels = true;  // the model's own kernels back
            }
        }
    }

    [Test]
    public void TheOptionReachesOnlyTheFusedKernels()
    {
        using var model = Model("llama", ScalarType.Float32, 0);
        model.RecomputeNorms = true;
        Assert.That(model.RecomputeNorms, Is.True);
        Assert.That(model.Model.Layers[0].InputNorm.Kernels, Is.SameAs(DecoderKernels.FusedWith(false, true)));
        model.RecomputeAttention = true;
        Assert.That(model.Model.Layers[0].Mlp.Down.Kernels, Is.SameAs(DecoderKernels.FusedWith(true, true)));
        model.UseFusedKernels = false;
        Assert.That(model.Model.Layers[0].InputNorm.Kernels, Is.SameAs(DecoderKernels.Reference));
        Assert.That(model.RecomputeNorms, Is.True, "kept for when the fused kernels come back");
        model.UseFusedKernels = true;
        model.RecomputeAttention = false;
        Assert.That(model.Model.Layers[1].Attention.Kernels, Is.SameAs(DecoderKernels.FusedWith(false, true)));
        model.RecomputeNorms = false;
        Assert.That(model.Model.Layers[1].PreMlpNorm.Kernels, Is.SameAs(DecoderKernels.Fused));
    }

    /// <summary>The model's kernels, recording (as aliases) every norm output that feeds projections.</summary>
    private sealed class NormOutputSpy(DecoderKernels inner) : DecoderKernels
    {
        public List<Tensor> Outputs { get; } = [];

        public override NormedInput ProjectionNorm(Tensor x, Tensor weight, double eps, bool unitOffset)
        {
            var normed = inner.ProjectionNorm(x, weight, eps, unitOffset);
            Outputs.Add(normed.Value.alias().DetachFromDisposeScope());
            return normed;
        }

        public override Tensor Linear(Projection p, Tensor x) => inner.Linear(p, x);
        public override Tensor Linear(Projection p, NormedInput x) => inner.Linear(p, x);
        public override Tensor GatedLinear(Projection down, Tensor gate, Tensor up, GateActivation activation) => inner.GatedLinear(down, gate, up, activation);
        public override Tensor Norm(Tensor x, Tensor weight, double eps, bool unitOffset) => inner.Norm(x, weight, eps, unitOffset);
        public override Tensor Rope(Tensor x, Tensor cos, Tensor sin) => inner.Rope(x, cos, sin);
        public override Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal) => inner.Attention(q, k, v, mask, causal);
        public override Tensor SoftcapAttention(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap, SoftcapSpanCache? spans = null) =>
            inner.SoftcapAttention(q, k, v, allowed, scale, cap, spans);
    }
}
