using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Gguf;
using SlothSharp.Models;
using SlothSharp.Peft;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// The tiny Llama (tests/data/hf-tiny-llama: bf16 weights, byte-level BPE tokenizer, llama3 RoPE scaling) exported
/// to GGUF at every type and run by the real llama.cpp: it loads and generates; its tokenization of a mixed text
/// equals SlothSharp's HfTokenizer (and Hugging Face's golden ids); its logits match SlothSharp's float32 forward;
/// quantized perplexity stays near f16's; a GGUF LoRA adapter applied by llama.cpp gives the merged model's logits.
/// </summary>
[NonParallelizable]
public class GgufLlamaCppTests() : TempDirFixture("gguf-llamacpp")
{
    private static string Dense => Path.Combine(TestEnv.TinyLlamaDir, "dense");

    private static readonly GgufOutputType[] AllTypes = Enum.GetValues<GgufOutputType>();

    private static string PromptText => "Return a new dictionary initialized from an optional positional argument and keyword arguments.";

    /// <summary>A held-out text for perplexity: the first 200 tokens of the mixed tokenizer sample, after BOS.</summary>
    private static int[] HeldOutIds()
    {
        var tok = HfTokenizer.FromDirectory(Dense);
        return tok.Encode(File.ReadAllText(Path.Combine(TestEnv.TinyLlamaDir, "tokenizer-mixed.txt")), addBos: true)[..200];
    }

    /// <summary>SlothSharp's float32 logits ([T][V]) of <paramref name="ids"/> with the dense weights.</summary>
    internal static float[][] SlothLogits(string denseDir, int[] ids, string? adapterDir = null)
    {
        using var _ = no_grad();
        using var model = CausalLM.FromPretrained(denseDir, new LoadOptions { Device = CPU, Quantize = false, ComputeDtype = ScalarType.Float32 });
        if (adapterDir is not null) PeftAdapter.Load(model, adapterDir);
        using var x = tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0);
        using var hidden = model.Forward(x);
        using var logits = model.Logits(hidden)[0].to_type(ScalarType.Float32).contiguous();
        var flat = logits.data<float>().ToArray();
        var v = (int)logits.shape[1];
        return Enumerable.Range(0, ids.Length).Select(t => flat.AsSpan(t * v, v).ToArray()).ToArray();
    }

    internal static double RelativeError(float[][] actual, float[][] expected)
    {
        double num = 0, den = 0;
        for (var t = 0; t < expected.Length; t++)
            for (var i = 0; i < expected[t].Length; i++)
            {
                var d = (double)actual[t][i] - expected[t][i];
                num += d * d;
                den += (double)expected[t][i] * expected[t][i];
            }
        return Math.Sqrt(num / den);
    }

    internal static double MeanNll(float[][] logits, int[] ids)
    {
        double sum = 0;
        for (var t = 0; t + 1 < ids.Length; t++)
        {
            var row = logits[t];
            var max = row.Max();
            var lse = max + Math.Log(row.Sum(v => Math.Exp(v - max)));
            sum += lse - row[ids[t + 1]];
        }
        return sum / (ids.Length - 1);
    }

    [TestCaseSource(nameof(AllTypes))]
    public void ExportedTinyLlamaLoadsAndGenerates(GgufOutputType type)
    {
        var path = Path.Combine(Dir, $"tiny-{type.Name()}.gguf");
        var result = GgufExporter.ExportDirectory(Dense, path, new GgufExportOptions { Type = type });
        var file = GgufReader.Open(path);
        Assert.That(file.Metadata["general.architecture"].AsString(), Is.EqualTo("llama"));
        Assert.That(file.Metadata["general.file_type"].AsInt64(), Is.EqualTo(type.FileType()));
        Assert.That(file.Tensors.Select(t => t.Name), Does.Contain("rope_freqs.weight"), "llama3 RoPE scaling needs the factors tensor");
        Assert.That(result.TensorCount, Is.EqualTo(file.Tensors.Count));
        using var w = LlamaCpp.Load(path, out var p);
        Assert.That(w.Vocab.Count, Is.EqualTo(420));
        var prompt = HfTokenizer.FromDirectory(Dense).Encode(PromptText, addBos: true);
        var generated = LlamaCpp.Greedy(w, p, prompt, 8);
        Assert.That(generated, Has.Length.EqualTo(8).And.All.InRange(0, 419));
    }

    [Test]
    public void LlamaCppTokenizationEqualsHfTokenizer()
    {
        var path = Path.Combine(Dir, "tiny-f16.gguf");
        GgufExporter.ExportDirectory(Dense, path, new GgufExportOptions { Type = GgufOutputType.F16 });
        var text = File.ReadAllText(Path.Combine(TestEnv.TinyLlamaDir, "tokenizer-mixed.txt"));
        var ours = HfTokenizer.FromDirectory(Dense).Encode(text);
        var golden = JsonNode.Parse(File.ReadAllText(Path.Combine(TestEnv.TinyLlamaDir, "tokenizer-mixed-expected.json")))!["hf-tiny-llama"]!["whole"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        using var w = LlamaCpp.Load(path, out _);
        var theirs = LlamaCpp.Tokenize(w, text, addBos: false);
        Assert.That(ours, Is.EqualTo(golden), "SlothSharp vs Hugging Face (sanity)");
        Assert.That(theirs, Is.EqualTo(ours), "llama.cpp vs SlothSharp");
        Assert.That(LlamaCpp.Tokenize(w, "hi <|end_of_text|>", addBos: false)[^1], Is.EqualTo(1), "special tokens in text");
    }

    // f32: llama.cpp with a float32 KV cache and flash attention off (its CPU kernel rounds through f16) agrees to
    // ~5e-7, so the bound is far tighter than the 1e-3 the export needs.
    [TestCase(GgufOutputType.F32, 1e-5, true)]
    [TestCase(GgufOutputType.F16, 1e-2, true)]
    [TestCase(GgufOutputType.BF16, 1e-2, false)]
    public void LogitsMatchSlothSharpFloat32(GgufOutputType type, double tolerance, bool sameGreedy)
    {
        var path = Path.Combine(Dir, $"tiny-{type.Name()}.gguf");
        GgufExporter.ExportDirectory(Dense, path, new GgufExportOptions { Type = type });
        var ids = HfTokenizer.FromDirectory(Dense).Encode(PromptText, addBos: true);
        var expected = SlothLogits(Dense, ids);
        using var w = LlamaCpp.Load(path, out var p);
        var actual = LlamaCpp.Logits(w, p, ids);
        var err = RelativeError(actual, expected);
        TestContext.Out.WriteLine($"{type}: relative logits error {err:E3} over {ids.Length} positions");
        Assert.That(err, Is.LessThanOrEqualTo(tolerance));
        if (!sameGreedy) return;
        var prompt = ids[..6];
        var theirs = LlamaCpp.Greedy(w, p, prompt, 12);
        var ours = new List<int>(prompt);
        for (var s = 0; s < 12; s++) ours.Add(LlamaCpp.ArgMax(SlothLogits(Dense, ours.ToArray())[^1]));
        Assert.That(theirs, Is.EqualTo(ours.Skip(6).ToArray()), "greedy continuation");
    }

    [Test]
    public void QuantizedPerplexityStaysNearF16()
    {
        var ids = HeldOutIds();
        var nll = new Dictionary<GgufOutputType, double>();
        foreach (var type in AllTypes)
        {
            var path = Path.Combine(Dir, $"tiny-{type.Name()}.gguf");
            GgufExporter.ExportDirectory(Dense, path, new GgufExportOptions { Type = type });
            using var w = LlamaCpp.Load(path, out var p);
            nll[type] = MeanNll(LlamaCpp.Logits(w, p, ids), ids);
        }
        foreach (var (t, v) in nll) TestContext.Out.WriteLine($"{t.Name(),-7} perplexity {Math.Exp(v):F4}");
        double Ppl(GgufOutputType t) => Math.Exp(nll[t]);
        Assert.That(Ppl(GgufOutputType.Q8_0) / Ppl(GgufOutputType.F16), Is.InRange(0.99, 1.01));
        Assert.That(Ppl(GgufOutputType.Q4_K_M) / Ppl(GgufOutputType.F16), Is.InRange(0.95, 1.05));
        Assert.That(Ppl(GgufOutputType.F32) / Ppl(GgufOutputType.F16), Is.InRange(0.999, 1.001));
    }

    [Test]
    public void LoraAdapterAppliedByLlamaCppGivesTheMergedLogits()
    {
        var adapterDir = Path.Combine(TestEnv.TinyLlamaDir, "adapter");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Dense, "config.json")))!.AsObject();
        var basePath = Path.Combine(Dir, "base-f32.gguf");
        var loraPath = Path.Combine(Dir, "lora-f32.gguf");
        var mergedPath = Path.Combine(Dir, "merged-f32.gguf");
        GgufExporter.ExportDirectory(Dense, basePath, new GgufExportOptions { Type = GgufOutputType.F32 });
        GgufLoraExporter.Export(config, adapterDir, loraPath, GgufOutputType.F32);
        using (var model = CausalLM.FromPretrained(Dense, new LoadOptions { Device = CPU, Quantize = false, ComputeDtype = ScalarType.Float32 }))
        {
            PeftAdapter.Load(model, adapterDir);
            GgufExporter.Export(model.Config.Raw, model.MergedDenseWeights(ScalarType.Float32), Dense, mergedPath, new GgufExportOptions { Type = GgufOutputType.F32 });
        }
        var lora = GgufReader.Open(loraPath);
        Assert.That(lora.Metadata["general.type"].AsString(), Is.EqualTo("adapter"));
        Assert.That(lora.Metadata["adapter.lora.alpha"].AsDouble(), Is.EqualTo(8));
        var ids = HfTokenizer.FromDirectory(Dense).Encode(PromptText, addBos: true);
        float[][] merged, applied, plain;
        using (var w = LlamaCpp.Load(mergedPath, out var p)) merged = LlamaCpp.Logits(w, p, ids);
        using (var w = LlamaCpp.Load(basePath, out var p))
        {
            plain = LlamaCpp.Logits(w, p, ids);
            var adapter = w.NativeHandle.LoadLoraFromFile(loraPath);
            applied = LlamaCpp.Logits(w, p, ids, adapter);
        }
        var slothMerged = SlothLogits(Dense, ids, adapterDir);
        TestContext.Out.WriteLine($"LoRA: applied vs merged {RelativeError(applied, merged):E3}, merged vs SlothSharp {RelativeError(merged, slothMerged):E3}, base vs merged {RelativeError(plain, merged):E3}");
        Assert.That(RelativeError(merged, slothMerged), Is.LessThanOrEqualTo(1e-3), "merged export vs SlothSharp with the adapter");
        Assert.That(RelativeError(applied, merged), Is.LessThanOrEqualTo(1e-3), "llama.cpp + GGUF LoRA vs merged export");
        Assert.That(RelativeError(plain, merged), Is.GreaterThan(1e-2), "the adapter changes the logits");
    }
}
