using NUnit.Framework;
using SlothSharp.Evaluation;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Evaluator (batched, padded, fused loss, windows) against per-token log-softmax on unpadded sequences.</summary>
public class EvaluatorTests
{
    private static HfTokenizer Tok => HfTokenizer.FromDirectory(Path.Combine(TestEnv.TinyLlamaDir, "nf4"));

    private static readonly string[] Docs =
    [
        "Return a new dictionary initialized from an optional positional argument",
        "Make an iterator that",
        "x",
        "The quick brown fox jumps over the lazy dog.",
        "def f(x): return x * 2",
    ];

    /// <summary>Σ −log p(token p | its window's tokens before p) and the count, one model call per prediction.</summary>
    private static (double Sum, long Count) Reference(FakeCausalLm model, HfTokenizer tok, IEnumerable<string> docs, int window)
    {
        double sum = 0;
        long count = 0;
        foreach (var doc in docs)
        {
            var ids = tok.Encode(doc, addBos: true);
            for (var p = 1; p < ids.Length; p++)
            {
                using var scope = NewDisposeScope();
                var start = (p - 1) / (window - 1) * (window - 1);
                var context = ids[start..(p + 1)].Select(v => (long)v).ToArray();
                var x = tensor(context).reshape(1, context.Length);
                var logits = model.Logits(model.Forward(x, null, null))[0, -2].to(ScalarType.Float64);
                sum -= logits.log_softmax(0)[ids[p]].item<double>();
                count++;
            }
        }
        return (sum, count);
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(8)]
    public void LossIsTheTokenWeightedMeanCrossEntropy(int batch)
    {
        var tok = Tok;
        var model = new FakeCausalLm(vocab: tok.VocabSize);
        var (sum, count) = Reference(model, tok, Docs, window: 64);
        var reports = new List<(int, int)>();
        var result = Evaluator.Evaluate(model, tok, Docs, batchSize: batch, progress: new SyncProgress(reports));
        Assert.That(result.Tokens, Is.EqualTo(count));
        Assert.That(result.Tokens, Is.EqualTo(Docs.Sum(d => tok.Encode(d).Length)), "each document: BOS + tokens, every token predicted");
        Assert.That(result.Loss, Is.EqualTo(sum / count).Within(1e-5 * (sum / count)));
        Assert.That(reports[^1], Is.EqualTo((Docs.Length, Docs.Length)));
        Assert.That(reports.Select(r => r.Item1), Is.Ordered);
        // Right padding under causal attention needs no mask (the causal fast path); the real-model golden losses with
        // padded batches (LlamaEvalGenerateTests, PaddedFamilyBatchesGiveTransformersLoss) show the padding stays out of real tokens' context.
        Assert.That(model.Masks, Is.All.Null, "no attention mask");
    }

    /// <summary>Padded batches without an attention mask still give transformers' loss on the sliding-window families
    /// (the golden texts have different lengths, so the batch of three is padded).</summary>
    [TestCase("mistral")]
    [TestCase("gemma2")]
    [TestCase("gemma3")]
    public void PaddedFamilyBatchesGiveTransformersLoss(string family)
    {
        using var model = FamilyGolden.Load(FamilyGolden.Dense(family));
        var expected = FamilyGolden.Expected(family);
        var texts = expected["texts"]!.AsArray().Select(t => (string)t!).ToArray();
        var tok = HfTokenizer.FromDirectory(FamilyGolden.Dense(family));
        Assert.That(texts.Select(t => tok.Encode(t).Length).Distinct().Count(), Is.GreaterThan(1), "documents of different lengths");
        var result = Evaluator.Evaluate(model, tok, texts, batchSize: 3);
        Assert.That(result.Loss, Is.EqualTo((double)expected["loss_base"]!).Within(1e-5));
    }

    [TestCase(2)]
    [TestCase(5)]
    [TestCase(16)]
    public void LongDocumentsAreSplitIntoWindows(int window)
    {
        var tok = Tok;
        var model = new FakeCausalLm(vocab: tok.VocabSize);
        var (sum, count) = Reference(model, tok, Docs, window);
        var result = Evaluator.Evaluate(model, tok, Docs, batchSize: 3, maxLength: window);
        Assert.That(result.Tokens, Is.EqualTo(count));
        Assert.That(result.Loss, Is.EqualTo(sum / count).Within(1e-5 * (sum / count)));
    }

    [Test]
    public void WindowsOverlapByOneToken()
    {
        int[] ids = [0, 1, 2, 3, 4, 5, 6];
        Assert.That(Evaluator.Windows(ids, 3).ToArray(), Is.EqualTo(new[] { new[] { 0, 1, 2 }, [2, 3, 4], [4, 5, 6] }));
        Assert.That(Evaluator.Windows(ids, 4).ToArray(), Is.EqualTo(new[] { new[] { 0, 1, 2, 3 }, [3, 4, 5, 6] }));
        Assert.That(Evaluator.Windows(ids, 7).ToArray(), Is.EqualTo(new[] { ids }));
        Assert.That(Evaluator.Windows([9], 4), Is.Empty, "nothing to predict");
    }

    [Test]
    public void BadArgumentsAreRejected()
    {
        var tok = Tok;
        var model = new FakeCausalLm(vocab: tok.VocabSize);
        Assert.Throws<ArgumentException>(() => Evaluator.Evaluate(model, tok, []));
        Assert.Throws<ArgumentOutOfRangeException>(() => Evaluator.Evaluate(model, tok, Docs, batchSize: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Evaluator.Evaluate(model, tok, Docs, maxLength: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Evaluator.Evaluate(model, tok, Docs, maxLength: 65), "beyond max_position_embeddings");
        Assert.Throws<ArgumentException>(() => Evaluator.Evaluate(model, tok, [""]), "only BOS: nothing to predict");
        var small = new FakeCausalLm(vocab: 100);
        var e = Assert.Throws<ArgumentException>(() => Evaluator.Evaluate(small, tok, Docs))!;
        Assert.That(e.Message, Does.Contain("outside the model's vocabulary"));
    }

    /// <summary>IProgress that records synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    internal sealed class SyncProgress(List<(int, int)> sink) : IProgress<(int done, int total)>
    {
        public void Report((int done, int total) value) => sink.Add(value);
    }
}
