using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Gguf;

namespace SlothSharp.Tests;

/// <summary>
/// Phi-3 with longrope (tests/data/hf-variants/phi3-partial-longrope: partial rotary 0.5, original context 24,
/// max 256, window 12, written by transformers) exported as f32 GGUF and run by llama.cpp, against SlothSharp's float32
/// forward (itself checked against transformers' logits in FamilyVariantTests) and transformers' own logits.
/// Two llama.cpp behaviours shape the tests:
/// <list type="bullet">
/// <item>transformers picks the factor table per forward by the sequence length (short up to
/// original_max_position_embeddings, long past it); llama.cpp picks it once per context by the context size (long when
/// n_ctx per sequence &gt; the original context), and pads n_ctx to a multiple of 256. With this variant's original
/// context of 24 llama.cpp therefore always uses the long table; the short table is checked on the same weights with
/// the original context raised to 256 (max 1024), and the divergence itself is pinned by the last test.</item>
/// <item>llama.cpp disables Phi-3's sliding window ("Phi SWA is currently disabled"), so comparisons over more tokens
/// than the window (12) use a copy of the config without sliding_window.</item>
/// </list>
/// </summary>
[NonParallelizable]
public class GgufLongRopeTests() : TempDirFixture("gguf-longrope")
{
    private static string VariantDir => Path.Combine(TestEnv.DataDir, "hf-variants", "phi3-partial-longrope");
    private static JsonObject Expected => JsonNode.Parse(File.ReadAllText(Path.Combine(VariantDir, "expected.json")))!.AsObject();
    private static int[] Ints(JsonNode n) => n.AsArray().Select(x => x!.GetValue<int>()).ToArray();
    private static int[] ShortIds => Ints(Expected["short_ids"]!);
    private static int[] LongIds => Ints(Expected["input_ids"]![0]!)[..Expected["lengths"]![0]!.GetValue<int>()];

    /// <summary>The variant's weights with its config.json (changed by <paramref name="edit"/>) and a 96-token
    /// SentencePiece-style tokenizer (the variant has none; the ids are given directly) in a model directory, exported
    /// as f32. Returns the model directory and the GGUF path.</summary>
    private (string ModelDir, string Gguf) ExportF32(Action<JsonObject>? edit = null)
    {
        var model = Path.Combine(Dir, "model");
        Directory.CreateDirectory(model);
        foreach (var f in new[] { "generation_config.json", "model.safetensors" })
            File.Copy(Path.Combine(VariantDir, f), Path.Combine(model, f), overwrite: true);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(VariantDir, "config.json")))!.AsObject();
        edit?.Invoke(config);
        File.WriteAllText(Path.Combine(model, "config.json"), config.ToJsonString());
        SyntheticModel.WriteByteTokenizer(model, vocabSize: 96);
        var path = Path.Combine(Dir, "phi3-longrope-f32.gguf");
        GgufExporter.ExportDirectory(model, path, new GgufExportOptions { Type = GgufOutputType.F32 });
        return (model, path);
    }

    private static void WithoutSlidingWindow(JsonObject c) => c["sliding_window"] = null;

    [Test]
    public void ExportWritesTheFactorTablesAndAttentionFactor()
    {
        var file = GgufReader.Open(ExportF32().Gguf);
        var rope = JsonNode.Parse(File.ReadAllText(Path.Combine(VariantDir, "config.json")))!["rope_parameters"]!;
        var longT = file.Tensors.Single(t => t.Name == "rope_factors_long.weight");
        var shortT = file.Tensors.Single(t => t.Name == "rope_factors_short.weight");
        Assert.That(longT.Type, Is.EqualTo(GgmlType.F32));
        Assert.That(shortT.Type, Is.EqualTo(GgmlType.F32));
        Assert.That(longT.Dims, Is.EqualTo(new long[] { 4 }), "rotary dim 8 (head 16 × 0.5) → 4 factors");
        Assert.That(F32(file, longT), Is.EqualTo(Floats(rope["long_factor"]!)));
        Assert.That(F32(file, shortT), Is.EqualTo(Floats(rope["short_factor"]!)));
        Assert.That(file.Metadata["phi3.rope.scaling.original_context_length"].AsInt64(), Is.EqualTo(24));
        Assert.That(file.Metadata["phi3.rope.dimension_count"].AsInt64(), Is.EqualTo(8));
        // transformers' default for longrope: sqrt(1 + ln(256 / 24) / ln 24).
        Assert.That(file.Metadata["phi3.rope.scaling.attn_factor"].AsDouble(), Is.EqualTo(Math.Sqrt(1 + Math.Log(256.0 / 24) / Math.Log(24))).Within(1e-6));

        static float[] Floats(JsonNode a) => a.AsArray().Select(x => (float)x!.GetValue<double>()).ToArray();
        static float[] F32(GgufReader f, GgufTensorInfo t) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.ReadTensorBytes(t)).ToArray();
    }

    [Test]
    public void LongropeNeedsFactorsOfTheRotaryLength()
    {
        var e = Assert.Throws<InvalidDataException>(() => ExportF32(c => c["rope_parameters"]!["long_factor"] = new JsonArray(1.0, 2.0)));
        Assert.That(e!.Message, Does.Contain("long_factor has 2 entries").And.Contain("needs 4"));
        Assert.That(Directory.GetFiles(Dir, "*.gguf"), Is.Empty, "nothing half-written");
    }

    /// <summary>Short table: original context 256 and max 1024 (attention factor sqrt(1 + ln 4 / ln 256)) on the same
    /// weights, a 12-token prompt, n_ctx 256 (not past the original, so llama.cpp takes the short table).</summary>
    [Test]
    public void ShortFactorsMatchSlothSharpInAContextUpToTheOriginalLength()
    {
        var (model, path) = ExportF32(c =>
        {
            c["original_max_position_embeddings"] = 256;
            c["rope_parameters"]!["original_max_position_embeddings"] = 256;
            c["max_position_embeddings"] = 1024;
        });
        var ids = ShortIds;
        var expected = GgufLlamaCppTests.SlothLogits(model, ids);
        using var w = LlamaCpp.Load(path, out var p, context: 256);
        var err = GgufLlamaCppTests.RelativeError(LlamaCpp.Logits(w, p, ids), expected);
        TestContext.Out.WriteLine($"longrope short factors, {ids.Length} tokens, n_ctx 256 = original: relative logits error {err:E3}");
        Assert.That(err, Is.LessThanOrEqualTo(1e-3));
    }

    /// <summary>Long table: the variant as transformers wrote it (original 24), 40 tokens, n_ctx 256. All positions
    /// against SlothSharp without the sliding window (llama.cpp has none for Phi-3), the first 12 (inside the window)
    /// against transformers' logits of the same row (its padded batch reaches position 39, so transformers used the
    /// long table too).</summary>
    [Test]
    public void LongFactorsMatchSlothSharpAndTransformersPastTheOriginalLength()
    {
        var (model, path) = ExportF32(WithoutSlidingWindow);
        var ids = LongIds;
        Assert.That(ids, Has.Length.GreaterThan(24), "the prompt passes original_max_position_embeddings");
        var expected = GgufLlamaCppTests.SlothLogits(model, ids);
        using var w = LlamaCpp.Load(path, out var p, context: 256);
        var got = LlamaCpp.Logits(w, p, ids);
        var err = GgufLlamaCppTests.RelativeError(got, expected);
        var transformers = Expected["logits"]![0]!.AsArray().Take(12).Select(r => r!.AsArray().Select(x => x!.GetValue<float>()).ToArray()).ToArray();
        var errHf = GgufLlamaCppTests.RelativeError(got[..12], transformers);
        TestContext.Out.WriteLine($"longrope long factors, {ids.Length} tokens, n_ctx 256: relative logits error {err:E3} vs SlothSharp (no window), {errHf:E3} vs transformers (first 12)");
        Assert.That(err, Is.LessThanOrEqualTo(1e-3));
        Assert.That(errHf, Is.LessThanOrEqualTo(1e-3));
    }

    /// <summary>
    /// Where llama.cpp and transformers part: in a context longer than the original length llama.cpp rotates even a
    /// short prompt with the long factors, while transformers (and SlothSharp) use the short ones until the sequence
    /// itself passes the original length. A 12-token prompt's logits then match the first 12 positions of SlothSharp's
    /// 40-token forward (long table), not SlothSharp's forward of the 12 tokens alone (short table).
    /// </summary>
    [Test]
    public void LlamaCppPicksTheFactorsByContextSizeNotPromptLength()
    {
        var (model, path) = ExportF32();
        var longIds = LongIds;
        var prefix = longIds[..12];
        var longTable = GgufLlamaCppTests.SlothLogits(model, longIds)[..12];
        var shortTable = GgufLlamaCppTests.SlothLogits(model, prefix);
        using var w = LlamaCpp.Load(path, out var p, context: 256);
        var got = LlamaCpp.Logits(w, p, prefix);
        var vsLong = GgufLlamaCppTests.RelativeError(got, longTable);
        var vsShort = GgufLlamaCppTests.RelativeError(got, shortTable);
        TestContext.Out.WriteLine($"{prefix.Length} tokens in n_ctx 256: vs SlothSharp's long table {vsLong:E3}, vs SlothSharp's short table {vsShort:E3}");
        Assert.That(vsLong, Is.LessThanOrEqualTo(1e-3), "llama.cpp uses the long factors in a long context");
        Assert.That(vsShort, Is.GreaterThan(1e-2), "so it differs from transformers for short prompts in a long context");
    }
}
