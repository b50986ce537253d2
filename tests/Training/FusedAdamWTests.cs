using NUnit.Framework;
using SlothSharp.Optim;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>FusedAdamW (flat buffers) against TorchSharp's optim.AdamW: the same parameters bit for bit in float32.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class FusedAdamWTests(string device) : DeviceFixture(device)
{
    // LoRA-like shapes (A [r, in], B [out, r]) plus odd sizes.
    private static readonly long[][] Shapes = [[4, 64], [64, 4], [16, 40], [40, 16], [7], [3, 5], [1, 1]];

    private List<Parameter> MakeParams(int seed)
    {
        var gen = new Generator((ulong)seed);
        return Shapes.Select(s => new Parameter(randn(s, ScalarType.Float32, generator: gen).to(Dev))).ToList();
    }

    private static List<Tensor> Grads(int step, Device dev)
    {
        var gen = new Generator((ulong)(100 + step));
        return Shapes.Select(s => (randn(s, ScalarType.Float32, generator: gen) * (step + 1)).to(dev)).ToList();
    }

    [TestCase(0.0)]
    [TestCase(0.01)]
    public void EqualsTorchSharpAdamWBitForBit(double weightDecay)
    {
        using var scope = NewDisposeScope();
        var reference = MakeParams(1);
        var fusedParams = MakeParams(1);
        using var torchOpt = optim.AdamW(reference, lr: 3e-3, beta1: 0.85, beta2: 0.99, eps: 1e-6, weight_decay: weightDecay);
        using var fused = new FusedAdamW(fusedParams, lr: 3e-3, beta1: 0.85, beta2: 0.99, eps: 1e-6, weightDecay: weightDecay);
        for (var step = 0; step < 6; step++)
        {
            torchOpt.zero_grad();
            fused.zero_grad();
            var grads = Grads(step, Dev);
            // Gradients arrive as autograd delivers them: accumulated into .grad by backward.
            for (var i = 0; i < Shapes.Length; i++)
            {
                (reference[i] * grads[i]).sum().backward();
                (fusedParams[i] * grads[i]).sum().backward();
            }
            if (step == 3)
            {
                foreach (var g in torchOpt.ParamGroups) g.LearningRate = 1e-3;
                fused.LearningRate = 1e-3;
            }
            torchOpt.step();
            fused.step();
            for (var i = 0; i < Shapes.Length; i++)
                Assert.That(fusedParams[i].cpu().data<float>().ToArray(), Is.EqualTo(reference[i].cpu().data<float>().ToArray()),
                    $"step {step + 1}, parameter {i}");
        }
        var states = torchOpt.state_dict().State.Cast<AdamW.State>().ToList();
        for (var i = 0; i < Shapes.Length; i++)
        {
            Assert.That(fused.States[i].ExpAvg.cpu().data<float>().ToArray(), Is.EqualTo(states[i].exp_avg.cpu().data<float>().ToArray()), $"exp_avg {i}");
            Assert.That(fused.States[i].ExpAvgSq.cpu().data<float>().ToArray(), Is.EqualTo(states[i].exp_avg_sq.cpu().data<float>().ToArray()), $"exp_avg_sq {i}");
            Assert.That(fused.States[i].Step, Is.EqualTo(states[i].step));
        }
    }

    [Test]
    public void ReplacedOrMissingGradientsAreTakenBack()
    {
        using var scope = NewDisposeScope();
        var reference = MakeParams(2);
        var fusedParams = MakeParams(2);
        using var torchOpt = optim.AdamW(reference, lr: 1e-2, weight_decay: 0.01);
        using var fused = new FusedAdamW(fusedParams, lr: 1e-2);
        var grads = Grads(0, Dev);
        for (var i = 0; i < Shapes.Length; i++)
        {
            reference[i].grad = grads[i].clone();
            fusedParams[i].grad = grads[i].clone();  // a new tensor instead of the flat buffer's view
        }
        torchOpt.step();
        fused.step();
        for (var i = 0; i < Shapes.Length; i++)
            Assert.That(fusedParams[i].cpu().data<float>().ToArray(), Is.EqualTo(reference[i].cpu().data<float>().ToArray()), $"parameter {i}");
        // And the view is attached again: backward accumulates into the flat buffer.
        fused.zero_grad();
        (fusedParams[0] * 2).sum().backward();
        using var flat = fused.FlatGradients;
        Assert.That(flat.narrow(0, 0, fusedParams[0].numel()).cpu().data<float>().ToArray(), Is.All.EqualTo(2f));
    }

    [Test]
    public void BadArguments()
    {
        using var scope = NewDisposeScope();
        var p = new Parameter(zeros(3, device: Dev));
        Assert.Throws<ArgumentException>(() => new FusedAdamW([]));
        Assert.Throws<ArgumentException>(() => new FusedAdamW([new Parameter(zeros(3, ScalarType.Float64, Dev))]));
        Assert.Throws<ArgumentException>(() => new FusedAdamW([p, p]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FusedAdamW([p], lr: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FusedAdamW([p], beta1: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FusedAdamW([p], weightDecay: double.NaN));
    }
}
