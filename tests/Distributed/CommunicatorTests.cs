using NUnit.Framework;
using SlothSharp.Distributed;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The in-process communicator (ranks as threads): collective results against sequential references,
/// bit-identical results on every rank, and failures that end the group with a message instead of a hang.</summary>
public class CommunicatorTests
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(30);

    /// <summary>Rank r's test data: deterministic per rank, different across ranks.</summary>
    private static Tensor Data(int rank, long[] shape, ScalarType dtype = ScalarType.Float32)
    {
        using var g = new Generator((ulong)(1000 + rank));
        using var t = randn(shape, ScalarType.Float32, generator: g) * 3;
        return dtype == ScalarType.Float32 ? t.clone() : dtype is ScalarType.Int64 or ScalarType.Int32 ? t.round().to(dtype) : t.to(dtype);
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void AllReduceSumsInRankOrderAndEveryRankGetsTheSameBits(int size)
    {
        long[] shape = [5, 7];
        var expected = Data(0, shape);
        for (var r = 1; r < size; r++) expected.add_(Data(r, shape));  // ((t0 + t1) + t2): the documented order
        var results = InProcessCommunicator.Run(size, c =>
        {
            var t = Data(c.Rank, shape);
            c.AllReduce(t);
            return t;
        }, Short);
        foreach (var t in results) Assert.That(TestEnv.BitEqual(t, expected), Is.True);
    }

    [TestCase(ReduceOp.Avg)]
    [TestCase(ReduceOp.Max)]
    public void AllReduceAvgAndMax(ReduceOp op)
    {
        const int size = 3;
        long[] shape = [4, 6];
        var parts = Enumerable.Range(0, size).Select(r => Data(r, shape)).ToArray();
        var expected = op == ReduceOp.Max
            ? maximum(maximum(parts[0], parts[1]), parts[2])
            : (parts[0] + parts[1] + parts[2]) / size;
        var results = InProcessCommunicator.Run(size, c =>
        {
            var t = Data(c.Rank, shape);
            c.AllReduce(t, op);
            return t;
        }, Short);
        foreach (var t in results) Assert.That(TestEnv.BitEqual(t, expected), Is.True, op.ToString());
    }

    [Test]
    public void AllReduceOfIntegersAndHalfPrecision()
    {
        var ints = InProcessCommunicator.Run(2, c =>
        {
            var t = tensor(new long[] { 1 + c.Rank, 10 * c.Rank, -3 });
            c.AllReduce(t, ReduceOp.Avg);
            return t;
        }, Short);
        Assert.That(ints[1].data<long>().ToArray(), Is.EqualTo(new long[] { 1, 5, -3 }));  // (1+2)/2 truncated
        var bf = InProcessCommunicator.Run(2, c =>
        {
            var t = Data(c.Rank, [8], ScalarType.BFloat16);
            c.AllReduce(t);
            return t;
        }, Short);
        Assert.That(TestEnv.BitEqual(bf[0], Data(0, [8], ScalarType.BFloat16) + Data(1, [8], ScalarType.BFloat16)), Is.True);
    }

    [TestCase(1)]
    [TestCase(3)]
    public void AllGatherConcatenatesInRankOrder(int size)
    {
        long[] shape = [2, 3];
        var expected = cat(Enumerable.Range(0, size).Select(r => Data(r, shape)).ToArray(), 0);
        var results = InProcessCommunicator.Run(size, c => c.AllGather(Data(c.Rank, shape)), Short);
        foreach (var t in results)
        {
            Assert.That(t.shape, Is.EqualTo(new long[] { 2 * size, 3 }));
            Assert.That(TestEnv.BitEqual(t, expected), Is.True);
        }
    }

    [Test]
    public void ReduceScatterGivesEachRankItsRowsOfTheSum()
    {
        const int size = 3;
        long[] shape = [6, 4];
        var sum = Data(0, shape) + Data(1, shape) + Data(2, shape);
        var results = InProcessCommunicator.Run(size, c => c.ReduceScatter(Data(c.Rank, shape)), Short);
        for (var r = 0; r < size; r++)
            Assert.That(TestEnv.BitEqual(results[r], sum.narrow(0, 2 * r, 2)), Is.True, $"rank {r}");
    }

    [Test]
    public void BroadcastCopiesTheRootsTensorAndBarrierReturns()
    {
        var results = InProcessCommunicator.Run(3, c =>
        {
            var t = Data(c.Rank, [3, 3]);
            c.Barrier();
            c.Broadcast(t, root: 2);
            c.Barrier();
            return t;
        }, Short);
        foreach (var t in results) Assert.That(TestEnv.BitEqual(t, Data(2, [3, 3])), Is.True);
    }

    [Test]
    public void MismatchedCollectivesAbortEveryRankWithTheReason()
    {
        var e = Assert.Throws<CommunicatorAbortedException>(() => InProcessCommunicator.Run(2, c =>
        {
            if (c.Rank == 0) c.AllReduce(zeros(4));
            else c.AllReduce(zeros(5));
        }, Short));
        Assert.That(e!.Message, Does.Contain("rank 0 sends [4]").And.Contain("rank 1 sends [5]"));
        var kinds = Assert.Throws<CommunicatorAbortedException>(() => InProcessCommunicator.Run(2, c =>
        {
            if (c.Rank == 0) c.Barrier();
            else c.Broadcast(zeros(2), 0);
        }, Short));
        Assert.That(kinds!.Message, Does.Contain("rank 0 called Barrier, rank 1 called Broadcast"));
    }

    [Test]
    public void AFailingRankReleasesTheOthersAndItsExceptionIsRethrown()
    {
        var others = new CommunicatorAbortedException?[3];
        var e = Assert.Throws<FormatException>(() => InProcessCommunicator.Run(3, c =>
        {
            if (c.Rank == 1) throw new FormatException("rank one broke");
            try
            {
                c.Barrier();
            }
            catch (CommunicatorAbortedException a)
            {
                others[c.Rank] = a;
                throw;
            }
        }, TimeSpan.FromMinutes(5)));
        Assert.That(e!.Message, Is.EqualTo("rank one broke"));
        Assert.That(others[0]?.Message, Does.Contain("rank 1 failed: rank one broke"));
        Assert.That(others[2]?.Message, Does.Contain("rank 1 failed: rank one broke"));
    }

    [Test]
    public void ARankThatLeavesEarlyFailsTheOthersAtOnce()
    {
        var e = Assert.Throws<CommunicatorAbortedException>(() => InProcessCommunicator.Run(2, c =>
        {
            if (c.Rank == 0) c.Barrier();  // rank 1 returns without joining
        }, TimeSpan.FromMinutes(5)));
        Assert.That(e!.Message, Does.Contain("rank 1 has left the group"));
    }

    [Test]
    public void AWaitThatTimesOutAbortsTheGroup()
    {
        var e = Assert.Throws<CommunicatorAbortedException>(() => InProcessCommunicator.Run(2, c =>
        {
            if (c.Rank == 0) c.Barrier();
            else Thread.Sleep(1500);  // late, but not gone: the waiting rank gives up after its timeout
        }, TimeSpan.FromMilliseconds(200)));
        Assert.That(e!.Message, Does.Contain("waited").And.Contain("Barrier"));
    }

    [Test]
    public void BadArgumentsAreRejectedBeforeAnyRankWaits()
    {
        var comms = InProcessCommunicator.CreateGroup(2);
        var c = comms[0];
        Assert.Throws<ArgumentException>(() => c.AllReduce(zeros(4, 4).t()));                 // not contiguous
        Assert.Throws<ArgumentException>(() => c.AllGather(tensor(1.0f)));                   // a scalar has no rows
        Assert.Throws<ArgumentException>(() => c.ReduceScatter(zeros(3, 2)));                // 3 rows over 2 ranks
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Broadcast(zeros(2), 2));          // no rank 2
        Assert.Throws<ArgumentException>(() => c.AllReduce(zeros(2, ScalarType.Bool)));      // not a collective dtype
        Assert.Throws<ArgumentOutOfRangeException>(() => InProcessCommunicator.CreateGroup(0));
        foreach (var x in comms) x.Dispose();
        Assert.Throws<ObjectDisposedException>(() => c.Barrier());
    }
}
