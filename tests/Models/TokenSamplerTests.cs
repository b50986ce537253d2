using NUnit.Framework;
using SlothSharp.Generation;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The batched device sampler against explicit per-row computations (transformers' processor and warper
/// definitions written out in doubles).</summary>
public class TokenSamplerTests
{
    /// <summary>transformers' RepetitionPenalty → Temperature → TopK → TopP on one row, as probabilities (0 where
    /// removed), computed element by element.</summary>
    private static double[] ReferenceProbabilities(float[] logits, bool[] seen, GenerationOptions o)
    {
        var v = logits.Length;
        var z = new double[v];
        for (var i = 0; i < v; i++)
        {
            double x = logits[i];
            if (seen[i]) x = x < 0 ? x * o.RepetitionPenalty : x / o.RepetitionPenalty;
            z[i] = x / o.Temperature;
        }
        var keep = Enumerable.Repeat(true, v).ToArray();
        if (o.TopK > 0)
        {
            var kth = z.OrderByDescending(x => x).ElementAt(o.TopK - 1);
            for (var i = 0; i < v; i++) keep[i] = z[i] >= kth;
        }
        double[] Softmax()
        {
            var max = Enumerable.Range(0, v).Where(i => keep[i]).Max(i => z[i]);
            var e = Enumerable.Range(0, v).Select(i => keep[i] ? Math.Exp(z[i] - max) : 0).ToArray();
            var s = e.Sum();
            return e.Select(x => x / s).ToArray();
        }
        if (o.TopP < 1)
        {
            var p = Softmax();
            // Ascending: remove tokens while the running sum stays within 1 − top_p; never the most likely one.
            var ascending = Enumerable.Range(0, v).OrderBy(i => keep[i] ? z[i] : double.NegativeInfinity).ToArray();
            double cumulative = 0;
            for (var j = 0; j < v - 1; j++)
            {
                cumulative += p[ascending[j]];
                if (cumulative <= 1 - o.TopP) keep[ascending[j]] = false;
            }
        }
        return Softmax();
    }

    [Test]
    public void WarpedProbabilitiesEqualTheExplicitComputation()
    {
        var g = new Generator(21);
        using var logits = randn([4, 30], generator: g) * 2;
        using var seen = rand([4, 30], generator: g) < 0.3;
        foreach (var o in new[]
                 {
                     new GenerationOptions(Temperature: 0.8, TopK: 7, TopP: 0.6, RepetitionPenalty: 1.3),
                     new GenerationOptions(Temperature: 1.5, TopP: 0.9, RepetitionPenalty: 0.7),
                     new GenerationOptions(Temperature: 0.5, TopK: 3),
                 })
        {
            using var sampler = new TokenSampler(o);
            using var warped = sampler.Warp(logits, seen);
            using var probs = warped.softmax(1);
            for (var r = 0; r < 4; r++)
            {
                var expected = ReferenceProbabilities(logits[r].data<float>().ToArray(), seen[r].data<bool>().ToArray(), o);
                var got = probs[r].data<float>().ToArray();
                for (var i = 0; i < expected.Length; i++)
                {
                    Assert.That(got[i], Is.EqualTo(expected[i]).Within(1e-5), $"{o}: row {r}, token {i}");
                    Assert.That(got[i] == 0, Is.EqualTo(expected[i] == 0), $"{o}: row {r}, token {i} kept or removed");
                }
            }
        }
    }

    [Test]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOfSeenTokens()
    {
        using var logits = tensor(new[] { 2f, -1f, 1.5f, -3f }).reshape(1, 4);
        using var seen = tensor(new[] { true, true, false, false }).reshape(1, 4);
        using var penalized = new TokenSampler(new GenerationOptions(RepetitionPenalty: 2)).Warp(logits, seen);
        Assert.That(penalized.data<float>().ToArray(), Is.EqualTo(new[] { 1f, -2f, 1.5f, -3f }));
        // Greedy applies the penalty too: token 0 (2 → 1) loses to token 2 (1.5).
        using var greedy = new TokenSampler(new GenerationOptions(RepetitionPenalty: 2));
        Assert.That(greedy.Choose(logits, seen).item<long>(), Is.EqualTo(2));
        Assert.That(greedy.Choose(logits, null).item<long>(), Is.EqualTo(0), "no history: no penalty");
        // A penalty below 1 favours seen tokens: 2 / 0.5 = 4, −1 · 0.5 = −0.5.
        using var favour = new TokenSampler(new GenerationOptions(RepetitionPenalty: 0.5)).Warp(logits, seen);
        Assert.That(favour.data<float>().ToArray(), Is.EqualTo(new[] { 4f, -0.5f, 1.5f, -3f }));
    }

    [Test]
    public void GreedyIsTheRowArgmaxWithTheLowestIdOnTies()
    {
        using var logits = tensor(new[] { 0.1f, 3f, -1f, 3f, 5f, 1f, 5f, 0f }).reshape(2, 4);
        using var s = new TokenSampler(new GenerationOptions());
        Assert.That(s.Choose(logits).data<long>().ToArray(), Is.EqualTo(new long[] { 1, 0 }));
    }

    [Test]
    public void TopKOneEqualsGreedy()
    {
        using var logits = randn([6, 100], generator: new Generator(4));
        using var greedy = new TokenSampler(new GenerationOptions()).Choose(logits);
        using var sampler = new TokenSampler(new GenerationOptions(Temperature: 1.7, TopK: 1, Seed: 3));
        for (var i = 0; i < 5; i++)
            Assert.That(sampler.Choose(logits).data<long>().ToArray(), Is.EqualTo(greedy.data<long>().ToArray()));
    }

    [Test]
    public void TheSameSeedGivesTheSameBatchedDraws()
    {
        using var logits = randn([4, 50], generator: new Generator(8));
        long[] Draws(long seed)
        {
            using var s = new TokenSampler(new GenerationOptions(Temperature: 1, Seed: seed));
            return Enumerable.Range(0, 20).SelectMany(_ => s.Choose(logits).data<long>().ToArray()).ToArray();
        }
        Assert.That(Draws(9), Is.EqualTo(Draws(9)));
        Assert.That(Draws(9), Is.Not.EqualTo(Draws(10)));
    }

    [TestCase(0.0)]
    [TestCase(-1.2)]
    [TestCase(double.NaN)]
    [TestCase(double.PositiveInfinity)]
    public void RepetitionPenaltyIsValidated(double penalty)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions(RepetitionPenalty: penalty).Validate())!;
        Assert.That(e.ParamName, Is.EqualTo("RepetitionPenalty"));
    }

    [Test, Category("Gpu")]
    public void SamplesOnTheLogitsDeviceReproducibly()
    {
        TestEnv.RequireCuda();
        using var logits = randn([3, 64], generator: new Generator(5)).cuda();
        using var seen = (rand([3, 64], generator: new Generator(6)) < 0.2).cuda();
        long[] Draws(Tensor l, Tensor sn)
        {
            using var s = new TokenSampler(new GenerationOptions(Temperature: 0.9, TopK: 20, TopP: 0.9, Seed: 1, RepetitionPenalty: 1.2));
            return Enumerable.Range(0, 10).SelectMany(_ =>
            {
                using var ids = s.Choose(l, sn);
                Assert.That(ids.device_type, Is.EqualTo(l.device_type));
                return ids.cpu().data<long>().ToArray();
            }).ToArray();
        }
        var onGpu = Draws(logits, seen);
        Assert.That(Draws(logits, seen), Is.EqualTo(onGpu));
        // One uniform per row from the seeded CPU generator: the same draws as on the CPU (these logits leave no
        // cumulative sum within float rounding of a draw).
        using var cpuLogits = logits.cpu();
        using var cpuSeen = seen.cpu();
        Assert.That(Draws(cpuLogits, cpuSeen), Is.EqualTo(onGpu));
        using var greedy = new TokenSampler(new GenerationOptions(RepetitionPenalty: 1.2));
        Assert.That(greedy.Choose(logits, seen).cpu().data<long>().ToArray(), Is.EqualTo(greedy.Choose(logits.cpu(), seen.cpu()).data<long>().ToArray()));
    }
}
