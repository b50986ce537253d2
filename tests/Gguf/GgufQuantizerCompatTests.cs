using LLama.Native;
using NUnit.Framework;
using SlothSharp.Gguf;

namespace SlothSharp.Tests;

/// <summary>
/// Bit-compatibility with llama.cpp's quantizer: our F32 export is quantized by llama.cpp itself
/// (llama_model_quantize, as <c>llama-quantize</c> does, no importance matrix), and our own export at the same type
/// must have the same tensor types and the same bytes, tensor by tensor. A random model with 256- and 512-wide rows
/// exercises the K-quants (Q4_K, Q5_K, Q6_K) and the q4_k_m / q5_k_m mixes; the tiny Llama (64-wide rows) exercises
/// llama.cpp's fallbacks (Q5_0, Q5_1, Q8_0 instead of K-quants).
/// </summary>
[NonParallelizable]
public class GgufQuantizerCompatTests() : TempDirFixture("gguf-compat")
{
    private static readonly (GgufOutputType Ours, LLamaFtype Theirs)[] Types =
    [
        (GgufOutputType.F16, LLamaFtype.MOSTLY_F16),
        (GgufOutputType.BF16, LLamaFtype.MOSTLY_BF16),
        (GgufOutputType.Q8_0, LLamaFtype.MOSTLY_Q8_0),
        (GgufOutputType.Q4_0, LLamaFtype.MOSTLY_Q4_0),
        (GgufOutputType.Q4_K_M, LLamaFtype.MOSTLY_Q4_K_M),
        (GgufOutputType.Q5_K_M, LLamaFtype.MOSTLY_Q5_K_M),
        (GgufOutputType.Q6_K, LLamaFtype.MOSTLY_Q6_K),
    ];

    [Test]
    public void WideRandomModelMatchesLlamaCppQuantizerBytes()
    {
        using var model = SyntheticModel.Create(hidden: 256, intermediate: 512, layers: 8, heads: 4, kvHeads: 2, vocab: 420, tied: false, seed: 7);
        var tokDir = Path.Combine(TestEnv.TinyLlamaDir, "dense");
        var f32 = Path.Combine(Dir, "f32.gguf");
        GgufExporter.Export(model.Config, model.Tensors, tokDir, f32, new GgufExportOptions { Type = GgufOutputType.F32 });
        var failures = new List<string>();
        foreach (var (ours, theirs) in Types)
        {
            var mine = Path.Combine(Dir, $"ours-{ours}.gguf");
            var reference = Path.Combine(Dir, $"llamacpp-{ours}.gguf");
            GgufExporter.Export(model.Config, model.Tensors, tokDir, mine, new GgufExportOptions { Type = ours });
            LlamaCpp.Quantize(f32, reference, theirs);
            failures.AddRange(CompareTensors(mine, reference, ours.ToString()));
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
        // The comparison can fail: q4_k_m against llama.cpp's q5_k_m differs in types and bytes.
        Assert.That(CompareTensors(Path.Combine(Dir, "ours-Q4_K_M.gguf"), Path.Combine(Dir, "llamacpp-Q5_K_M.gguf"), "negative"), Is.Not.Empty);
    }

    [Test]
    public void TinyLlamaFallbacksMatchLlamaCppQuantizerBytes()
    {
        var dense = Path.Combine(TestEnv.TinyLlamaDir, "dense");
        var f32 = Path.Combine(Dir, "f32.gguf");
        GgufExporter.ExportDirectory(dense, f32, new GgufExportOptions { Type = GgufOutputType.F32 });
        var failures = new List<string>();
        foreach (var (ours, theirs) in Types)
        {
            var mine = Path.Combine(Dir, $"ours-{ours}.gguf");
            var reference = Path.Combine(Dir, $"llamacpp-{ours}.gguf");
            GgufExporter.ExportDirectory(dense, mine, new GgufExportOptions { Type = ours });
            LlamaCpp.Quantize(f32, reference, theirs);
            failures.AddRange(CompareTensors(mine, reference, ours.ToString()));
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
    }

    /// <summary>The other families at the mixed types: Phi-3's fused attn_qkv gets one step more than attn_v
    /// (Q5_K for q4_k_m), Gemma's tied embedding is the output; the tiny rows then take llama.cpp's fallbacks.</summary>
    [TestCaseSource(typeof(GgufFamilyTests), nameof(GgufFamilyTests.Families))]
    public void FamilyMixesMatchLlamaCppQuantizerBytes(string family)
    {
        var dense = Path.Combine(TestEnv.DataDir, "hf-tiny-families", family, "dense");
        var f32 = Path.Combine(Dir, "f32.gguf");
        GgufExporter.ExportDirectory(dense, f32, new GgufExportOptions { Type = GgufOutputType.F32 });
        var failures = new List<string>();
        foreach (var (ours, theirs) in Types.Where(t => t.Ours is GgufOutputType.Q4_K_M or GgufOutputType.Q5_K_M or GgufOutputType.Q8_0))
        {
            var mine = Path.Combine(Dir, $"ours-{ours}.gguf");
            var reference = Path.Combine(Dir, $"llamacpp-{ours}.gguf");
            GgufExporter.ExportDirectory(dense, mine, new GgufExportOptions { Type = ours });
            if (!LlamaCpp.TryQuantize(f32, reference, theirs))
            {
                // llama.cpp has no fallback for Q8_0 (qwen's FFN width 176 is not a multiple of 32) and refuses; we
                // write those tensors as F16 instead.
                Assert.That(ours, Is.EqualTo(GgufOutputType.Q8_0), $"{family}: llama.cpp refused {ours}\n{LlamaCpp.Log}");
                var odd = GgufReader.Open(mine).Tensors.Where(t => t.Dims.Length == 2 && t.Dims[0] % 32 != 0).ToList();
                Assert.That(odd, Is.Not.Empty.And.All.Matches<GgufTensorInfo>(t => t!.Type == GgmlType.F16));
                continue;
            }
            failures.AddRange(CompareTensors(mine, reference, $"{family} {ours}"));
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
    }

    /// <summary>Per tensor: same names in the same order, same ggml type, same bytes (first differing byte reported).</summary>
    internal static List<string> CompareTensors(string mine, string reference, string label)
    {
        var a = GgufReader.Open(mine);
        var b = GgufReader.Open(reference);
        var failures = new List<string>();
        var bByName = b.Tensors.ToDictionary(t => t.Name);
        if (a.Tensors.Count != b.Tensors.Count) failures.Add($"{label}: {a.Tensors.Count} tensors vs llama.cpp's {b.Tensors.Count}");
        foreach (var ta in a.Tensors)
        {
            if (!bByName.TryGetValue(ta.Name, out var tb)) { failures.Add($"{label}: {ta.Name} missing in llama.cpp's file"); continue; }
            if (ta.Type != tb.Type) { failures.Add($"{label}: {ta.Name} is {ta.Type}, llama.cpp chose {tb.Type}"); continue; }
            var x = a.ReadTensorBytes(ta);
            var y = b.ReadTensorBytes(tb);
            var diff = x.AsSpan().CommonPrefixLength(y);
            if (diff != x.Length || x.Length != y.Length)
            {
                var count = 0;
                for (var i = 0; i < Math.Min(x.Length, y.Length); i++) if (x[i] != y[i]) count++;
                failures.Add($"{label}: {ta.Name} ({ta.Type}) bytes differ: {count} of {x.Length}, first at {diff}");
            }
        }
        return failures;
    }
}
