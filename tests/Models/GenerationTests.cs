using NUnit.Framework;
using SlothSharp.Generation;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Token selection on fixed logits, and cached generation against a full-forward loop (on a fake model).</summary>
public class GenerationTests
{
    private static Tensor Logits(params float[] v) => tensor(v);

    [Test]
    public void GreedyTakesTheArgmaxAndTheLowestIdOnTies()
    {
        var s = new TokenSampler(new GenerationOptions());
        Assert.That(s.Next(Logits(0.1f, 3f, -1f, 2.9f)), Is.EqualTo(1));
        Assert.That(s.Next(Logits(5f, 1f, 5f)), Is.EqualTo(0));
        using var bf16 = Logits(0.1f, 3f, 4f).to(ScalarType.BFloat16);
        Assert.That(s.Next(bf16), Is.EqualTo(2), "any float dtype");
    }

    [Test]
    public void SamplingIsDeterministicForASeed()
    {
        using var logits = randn(100, generator: new Generator(3));
        int[] Draw(long seed)
        {
            var s = new TokenSampler(new GenerationOptions(Temperature: 1.0, Seed: seed));
            return Enumerable.Range(0, 50).Select(_ => s.Next(logits)).ToArray();
        }
        Assert.That(Draw(11), Is.EqualTo(Draw(11)));
        Assert.That(Draw(11), Is.Not.EqualTo(Draw(12)));
    }

    [Test]
    public void SampledFrequenciesFollowTheTemperedSoftmax()
    {
        var z = new[] { 1.0f, 0.0f, -1.0f, 0.5f };
        var s = new TokenSampler(new GenerationOptions(Temperature: 0.7, Seed: 5));
        var counts = new int[4];
        const int n = 20000;
        using var logits = Logits(z);
        for (var i = 0; i < n; i++) counts[s.Next(logits)]++;
        var p = z.Select(v => Math.Exp(v / 0.7)).ToArray();
        var sum = p.Sum();
        for (var k = 0; k < 4; k++)
        {
            var expected = p[k] / sum;
            // 5 standard deviations of a binomial frequency: a correct sampler fails this with negligible probability.
            var sd = Math.Sqrt(expected * (1 - expected) / n);
            Assert.That((double)counts[k] / n, Is.EqualTo(expected).Within(5 * sd), $"token {k}");
        }
    }

    [Test]
    public void TopKAndTopPRestrictTheCandidates()
    {
        using var logits = Logits(2f, 1.9f, 1.8f, 0f, -1f, 3f);
        var topK = new TokenSampler(new GenerationOptions(Temperature: 5, TopK: 2, Seed: 1));
        var seen = Enumerable.Range(0, 500).Select(_ => topK.Next(logits)).ToHashSet();
        Assert.That(seen, Is.EquivalentTo(new[] { 5, 0 }), "top-2");

        // softmax(logits): token 5 ≈ 0.48, 0 ≈ 0.18, 1 ≈ 0.16, 2 ≈ 0.15, … With top_p 0.7 the nucleus is {5, 0, 1}
        // (0.48 + 0.18 < 0.7 ≤ 0.48 + 0.18 + 0.16).
        var p = softmax(logits, 0).data<float>().ToArray();
        Assert.That(p[5] + p[0], Is.LessThan(0.7));
        Assert.That(p[5] + p[0] + p[1], Is.GreaterThan(0.7));
        var topP = new TokenSampler(new GenerationOptions(Temperature: 1, TopP: 0.7, Seed: 2));
        seen = Enumerable.Range(0, 2000).Select(_ => topP.Next(logits)).ToHashSet();
        Assert.That(seen, Is.EquivalentTo(new[] { 5, 0, 1 }), "top-p nucleus");

        var tiny = new TokenSampler(new GenerationOptions(Temperature: 1, TopP: 1e-6, Seed: 2));
        Assert.That(Enumerable.Range(0, 50).Select(_ => tiny.Next(logits)).Distinct(), Is.EqualTo(new[] { 5 }), "keeps at least one");
    }

    [Test]
    public void OptionsAreValidated()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new GenerationOptions(Temperature: -1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new GenerationOptions(TopP: 0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new GenerationOptions(TopK: -2)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new GenerationOptions(MaxNewTokens: -1)));
        var model = new FakeCausalLm();
        Assert.Throws<ArgumentException>(() => TextGenerator.Generate(model, [], new GenerationOptions()));
        Assert.Throws<ArgumentOutOfRangeException>(() => TextGenerator.Generate(model, [0, 999], new GenerationOptions()));
        Assert.Throws<ArgumentException>(() => TextGenerator.Generate(model, new int[65], new GenerationOptions()));
    }

    /// <summary>Greedy without a cache: the whole sequence through the model at every step.</summary>
    private static List<int> FullForwardGreedy(FakeCausalLm model, IReadOnlyList<int> prompt, int steps)
    {
        var seq = prompt.ToList();
        var produced = new List<int>();
        for (var i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            var ids = tensor(seq.Select(v => (long)v).ToArray()).reshape(1, seq.Count);
            var logits = model.Logits(model.Forward(ids, null, null))[0, -1];
            var next = (int)logits.argmax().item<long>();
            produced.Add(next);
            seq.Add(next);
        }
        return produced;
    }

    [Test]
    public void CachedGreedyGenerationEqualsTheFullForwardLoop()
    {
        var model = new FakeCausalLm();
        int[] prompt = [0, 5, 9, 3];
        var expected = FullForwardGreedy(model, prompt, 20);
        var calls = model.ForwardCalls;
        var got = TextGenerator.Generate(model, prompt, new GenerationOptions(MaxNewTokens: 20)).ToList();
        Assert.That(got, Is.EqualTo(expected));
        Assert.That(model.ForwardCalls - calls, Is.EqualTo(20), "one forward for the prompt, then one per new token (none after the last)");
    }

    [Test]
    public void StopsAtAStopTokenAndAtTheContextLength()
    {
        var model = new FakeCausalLm();
        int[] prompt = [0, 5, 9, 3];
        var free = FullForwardGreedy(model, prompt, 20);
        var stopAt = free[6];
        var first = free.IndexOf(stopAt);
        var got = TextGenerator.Generate(model, prompt, new GenerationOptions(MaxNewTokens: 20, StopTokenIds: [stopAt])).ToList();
        Assert.That(got, Is.EqualTo(free.Take(first + 1)), "the stop token is yielded, then generation ends");

        var eosModel = new FakeCausalLm(eos: [stopAt]);
        Assert.That(TextGenerator.Generate(eosModel, prompt, new GenerationOptions(MaxNewTokens: 20)).ToList(), Is.EqualTo(got), "default: the config's EOS ids");

        var nearEnd = Enumerable.Repeat(1, 60).ToArray();
        Assert.That(TextGenerator.Generate(model, nearEnd, new GenerationOptions(MaxNewTokens: 20, StopTokenIds: [])).Count(), Is.EqualTo(4), "max_position_embeddings 64");
        Assert.That(TextGenerator.Generate(model, prompt, new GenerationOptions(MaxNewTokens: 0)), Is.Empty);
    }

    [Test]
    public void GenerationStreams()
    {
        var model = new FakeCausalLm();
        using var e = TextGenerator.Generate(model, [0, 1], new GenerationOptions(MaxNewTokens: 10, StopTokenIds: [])).GetEnumerator();
        var before = model.ForwardCalls;
        Assert.That(e.MoveNext(), Is.True);
        Assert.That(model.ForwardCalls - before, Is.EqualTo(1), "the first id comes after one forward, before the rest are computed");
    }
}
