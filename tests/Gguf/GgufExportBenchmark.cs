using System.Diagnostics;
using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Gguf;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// Export speed on a Llama-3.2-1B-shaped random model (hidden 2048, 16 layers, 32/8 heads, FFN 8192, vocab 128256,
/// tied embeddings: 1.24 B weights) to q4_k_m. Explicit (minutes on a small machine, 5 GB of disk traffic); run with
/// <c>./build.sh test --filter "FullyQualifiedName~GgufExportBenchmark"</c>. Tensors are generated one at a time, as a
/// merge streams them, and the time to generate them is reported separately.
/// </summary>
[Explicit("benchmark: minutes of CPU time")]
[Category("Benchmark")]
public class GgufExportBenchmark() : TempDirFixture("gguf-bench")
{
    [Test]
    public void Llama1BShapedModelToQ4KM()
    {
        const int hidden = 2048, ff = 8192, layers = 16, heads = 32, kv = 8, vocab = 128256, headDim = 64;
        var config = new JsonObject
        {
            ["model_type"] = "llama", ["hidden_size"] = hidden, ["intermediate_size"] = ff, ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads, ["num_key_value_heads"] = kv, ["head_dim"] = headDim,
            ["max_position_embeddings"] = 131072, ["rms_norm_eps"] = 1e-5, ["tie_word_embeddings"] = true, ["vocab_size"] = vocab,
            ["rope_parameters"] = new JsonObject { ["rope_type"] = "llama3", ["rope_theta"] = 500000.0, ["factor"] = 32.0,
                ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 8192 },
        };
        var generate = new Stopwatch();
        long weights = 0;
        IEnumerable<KeyValuePair<string, Tensor>> Tensors()
        {
            var g = new TorchSharp.torch.Generator(1);
            KeyValuePair<string, Tensor> Make(string name, params long[] shape)
            {
                generate.Start();
                var t = shape.Length == 1 ? ones(shape) : randn(shape, generator: g).mul_(0.02f);
                generate.Stop();
                weights += t.numel();
                return new(name, t);
            }
            IEnumerable<KeyValuePair<string, Tensor>> All()
            {
                yield return Make("model.embed_tokens.weight", vocab, hidden);
                for (var i = 0; i < layers; i++)
                {
                    var p = $"model.layers.{i}.";
                    yield return Make(p + "input_layernorm.weight", hidden);
                    yield return Make(p + "self_attn.q_proj.weight", heads * headDim, hidden);
                    yield return Make(p + "self_attn.k_proj.weight", kv * headDim, hidden);
                    yield return Make(p + "self_attn.v_proj.weight", kv * headDim, hidden);
                    yield return Make(p + "self_attn.o_proj.weight", hidden, heads * headDim);
                    yield return Make(p + "post_attention_layernorm.weight", hidden);
                    yield return Make(p + "mlp.gate_proj.weight", ff, hidden);
                    yield return Make(p + "mlp.up_proj.weight", ff, hidden);
                    yield return Make(p + "mlp.down_proj.weight", hidden, ff);
                }
                yield return Make("model.norm.weight", hidden);
            }
            foreach (var kvp in All())
            {
                try { yield return kvp; }
                finally { kvp.Value.Dispose(); }
            }
        }
        var path = Path.Combine(Dir, "bench-q4_k_m.gguf");
        var total = Stopwatch.StartNew();
        var result = GgufExporter.Export(config, Tensors(), Path.Combine(TestEnv.TinyLlamaDir, "dense"), path, new GgufExportOptions { Type = GgufOutputType.Q4_K_M });
        total.Stop();
        var export = total.Elapsed - generate.Elapsed;
        TestContext.Out.WriteLine($"{weights / 1e9:F2} B weights → {result.FileBytes / 1048576.0:F0} MiB q4_k_m ({string.Join(", ", result.TensorTypes.Select(kv => $"{kv.Value} {kv.Key}"))})");
        TestContext.Out.WriteLine($"export {export.TotalSeconds:F1} s ({weights / export.TotalSeconds / 1e6:F1} M weights/s) on {Environment.ProcessorCount} cores; random generation {generate.Elapsed.TotalSeconds:F1} s excluded");
        Assert.That(result.TensorTypes[GgmlType.Q6_K], Is.GreaterThan(0));
    }

    /// <summary>Our q4_k_m export against llama.cpp's own quantizer (2 threads) on the same 190 M-weight model, timed
    /// back to back so other load on the machine affects both alike.</summary>
    [Test]
    public void Q4KMAgainstLlamaCppQuantizer()
    {
        using var model = SyntheticModel.Create(hidden: 2048, intermediate: 8192, layers: 2, heads: 32, kvHeads: 8, vocab: 32000, tied: true, seed: 3);
        var tok = Path.Combine(TestEnv.TinyLlamaDir, "dense");
        var f32 = Path.Combine(Dir, "f32.gguf");
        GgufExporter.Export(model.Config, model.Tensors, tok, f32, new GgufExportOptions { Type = GgufOutputType.F32 });
        var ours = Stopwatch.StartNew();
        GgufExporter.Export(model.Config, model.Tensors, tok, Path.Combine(Dir, "ours.gguf"), new GgufExportOptions { Type = GgufOutputType.Q4_K_M });
        ours.Stop();
        var theirs = Stopwatch.StartNew();
        LlamaCpp.Quantize(f32, Path.Combine(Dir, "llamacpp.gguf"), LLama.Native.LLamaFtype.MOSTLY_Q4_K_M);
        theirs.Stop();
        var weights = model.Tensors.Sum(kv => kv.Value.numel());
        TestContext.Out.WriteLine($"{weights / 1e6:F0} M weights to q4_k_m: SlothSharp {ours.Elapsed.TotalSeconds:F1} s, llama.cpp (2 threads, from f32 GGUF) {theirs.Elapsed.TotalSeconds:F1} s");
        Assert.That(GgufQuantizerCompatTests.CompareTensors(Path.Combine(Dir, "ours.gguf"), Path.Combine(Dir, "llamacpp.gguf"), "bench"), Is.Empty);
    }
}
