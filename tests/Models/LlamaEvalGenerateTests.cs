using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Evaluation;
using SlothSharp.Generation;
using SlothSharp.Losses;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Evaluation and generation end to end on the tiny Hugging Face Llama (nf4/, CPU, float32).</summary>
public class LlamaEvalGenerateTests
{

    [Test]
    public void EvaluatingTheGoldenTextsGivesTransformersLoss()
    {
        using var model = LlamaGolden.LoadBase();
        var tok = HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir);
        var texts = LlamaGolden.ExpectedJson["texts"]!.AsArray().Select(t => (string)t!).ToArray();
        foreach (var batch in new[] { 1, 2 })
        {
            var result = Evaluator.Evaluate(model, tok, texts, batchSize: batch);
            // transformers: shifted mean cross-entropy over the 42 + 11 predicted tokens of the padded golden batch.
            Assert.That(result.Tokens, Is.EqualTo(53));
            Assert.That(result.Loss, Is.EqualTo((double)LlamaGolden.ExpectedJson["loss_base"]!).Within(1e-5), $"batch {batch}");
        }
    }

    [Test]
    public void EvaluationEqualsCrossEntropyOfTheModelsLogits()
    {
        using var model = LlamaGolden.LoadBase();
        var tok = HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir);
        string[] docs = ["Make an iterator that returns elements from the first iterable until it is exhausted",
                         "Return a new dictionary", "ok", "Numbers 12345 and symbols !?"];
        double sum = 0;
        long count = 0;
        using (no_grad())
            foreach (var d in docs)
            {
                using var scope = NewDisposeScope();
                var ids = tok.Encode(d, addBos: true).Select(v => (long)v).ToArray();
                var x = tensor(ids).reshape(1, ids.Length);
                var logits = model.Logits(model.Forward(x))[0].to(ScalarType.Float64);  // [T, V], one unpadded sequence
                var logp = logits.log_softmax(-1);
                for (var p = 1; p < ids.Length; p++) sum -= logp[p - 1, ids[p]].item<double>();
                count += ids.Length - 1;
            }
        var result = Evaluator.Evaluate(model, tok, docs, batchSize: 3);
        Assert.That(result.Tokens, Is.EqualTo(count));
        Assert.That(result.Loss, Is.EqualTo(sum / count).Within(1e-5));
    }

    [Test]
    public void CachedGreedyGenerationEqualsTheFullForwardLoop()
    {
        using var model = LlamaGolden.LoadBase();
        var prompt = LlamaGolden.ExpectedJson["generate_prompt_ids"]!.AsArray().Select(v => (int)v!).ToArray();
        const int steps = 24;
        var seq = prompt.ToList();
        var expected = new List<int>();
        var margins = new List<double>();
        using (no_grad())
            for (var i = 0; i < steps; i++)
            {
                using var scope = NewDisposeScope();
                var x = tensor(seq.Select(v => (long)v).ToArray()).reshape(1, seq.Count);
                var logits = model.Logits(model.Forward(x))[0, -1];
                var top2 = logits.topk(2).values;
                margins.Add((top2[0] - top2[1]).item<float>());
                var next = (int)logits.argmax().item<long>();
                expected.Add(next);
                seq.Add(next);
            }
        var got = TextGenerator.Generate(model, prompt, new GenerationOptions(MaxNewTokens: steps, StopTokenIds: [])).ToList();
        // The cached path computes the same float32 logits up to rounding; ties closer than that could flip.
        Assert.That(margins.Min(), Is.GreaterThan(1e-4), "test premise: no near-ties");
        Assert.That(got, Is.EqualTo(expected));
    }

    [Test]
    public void SampledGenerationIsReproducibleAndStopsAtEos()
    {
        using var model = LlamaGolden.LoadBase();
        int[] prompt = [0, 47, 67];
        var options = new GenerationOptions(MaxNewTokens: 30, Temperature: 1.0, TopP: 0.9, TopK: 50, Seed: 42);
        var a = TextGenerator.Generate(model, prompt, options).ToList();
        var b = TextGenerator.Generate(model, prompt, options).ToList();
        Assert.That(a, Is.EqualTo(b));
        Assert.That(a.Count, Is.LessThanOrEqualTo(30));
        Assert.That(a.Take(a.Count - 1), Has.None.EqualTo(1), "EOS (config eos_token_id 1) ends generation");
    }

    [Test, Category("Gpu")]
    public void EvaluatesAndGeneratesOnCuda()
    {
        TestEnv.RequireCuda();
        var tok = HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir);
        var texts = LlamaGolden.ExpectedJson["texts"]!.AsArray().Select(t => (string)t!).ToArray();
        var lossBase = (double)LlamaGolden.ExpectedJson["loss_base"]!;
        using (var fp32 = CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.Float32 }))
        {
            Assert.That(Evaluator.Evaluate(fp32, tok, texts, batchSize: 2).Loss, Is.EqualTo(lossBase).Within(1e-4), "float32");
            var prompt = LlamaGolden.ExpectedJson["generate_prompt_ids"]!.AsArray().Select(v => (int)v!).ToArray();
            using var cpu = LlamaGolden.LoadBase();
            var options = new GenerationOptions(MaxNewTokens: 10, StopTokenIds: []);
            Assert.That(TextGenerator.Generate(fp32, prompt, options), Is.EqualTo(TextGenerator.Generate(cpu, prompt, options)), "greedy, CUDA = CPU");
        }
        using var bf16 = CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.BFloat16 });
        // bf16 activations: logits carry ~0.4 % relative error, the loss a few hundredths of a nat at most.
        Assert.That(Evaluator.Evaluate(bf16, tok, texts, batchSize: 2).Loss, Is.EqualTo(lossBase).Within(0.05), "bf16");
        Assert.That(TextGenerator.Generate(bf16, [0, 47, 67], new GenerationOptions(MaxNewTokens: 8, Temperature: 0.8, TopP: 0.9, Seed: 3)).Count(),
            Is.InRange(1, 8), "sampling runs on CUDA");
    }
}
