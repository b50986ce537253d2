using NUnit.Framework;
using SlothSharp.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary><see cref="ShardedAdamW"/> on the CPU with ranks as threads: reduce-scattered local gradients, 1/N of the
/// moments per rank (optionally offloaded), all-gathered parameters = torch's AdamW on the summed gradients with
/// clip_grad_norm_, within 1e-6; the state gathers into the unsharded per-parameter format and reloads on another
/// number of ranks.</summary>
public class ShardedAdamWTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromMinutes(2);
    private static readonly long[][] Shapes = [[4, 7], [3], [5, 2], [11]];
    private static readonly double[] Lrs = [1e-2, 5e-3, 2e-3];
    private const double Clip = 1.0;

    private static Parameter[] MakeParams()
    {
        using var g = new Generator(11);
        return Shapes.Select(s => new Parameter(randn(s, generator: g))).ToArray();
    }

    /// <summary>Rank r's local gradient of parameter i at step s.</summary>
    private static Tensor LocalGrad(int rank, int step, int i) 
    {
        using var g = new Generator((ulong)(1000 * rank + 10 * step + i + 1));
        return randn(Shapes[i], generator: g);
    }

    /// <summary>torch's AdamW on the rank-order sums of the local gradients.</summary>
    private static (Parameter[] Params, List<(Tensor, Tensor)> State) Reference(int ranks, int steps)
    {
        var ps = MakeParams();
        using var opt = optim.AdamW(ps, Lrs[0], 0.9, 0.999, 1e-8, 0.01);
        for (var s = 0; s < steps; s++)
        {
            for (var i = 0; i < ps.Length; i++)
            {
                var sum = LocalGrad(0, s, i);
                for (var r = 1; r < ranks; r++) sum = sum + LocalGrad(r, s, i);
                ps[i].grad = sum;
            }
            foreach (var group in opt.ParamGroups) group.LearningRate = Lrs[s];
            nn.utils.clip_grad_norm_(ps, Clip);
            opt.step();
        }
        var state = opt.state_dict().State.Cast<AdamW.State>().Select(st => (st.exp_avg.clone(), st.exp_avg_sq.clone())).ToList();
        return (ps, state);
    }

    private static (Tensor[] Params, IReadOnlyList<(Tensor, Tensor)> State, long StateBytes, double[] Norms) RunSharded(
        int ranks, int firstStep, int steps, bool offload, ICommunicator c, IReadOnlyList<(Tensor, Tensor)>? load = null, Tensor[]? start = null)
    {
        var ps = MakeParams();
        if (start is not null)
            using (no_grad())
                for (var i = 0; i < ps.Length; i++) ps[i].copy_(start[i]);
        using var opt = new ShardedAdamW(ps, c, 0.9, 0.999, 1e-8, 0.01, offload);
        if (load is not null) opt.LoadState(load, firstStep);
        var norms = new List<double>();
        for (var s = firstStep; s < firstStep + steps; s++)
        {
            for (var i = 0; i < ps.Length; i++) ps[i].grad = LocalGrad(c.Rank, s, i);
            norms.Add(opt.Step(Lrs[s], Clip));
        }
        return (ps.Select(p => p.detach().clone()).ToArray(), opt.GatherState(), opt.StateBytes, norms.ToArray());
    }

    [TestCase(1, false)]
    [TestCase(2, false)]
    [TestCase(3, false)]
    [TestCase(3, true)]
    [TestCase(5, true)]
    public void EqualsTorchAdamWOnTheSummedGradients(int ranks, bool offload)
    {
        var (refParams, refState) = Reference(ranks, 3);
        var results = InProcessCommunicator.Run(ranks, c => RunSharded(ranks, 0, 3, offload, c), Wait);
        var total = Shapes.Sum(s => s.Aggregate(1L, (a, b) => a * b));
        for (var r = 0; r < ranks; r++)
        {
            var (ps, state, bytes, norms) = results[r];
            for (var i = 0; i < ps.Length; i++)
            {
                Assert.That(LlamaGolden.MaxAbs(ps[i], refParams[i].detach()), Is.LessThanOrEqualTo(1e-6), $"rank {r} parameter {i}");
                Assert.That(LlamaGolden.MaxAbs(state[i].Item1, refState[i].Item1), Is.LessThanOrEqualTo(1e-6), $"rank {r} exp_avg {i}");
                Assert.That(LlamaGolden.MaxAbs(state[i].Item2, refState[i].Item2), Is.LessThanOrEqualTo(1e-6), $"rank {r} exp_avg_sq {i}");
            }
            Assert.That(bytes, Is.EqualTo(2 * 4 * ((total + ranks - 1) / ranks)), "1/N of the moments");
            Assert.That(norms.All(n => n > Clip), Is.True, "clipping was active");
        }
    }

    [Test]
    public void TheGatheredStateResumesOnAnotherNumberOfRanks()
    {
        var (refParams, _) = Reference(3, 3);
        // Two steps on 3 ranks (the gradients are those of 3 ranks throughout: the reference sums 3).
        var first = InProcessCommunicator.Run(3, c => RunSharded(3, 0, 2, false, c), Wait);
        // The third step on 2 ranks that carry the 3 ranks' summed gradient between them: rank 0 gets ranks 0+1's, rank 1 rank 2's.
        var second = InProcessCommunicator.Run(2, c =>
        {
            var ps = MakeParams();
            using (no_grad())
                for (var i = 0; i < ps.Length; i++) ps[i].copy_(first[0].Params[i]);
            using var opt = new ShardedAdamW(ps, c, 0.9, 0.999, 1e-8, 0.01);
            opt.LoadState(first[0].State, 2);
            for (var i = 0; i < ps.Length; i++) ps[i].grad = c.Rank == 0 ? LocalGrad(0, 2, i) + LocalGrad(1, 2, i) : LocalGrad(2, 2, i);
            opt.Step(Lrs[2], Clip);
            return ps.Select(p => p.detach().clone()).ToArray();
        }, Wait);
        for (var i = 0; i < refParams.Length; i++)
            Assert.That(LlamaGolden.MaxAbs(second[1][i], refParams[i].detach()), Is.LessThanOrEqualTo(1e-6), $"parameter {i}");
    }

    [Test]
    public void BadParametersAreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => InProcessCommunicator.Run(1, c => new ShardedAdamW([new Parameter(zeros(3, ScalarType.Float64))], c)))!;
        Assert.That(e.Message, Does.Contain("parameter 0 is Float64"));
    }
}
