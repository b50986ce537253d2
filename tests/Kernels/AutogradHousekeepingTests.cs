using NUnit.Framework;
using SlothSharp.Autograd;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>What the autograd base frees (NodeHousekeeping) must not change results: an output whose gradient is
/// undefined still gets zeros (TorchSharp's output-sized cache is gone), and a second backward through a released
/// graph is a reported failure, not a crash or a wrong gradient.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class AutogradHousekeepingTests(string deviceName) : DeviceFixture(deviceName)
{
    [Test]
    public void AnUnusedOutputGetsZeroGradient([Values(0, 1)] int used)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(8);
        var x = randn([6], ScalarType.Float64, generator: gen).to(Dev).requires_grad_();
        var u = randn([6], ScalarType.Float64, generator: gen).to(Dev);
        var ys = TwoScalesFunction.Apply(new TwoScalesPlan(2.0, -0.5), x);
        (ys[used] * u).sum().backward();
        SlothAutograd.ThrowIfBackwardFailed();
        TestEnv.AssertClose(x.grad!, u * (used == 0 ? 2.0 : -0.5), 1e-12, "dx");
    }

    [Test]
    public void ASecondBackwardThroughAReleasedNodeIsReported()
    {
        using var scope = NewDisposeScope();
        var x = randn([4, 5], generator: new Generator(2)).to(Dev).requires_grad_();
        var b = randn([5], generator: new Generator(3)).to(Dev).requires_grad_();
        var loss = ScaleFunction.Apply(new ScalePlan(3.0), x, b).sum();
        loss.backward(retain_graph: true);
        TestEnv.AssertClose(x.grad!, full_like(x, 3.0), 1e-6, "first backward");
        loss.backward();
        Assert.Throws<SlothBackwardException>(SlothAutograd.ThrowIfBackwardFailed);
    }
}
