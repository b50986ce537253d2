using NUnit.Framework;
using SlothSharp.Autograd;
using SlothSharp.Losses;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>An exception in a loss backward must not end the process, and must not pass silently.</summary>
public class BackwardErrorTests
{
    [Test]
    public void AnExceptionInBackwardIsRethrownByTheNextCall()
    {
        using var scope = NewDisposeScope();
        var (x, w, b, y) = LossReference.Problem([8], 8, 20, ScalarType.Float32, CPU, 1);
        var calls = 0;
        // Forward calls f once per chunk (2 chunks); the backward recomputation fails.
        ChunkLoss failing = (z, t) => ++calls > 2 ? throw new InvalidDataException("boom in backward") : z.sum();
        var loss = ChunkedLinearLoss.Apply(x, w, b, y, failing, new ChunkedLossOptions { ChunkRows = 4, Reduction = LossReduction.Sum });
        loss.backward();  // must not crash the process
        Assert.That(x.grad, Is.Null, "no gradient for the failed step");
        var ex = Assert.Throws<SlothBackwardException>(() => FusedLinearCrossEntropy.Apply(x, w, b, y))!;
        Assert.That(ex, Is.InstanceOf<InvalidOperationException>());
        Assert.That(ex.InnerException, Is.InstanceOf<InvalidDataException>());
        Assert.That(ex.Function, Is.EqualTo("SlothSharp.ChunkedLinearLoss"));
        Assert.DoesNotThrow(() => SlothAutograd.ThrowIfBackwardFailed(), "thrown once, then cleared");
    }
}
