using NUnit.Framework;
using SlothSharp.Losses;
using SlothSharp.Models;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// CausalLM.SoftcapAttentionMethod on a Gemma-2-style model (soft-capped attention): Flash puts the one-pass kernels in
/// place where they run (CUDA, bf16/f16) and keeps the blocks elsewhere, so on the CPU the loss and the LoRA gradients
/// are those of the default bit for bit; on CUDA in bf16 they agree within the dtype's rounding (the blocks round the
/// scores to the dtype, the one-pass kernels keep them in float32).
/// </summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class SoftcapAttentionOptionTests(string device) : DeviceFixture(device)
{
    private static readonly ModelConfig Gemma2 = ModelPresets.Tiny with
    {
        UnitOffsetNorms = true, SandwichNorms = true, Activation = GateActivation.GeluTanh, AttentionSoftcap = 50.0,
    };

    private CausalLM Model(ScalarType dtype)
    {
        var model = CausalLM.CreateRandom(Gemma2, 5, new LoadOptions { Device = Dev, ComputeDtype = dtype });
        model.AddLora(new LoraConfig(Rank: 4, Alpha: 8), seed: 3);
        using (no_grad())
            foreach (var (_, p) in model.LoraParameters()) p.normal_(0, 0.05);
        model.train();
        return model;
    }

    private static (double Loss, Tensor[] Grads) Step(CausalLM model, Tensor ids)
    {
        foreach (var (_, p) in model.LoraParameters()) p.grad = null;
        var t = ids.shape[1];
        var loss = FusedLinearCrossEntropy.Apply(model.Forward(ids).narrow(1, 0, t - 1), model.LmHeadWeight, null, ids.narrow(1, 1, t - 1));
        loss.backward();
        return (loss.to(ScalarType.Float64).item<double>(), [.. model.LoraParameters().Select(p => p.Value.grad!.to(ScalarType.Float32).cpu())]);
    }

    [Test]
    public void FlashMatchesTheBlocksWhereItRunsAndIsTheBlocksElsewhere()
    {
        using var scope = NewDisposeScope();
        var dtype = DeviceName == "cpu" ? ScalarType.Float32 : ScalarType.BFloat16;
        using var model = Model(dtype);
        Assert.That(model.SoftcapAttentionMethod, Is.EqualTo(SoftcapAttentionMethod.Auto), "default");
        var ids = randint(0, model.Config.VocabSize, [2, 40], generator: new Generator(9)).to(Dev);
        var blocks = Step(model, ids);
        model.SoftcapAttentionMethod = SoftcapAttentionMethod.Flash;
        var flash = Step(model, ids);
        if (DeviceName == "cpu")
        {
            Assert.That(flash.Loss, Is.EqualTo(blocks.Loss), "the CPU keeps the blocks: the same bits");
            for (var i = 0; i < blocks.Grads.Length; i++) Assert.That(TestEnv.BitEqual(flash.Grads[i], blocks.Grads[i]), Is.True, $"gradient {i}");
        }
        else
        {
            Assert.That(flash.Loss, Is.EqualTo(blocks.Loss).Within(2e-2 * Math.Abs(blocks.Loss)));
            for (var i = 0; i < blocks.Grads.Length; i++) TestEnv.AssertClose(flash.Grads[i], blocks.Grads[i], 1e-1, $"gradient {i}");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => model.SoftcapAttentionMethod = (SoftcapAttentionMethod)7);
    }

    /// <summary>The fused kernels' soft-capped attention takes K and V grouped (each KV head serving H/KV query heads)
    /// where the reference kernels expand them as transformers' repeat_kv does: at every group size (4 query heads over
    /// 1, 2 and 4 KV heads), with the window biting on the sliding layers, the loss and the LoRA gradients agree (float32
    /// on the CPU; bf16 on CUDA within its rounding).</summary>
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(4)]
    public void FusedMatchesTheReferenceAtEveryGroupSize(int kvHeads)
    {
        using var scope = NewDisposeScope();
        var dtype = DeviceName == "cpu" ? ScalarType.Float32 : ScalarType.BFloat16;
        var cfg = Gemma2 with { NumAttentionHeads = 4, NumKeyValueHeads = kvHeads, SlidingWindow = 7, SlidingLayers = new LayerPattern(Period: 2) };
        using var model = CausalLM.CreateRandom(cfg, 5, new LoadOptions { Device = Dev, ComputeDtype = dtype });
        model.AddLora(new LoraConfig(Rank: 4, Alpha: 8), seed: 3);
        using (no_grad())
            foreach (var (_, p) in model.LoraParameters()) p.normal_(0, 0.05);
        model.train();
        var ids = randint(0, model.Config.VocabSize, [2, 19], generator: new Generator(10)).to(Dev);
        Assert.That(model.UseFusedKernels, Is.True, "the default");
        var fused = Step(model, ids);
        model.UseFusedKernels = false;
        var reference = Step(model, ids);
        var (lossTol, gradTol) = DeviceName == "cpu" ? (1e-5, 1e-4) : (2e-2, 1e-1);
        Assert.That(fused.Loss, Is.EqualTo(reference.Loss).Within(lossTol * Math.Abs(reference.Loss)), "loss");
        for (var i = 0; i < reference.Grads.Length; i++) TestEnv.AssertClose(fused.Grads[i], reference.Grads[i], gradTol, $"gradient {i}");
    }
}
