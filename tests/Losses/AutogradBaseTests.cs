using NUnit.Framework;
using SlothSharp.Autograd;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>y = x · factor (+ b): the smallest op on the SlothSharp autograd base, as an example for new ops.</summary>
internal sealed record ScalePlan(double Factor, bool FailInBackward = false, bool GradientForNullInput = false);

internal sealed class ScaleFunction : SlothFunction<ScaleFunction, ScalePlan>
{
    public override string Name => "SlothSharp.Tests.Scale";

    protected override Tensor Forward(autograd.AutogradContext ctx, ScalePlan plan, Tensor?[] inputs)
    {
        var (x, b) = (inputs[0]!, inputs[1]);
        ctx.save_for_backward([x, b]);  // saved only to show SavedTensors; this op's backward does not need them
        var y = x * plan.Factor;
        return b is null ? y : y.add_(b);
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, ScalePlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        if (plan.FailInBackward) throw new InvalidDataException("boom in backward");
        var b = saved[1];
        if (plan.GradientForNullInput) return [gradOutput * plan.Factor, gradOutput.sum(dim: 0)];
        return [gradOutput * plan.Factor, b is null ? null : gradOutput.sum(dim: 0)];
    }
}

/// <summary>(x · a, x · b): an op with two outputs on <see cref="SlothMultiFunction{TSelf, TPlan}"/>.</summary>
internal sealed record TwoScalesPlan(double A, double B);

internal sealed class TwoScalesFunction : SlothMultiFunction<TwoScalesFunction, TwoScalesPlan>
{
    public override string Name => "SlothSharp.Tests.TwoScales";

    protected override List<Tensor> Forward(autograd.AutogradContext ctx, TwoScalesPlan plan, Tensor?[] inputs) =>
        [inputs[0]! * plan.A, inputs[0]! * plan.B];

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, TwoScalesPlan plan, List<Tensor> gradOutputs) =>
        [gradOutputs[0] * plan.A + gradOutputs[1] * plan.B];
}

[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class AutogradBaseTests(string deviceName) : DeviceFixture(deviceName)
{
    [Test]
    public void TinyOpMatchesAutogradAndFiniteDifferences([Values] bool withBias)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(5);
        var x = randn([4, 3], ScalarType.Float64, generator: gen).to(Dev).requires_grad_();
        var b = randn([3], ScalarType.Float64, generator: gen).to(Dev).requires_grad_();
        var up = randn([4, 3], ScalarType.Float64, generator: gen).to(Dev);

        var expected = x * 2.0 + (withBias ? b : zeros_like(b));
        expected.backward([up]);
        var (ex, eb) = (x.grad!.clone(), b.grad?.clone());
        x.grad!.zero_();
        b.grad?.zero_();

        var actual = ScaleFunction.Apply(new ScalePlan(2.0), x, withBias ? b : null);
        actual.backward([up]);
        TestEnv.AssertClose(actual, expected, 1e-12, "y");
        TestEnv.AssertClose(x.grad!, ex, 1e-12, "dx against autograd");
        if (withBias) TestEnv.AssertClose(b.grad!, eb!, 1e-12, "db against autograd");
        else Assert.That(b.grad, Is.Null, "b was not an input");

        // Central differences of L = <up, f(x)> against the analytic gradient.
        using var noGrad = no_grad();
        var fd = zeros_like(x);
        const double h = 1e-6;
        for (var i = 0; i < x.numel(); i++)
        {
            var e = zeros_like(x).flatten();
            e[i] = tensor(h, ScalarType.Float64);
            e = e.reshape(x.shape);
            var plus = ScaleFunction.Apply(new ScalePlan(2.0), x + e, withBias ? b : null);
            var minus = ScaleFunction.Apply(new ScalePlan(2.0), x - e, withBias ? b : null);
            fd.flatten()[i] = ((plus - minus) * up).sum() / (2 * h);
        }
        TestEnv.AssertClose(x.grad!, fd, 1e-8, "dx against finite differences");
    }

    [Test]
    public void TwoOutputOpMatchesAutograd()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(6);
        var x = randn([6], ScalarType.Float64, generator: gen).to(Dev).requires_grad_();
        var (u1, u2) = (randn([6], ScalarType.Float64, generator: gen).to(Dev), randn([6], ScalarType.Float64, generator: gen).to(Dev));
        ((x * 2.0 * u1).sum() + (x * -0.5 * u2).sum()).backward();
        var expected = x.grad!.clone();
        x.grad!.zero_();
        var ys = TwoScalesFunction.Apply(new TwoScalesPlan(2.0, -0.5), x);
        TestEnv.AssertClose(ys[1], x * -0.5, 1e-12, "second output");
        ((ys[0] * u1).sum() + (ys[1] * u2).sum()).backward();
        TestEnv.AssertClose(x.grad!, expected, 1e-12, "dx");
    }

    [Test]
    public void ABackwardFailureRaisesTheEventAndIsRethrownOnceByTheNextCall()
    {
        using var scope = NewDisposeScope();
        var x = randn([5], generator: new Generator(1)).to(Dev).requires_grad_();
        var seen = new List<BackwardFailedEventArgs>();
        EventHandler<BackwardFailedEventArgs> handler = (_, e) => { lock (seen) seen.Add(e); };
        SlothAutograd.BackwardFailed += handler;
        try
        {
            ScaleFunction.Apply(new ScalePlan(3.0, FailInBackward: true), x, null).sum().backward();  // must not end the process
            Assert.That(x.grad, Is.Null, "no gradient for the failed step");
            Assert.That(seen, Has.Count.EqualTo(1));
            Assert.That(seen[0].Function, Is.EqualTo("SlothSharp.Tests.Scale"));
            Assert.That(seen[0].Exception, Is.InstanceOf<InvalidDataException>());
            var ex = Assert.Throws<SlothBackwardException>(() => ScaleFunction.Apply(new ScalePlan(1.0), x, null))!;
            Assert.That(ex, Is.InstanceOf<InvalidOperationException>());
            Assert.That(ex.InnerException, Is.InstanceOf<InvalidDataException>());
            Assert.DoesNotThrow(() => SlothAutograd.ThrowIfBackwardFailed(), "thrown once, then cleared");
            Assert.DoesNotThrow(() => ScaleFunction.Apply(new ScalePlan(1.0), x, null));
        }
        finally
        {
            SlothAutograd.BackwardFailed -= handler;
        }
    }

    /// <summary>Gradients TorchSharp would reject inside its callback (ending the process) are caught by the guard.</summary>
    [Test]
    public void AGradientForANullInputIsAReportedFailureNotACrash()
    {
        using var scope = NewDisposeScope();
        var x = randn([2, 3], generator: new Generator(4)).to(Dev).requires_grad_();
        ScaleFunction.Apply(new ScalePlan(2.0, GradientForNullInput: true), x, null).sum().backward();
        Assert.That(x.grad, Is.Null);
        var ex = Assert.Throws<SlothBackwardException>(() => SlothAutograd.ThrowIfBackwardFailed())!;
        Assert.That(ex.InnerException!.Message, Does.Contain("input 1, which was null"));
    }

    [Test]
    public void ReturnedGradientsAreReleasedByTheThreadThatReturnedThem()
    {
        Assume.That(DeviceName == "cpu", "CPU backwards run on the calling thread; CUDA ones on the engine's device thread");
        using var scope = NewDisposeScope();
        var x = randn([5], generator: new Generator(2)).requires_grad_();
        ScaleFunction.Apply(new ScalePlan(2.0), x, null).sum().backward();
        Assert.That(AutogradState.Current.Held, Is.EqualTo(1), "dx is held until the engine surely has its own reference");
        ScaleFunction.Apply(new ScalePlan(2.0), x, null);
        Assert.That(AutogradState.Current.Held, Is.Zero, "the next call on this thread released it");
        TestEnv.AssertClose(x.grad!, full([5], 2.0f), 0, "the gradient survives the release");
    }

    /// <summary>CUDA backwards run on the engine's device thread; the next SlothSharp call on the user's thread makes that
    /// thread release what it returned (through a one-element backward), so nothing dW-sized lingers into the forward.</summary>
    [Test]
    public void CudaGradientsHeldByTheEngineThreadAreReleasedByTheNextCall()
    {
        Assume.That(DeviceName == "cuda", "the engine's device thread exists for CUDA only");
        using var scope = NewDisposeScope();
        var x = randn([5], generator: new Generator(3)).to(Dev).requires_grad_();
        ScaleFunction.Apply(new ScalePlan(2.0), x, null).sum().backward();
        ScaleFunction.Apply(new ScalePlan(2.0), x, null);
        Assert.That(AutogradState.CudaDevicesHeldByOthers(AutogradState.Current), Is.Null,
            "another thread still holds returned CUDA gradients after the next call");
        TestEnv.AssertClose(x.grad!.cpu(), full([5], 2.0f), 0, "the gradient survives the release");
    }

    /// <summary>Forward and backward on several threads at once: every thread's gradients stay correct (a release on
    /// one thread must never dispose what another thread's backward just returned).</summary>
    [Test]
    public void ConcurrentThreadsKeepTheirGradients()
    {
        const int threads = 4, steps = 50;
        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        var workers = Enumerable.Range(0, threads).Select(k => new Thread(() =>
        {
            try
            {
                for (var s = 0; s < steps; s++)
                {
                    using var scope = NewDisposeScope();
                    var x = full([64], (float)(k + 1), device: Dev).requires_grad_();
                    var factor = 1.0 + s % 3;
                    ScaleFunction.Apply(new ScalePlan(factor), x, null).sum().backward();
                    var g = x.grad!.cpu();
                    if (g.min().item<float>() != (float)factor || g.max().item<float>() != (float)factor)
                        errors.Add($"thread {k} step {s}: dx {g.min().item<float>()}..{g.max().item<float>()}, expected {factor}");
                }
            }
            catch (Exception e)
            {
                errors.Add($"thread {k}: {e}");
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        Assert.That(errors, Is.Empty);
    }
}
