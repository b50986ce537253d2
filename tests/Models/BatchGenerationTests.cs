using NUnit.Framework;
using SlothSharp.Generation;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Batched generation (left padding, per-row positions, one cache) against each prompt generated alone, on the
/// tiny checkpoints in float32 on the CPU: Llama and every golden family (Mistral's and Gemma's sliding windows,
/// Gemma 3's local/global RoPE, Qwen 3's q/k norms).</summary>
public class BatchGenerationTests
{
    public static IEnumerable<TestCaseData> Checkpoints() =>
        new[] { new TestCaseData(LlamaGolden.DenseDir).SetArgDisplayNames("llama") }
            .Concat(FamilyGolden.Families.Select(f => new TestCaseData(FamilyGolden.Dense(f)).SetArgDisplayNames(f)));

    private static CausalLM Load(string dir) =>
        CausalLM.FromPretrained(dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32, Quantize = false });

    /// <summary>Prompts of different lengths (BOS + a slice of a text from a different offset each), longer than the
    /// families' sliding windows (7, 9) where the length allows.</summary>
    private static IReadOnlyList<int>[] Prompts(string dir, params int[] lengths)
    {
        var tok = HfTokenizer.FromDirectory(dir);
        var text = string.Concat(Enumerable.Repeat("Make an iterator that returns elements from the first iterable until it is exhausted, then proceeds to the next. ", 4));
        var ids = tok.Encode(text, addBos: false);
        var bos = tok.BosTokenId ?? 0;
        return lengths.Select((l, i) => (IReadOnlyList<int>)new[] { bos }.Concat(ids.Skip(3 * i).Take(l - 1)).ToArray()).ToArray();
    }

    private static List<int>[] Alone(CausalLM model, IReadOnlyList<int>[] prompts, GenerationOptions options) =>
        prompts.Select(p => TextGenerator.Generate(model, p, options).ToList()).ToArray();

    [TestCaseSource(nameof(Checkpoints))]
    public void GreedyBatchEqualsEachPromptAlone(string dir)
    {
        using var model = Load(dir);
        var prompts = Prompts(dir, 5, 17, 2, 30, 11);
        var options = new GenerationOptions(MaxNewTokens: 10, StopTokenIds: []);
        var expected = Alone(model, prompts, options);
        Assert.That(expected.Select(e => string.Join(",", e)).Distinct().Count(), Is.GreaterThan(1), "the prompts continue differently");
        foreach (var batchSize in new[] { 8, 2 })
        {
            var results = BatchGenerator.Generate(model, prompts, options, batchSize);
            Assert.That(results.Select(r => r.PromptIndex), Is.EqualTo(Enumerable.Range(0, prompts.Length)), "input order");
            for (var i = 0; i < prompts.Length; i++)
            {
                Assert.That(results[i].TokenIds, Is.EqualTo(expected[i]), $"batch {batchSize}, prompt {i} ({prompts[i].Count} tokens)");
                Assert.That(results[i].FinishReason, Is.EqualTo(FinishReason.Length));
            }
        }
    }

    [Test]
    public void EachPromptStopsOnItsOwn()
    {
        var dir = LlamaGolden.DenseDir;
        using var model = Load(dir);
        var prompts = Prompts(dir, 4, 9, 15, 6);
        var free = Alone(model, prompts, new GenerationOptions(MaxNewTokens: 12, StopTokenIds: []));
        var stopId = free[1][3];
        var options = new GenerationOptions(MaxNewTokens: 12, StopTokenIds: [stopId]);
        var expected = Alone(model, prompts, options);
        var results = BatchGenerator.Generate(model, prompts, options, batchSize: 4);
        for (var i = 0; i < prompts.Length; i++)
        {
            Assert.That(results[i].TokenIds, Is.EqualTo(expected[i]), $"prompt {i}");
            var stopped = expected[i].Count > 0 && expected[i][^1] == stopId;
            Assert.That(results[i].FinishReason, Is.EqualTo(stopped ? FinishReason.Stop : FinishReason.Length), $"prompt {i}");
        }
        Assert.That(results.Count(r => r.FinishReason == FinishReason.Stop), Is.InRange(1, prompts.Length - 1), "some rows stop early, others go on");
    }

    /// <summary>A prompt 6 tokens short of max_position_embeddings (256) next to a short one: the long row stops at the
    /// context length while the short one goes on, its cache slots (padding included) passing 256.</summary>
    [Test]
    public void ContextLengthStopsOnlyTheLongRow()
    {
        var dir = LlamaGolden.DenseDir;
        using var model = Load(dir);
        var longPrompt = Enumerable.Repeat(Prompts(dir, 50)[0], 5).SelectMany(p => p).Take(250).ToArray();
        IReadOnlyList<int>[] prompts = [Prompts(dir, 3)[0], longPrompt];
        var options = new GenerationOptions(MaxNewTokens: 20, StopTokenIds: []);
        var expected = Alone(model, prompts, options);
        Assert.That(expected.Select(e => e.Count), Is.EqualTo(new[] { 20, 6 }));
        var results = BatchGenerator.Generate(model, prompts, options, batchSize: 2);
        Assert.That(results[0].TokenIds, Is.EqualTo(expected[0]));
        Assert.That(results[1].TokenIds, Is.EqualTo(expected[1]));
        Assert.That(results.Select(r => r.FinishReason), Is.All.EqualTo(FinishReason.Length));
    }

    /// <summary>Greedy with a repetition penalty: the cached generator equals a full-forward loop that applies the
    /// penalty by hand to every token of the sequence (prompt included), and the batch equals each prompt alone.</summary>
    [Test]
    public void RepetitionPenaltyCoversThePromptAndTheGeneratedTokens()
    {
        var dir = LlamaGolden.DenseDir;
        using var model = Load(dir);
        var prompts = Prompts(dir, 12, 5, 20);
        const double penalty = 1.8;
        var options = new GenerationOptions(MaxNewTokens: 8, StopTokenIds: [], RepetitionPenalty: penalty);
        var single = Alone(model, prompts, options);
        for (var p = 0; p < prompts.Length; p++)
        {
            var seq = prompts[p].ToList();
            var manual = new List<int>();
            for (var step = 0; step < 8; step++)
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                var logits = model.Logits(model.Forward(tensor(seq.Select(i => (long)i).ToArray()).reshape(1, seq.Count)))[0, -1].data<float>().ToArray();
                foreach (var id in seq.Distinct()) logits[id] = logits[id] < 0 ? (float)(logits[id] * penalty) : (float)(logits[id] / penalty);
                var next = Array.IndexOf(logits, logits.Max());
                manual.Add(next);
                seq.Add(next);
            }
            Assert.That(single[p], Is.EqualTo(manual), $"prompt {p}");
        }
        Assert.That(single, Is.Not.EqualTo(Alone(model, prompts, options with { RepetitionPenalty = 1 })), "the penalty changes the output");
        var results = BatchGenerator.Generate(model, prompts, options, batchSize: 3);
        Assert.That(results.Select(r => r.TokenIds), Is.EqualTo(single));
    }

    [Test]
    public void EventsStreamOneStepAtATime()
    {
        var dir = LlamaGolden.DenseDir;
        using var model = Load(dir);
        var prompts = Prompts(dir, 3, 7, 5);
        var events = BatchGenerator.Stream(model, prompts, new GenerationOptions(MaxNewTokens: 4, StopTokenIds: []), batchSize: 3).ToList();
        Assert.That(events, Has.Count.EqualTo(12));
        // Step by step: each group of three holds every prompt once (sorted by length: 0, 2, 1).
        for (var step = 0; step < 4; step++)
        {
            Assert.That(events.Skip(3 * step).Take(3).Select(e => e.PromptIndex), Is.EqualTo(new[] { 0, 2, 1 }), $"step {step}");
            Assert.That(events.Skip(3 * step).Take(3).Select(e => e.Finish), Is.All.EqualTo(step == 3 ? FinishReason.Length : null));
        }
        var seen = new List<GeneratedToken>();
        var results = BatchGenerator.Generate(model, prompts, new GenerationOptions(MaxNewTokens: 4, StopTokenIds: []), 3, seen.Add);
        Assert.That(seen, Is.EqualTo(events));
        Assert.That(results[1].TokenIds, Is.EqualTo(events.Where(e => e.PromptIndex == 1).Select(e => e.TokenId)));
    }

    [Test]
    public void SampledBatchesAreReproducibleForASeed()
    {
        var dir = LlamaGolden.DenseDir;
        using var model = Load(dir);
        var prompts = Prompts(dir, 3, 8);
        var options = new GenerationOptions(MaxNewTokens: 8, Temperature: 1.2, TopP: 0.95, Seed: 5, StopTokenIds: []);
        var a = BatchGenerator.Generate(model, prompts, options).Select(r => r.TokenIds).ToList();
        Assert.That(BatchGenerator.Generate(model, prompts, options).Select(r => r.TokenIds), Is.EqualTo(a));
        Assert.That(BatchGenerator.Generate(model, prompts, options with { Seed = 6 }).Select(r => r.TokenIds), Is.Not.EqualTo(a));
    }

    [Test]
    public void BadPromptsAreNamed()
    {
        var model = new FakeCausalLm();
        var options = new GenerationOptions();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => BatchGenerator.Stream(model, [[0, 1], [0, 999]], options, 4))!;
        Assert.That(e.Message, Does.Contain("prompt 1: token 1 is 999"));
        Assert.That(Assert.Throws<ArgumentException>(() => BatchGenerator.Stream(model, [[0], []], options, 4))!.Message, Does.Contain("prompt 1 has no tokens"));
        Assert.Throws<ArgumentOutOfRangeException>(() => BatchGenerator.Stream(model, [[0]], options, 0));
        Assert.That(BatchGenerator.Generate(model, [[0, 1]], options with { MaxNewTokens = 0 }).Single(),
                    Is.EqualTo(new GenerationResult(0, [], FinishReason.Length)).Using<GenerationResult>((x, y) => x.PromptIndex == y.PromptIndex && x.TokenIds.Count == 0 && x.FinishReason == y.FinishReason));
    }

    /// <summary>With batch 1 the fake model (which checks that given positions continue its sequence) sees the same
    /// calls as TextGenerator: one prefill, then one DecodeLogits per step.</summary>
    [Test]
    public void BatchOfOneOnTheFakeModelEqualsTextGenerator()
    {
        var model = new FakeCausalLm();
        IReadOnlyList<int>[] prompts = [[0, 5, 9, 3], [0, 2]];
        var options = new GenerationOptions(MaxNewTokens: 15, StopTokenIds: []);
        var expected = prompts.Select(p => TextGenerator.Generate(model, p, options).ToList()).ToList();
        var results = BatchGenerator.Generate(model, prompts, options, batchSize: 1);
        Assert.That(results.Select(r => r.TokenIds), Is.EqualTo(expected));
    }
}
