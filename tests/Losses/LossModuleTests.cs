using NUnit.Framework;
using SlothSharp.Losses;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The module forms of the losses give exactly what the static functions give.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class LossModuleTests(string deviceName) : DeviceFixture(deviceName)
{
    private void SameAsFunction(Func<Tensor, Tensor, Tensor?, Tensor, Tensor> module, Func<Tensor, Tensor, Tensor?, Tensor, Tensor> function, bool bias)
    {
        using var scope = NewDisposeScope();
        var (x, w, b, y) = LossReference.Problem([3, 7], 16, 41, ScalarType.Float32, Dev, 11);
        var bb = bias ? b : null;
        var expected = function(x, w, bb, y);
        expected.backward();
        var (ex, ew, eb) = (LossReference.Grad(x)!, LossReference.Grad(w)!, LossReference.Grad(b));
        LossReference.ZeroGrads(x, w, b);
        var actual = module(x, w, bb, y);
        actual.backward();
        Assert.That(TestEnv.BitEqual(actual, expected), "loss");
        Assert.That(TestEnv.BitEqual(x.grad!, ex), "dX");
        Assert.That(TestEnv.BitEqual(w.grad!, ew), "dW");
        if (bias) Assert.That(TestEnv.BitEqual(b.grad!, eb!), "db");
    }

    [Test]
    public void FusedModule([Values] bool bias)
    {
        var o = new CrossEntropyOptions { ChunkRows = 5, LabelSmoothing = 0.1 };
        using var m = new FusedLinearCrossEntropyLoss(o);
        SameAsFunction((x, w, b, y) => b is null ? m.call(x, w, y) : m.forward(x, w, b, y),
            (x, w, b, y) => FusedLinearCrossEntropy.Apply(x, w, b, y, o), bias);
    }

    [Test]
    public void ChunkedCrossEntropyModule([Values] bool bias)
    {
        var o = new CrossEntropyOptions { ChunkRows = 5, ZLoss = 1e-3 };
        using var m = new ChunkedLinearCrossEntropyLoss(o);
        SameAsFunction((x, w, b, y) => b is null ? m.call(x, w, y) : m.forward(x, w, b, y),
            (x, w, b, y) => ChunkedLinearLoss.CrossEntropy(x, w, b, y, o), bias);
    }

    [Test]
    public void GenericChunkedModule([Values] bool bias)
    {
        var o = new ChunkedLossOptions { ChunkRows = 4, Reduction = LossReduction.Sum };
        var f = ChunkLosses.TokenLogProb(softcap: 3);
        using var m = new ChunkedLinearLossModule(f, o);
        SameAsFunction((x, w, b, y) => b is null ? m.call(x, w, y) : m.forward(x, w, b, y),
            (x, w, b, y) => ChunkedLinearLoss.Apply(x, w, b, y, f, o), bias);
    }

    [Test]
    public void ModulesHoldOptionsAndNoTensors()
    {
        using var fused = new FusedLinearCrossEntropyLoss();
        using var chunked = new ChunkedLinearCrossEntropyLoss(new CrossEntropyOptions { IgnoreIndex = -1 });
        Assert.That(fused.state_dict(), Is.Empty);
        Assert.That(chunked.parameters(), Is.Empty);
        Assert.That(fused.Options, Is.EqualTo(new CrossEntropyOptions()));
        Assert.That(chunked.Options.IgnoreIndex, Is.EqualTo(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FusedLinearCrossEntropyLoss(new CrossEntropyOptions { LabelSmoothing = 2 }));
        Assert.Throws<ArgumentNullException>(() => new ChunkedLinearLossModule(null!));
    }
}

/// <summary>The chunk-size rule, one definition for both losses.</summary>
public class ChunkOptionsTests
{
    [Test]
    public void DefaultChunksFollowTheByteBudgetWithTheFusedFloor()
    {
        var o = new CrossEntropyOptions();
        Assert.That(o.RowsPerChunk(128256, ChunkOptions.MinDefaultChunkRows), Is.EqualTo(512), "256 MiB / (128256 × 4) = 523, rounded down to a multiple of 128");
        Assert.That(o.RowsPerChunk(256000, ChunkOptions.MinDefaultChunkRows), Is.EqualTo(512), "the fused floor");
        Assert.That(o.RowsPerChunk(256000), Is.EqualTo(256), "the chunked path has no floor (262 rounded down to 256)");
        Assert.That((o with { ChunkBytes = 100L * 4 * 255 }).RowsPerChunk(100), Is.EqualTo(255), "fewer than 256 rows are not rounded");
        Assert.That((o with { ChunkBytes = 100L * 4 * 1000 }).RowsPerChunk(100), Is.EqualTo(896), "1000 rows round down to 896");
        Assert.That((o with { ChunkRows = 523 }).RowsPerChunk(100), Is.EqualTo(523), "explicit rows are not rounded");
        Assert.That((o with { ChunkRows = 7 }).RowsPerChunk(256000, ChunkOptions.MinDefaultChunkRows), Is.EqualTo(7), "explicit rows win");
        Assert.That((o with { ChunkBytes = 4000 }).RowsPerChunk(100, ChunkOptions.MinDefaultChunkRows), Is.EqualTo(10), "explicit bytes win");
        Assert.That((o with { ChunkBytes = 1 }).RowsPerChunk(100), Is.EqualTo(1), "at least one row");
    }
}
