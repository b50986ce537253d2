using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;
using NUnit.Framework;

namespace SlothSharp.Tests;

/// <summary>
/// The real llama.cpp (LLamaSharp's CPU build) as the reference client of our GGUF files: load, tokenize, evaluate
/// logits, greedy generation, LoRA adapters, and llama.cpp's own quantizer. Its log goes to <see cref="Log"/> (shown
/// when an assertion needs it) instead of the console.
/// </summary>
internal static class LlamaCpp
{
    private static readonly object Gate = new();
    private static bool _configured;
    private static readonly StringBuilder LogText = new();

    public static string Log
    {
        get { lock (LogText) return LogText.ToString(); }
    }

    public static void ClearLog()
    {
        lock (LogText) LogText.Clear();
    }

    private static void Configure()
    {
        lock (Gate)
        {
            if (_configured) return;
            NativeLibraryConfig.All.WithLogCallback((level, message) =>
            {
                lock (LogText)
                {
                    if (LogText.Length > 200_000) LogText.Remove(0, 100_000);
                    LogText.Append(message);
                }
            });
            // Loads the native library through LLamaSharp's resolver (the quantizer's entry points alone do not).
            NativeApi.llama_empty_call();
            _configured = true;
        }
    }

    public static LLamaWeights Load(string path, out ModelParams parameters, uint context = 256)
    {
        Configure();
        // KV cache in float32 (llama.cpp's default is f16) and no flash attention (its CPU kernel computes in f16): the
        // f32 comparison then measures the export, not llama.cpp's reduced-precision shortcuts.
        parameters = new ModelParams(path)
        {
            ContextSize = context, GpuLayerCount = 0, BatchSize = context, UBatchSize = context, Threads = 2,
            TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
        };
        return LLamaWeights.LoadFromFile(parameters);
    }

    public static int[] Tokenize(LLamaWeights w, string text, bool addBos) =>
        w.Tokenize(text, addBos, special: true, Encoding.UTF8).Select(t => (int)t).ToArray();

    /// <summary>Logits of every position of <paramref name="ids"/> ([ids.Length][vocab]), in a fresh context.</summary>
    public static float[][] Logits(LLamaWeights w, ModelParams p, IReadOnlyList<int> ids, LoraAdapter? lora = null, float loraScale = 1f)
    {
        using var ctx = w.CreateContext(p);
        if (lora is { } adapter)
        {
            Span<(LoraAdapter, float)> adapters = [(adapter, loraScale)];
            ctx.NativeHandle.SetLoraAdapters(adapters);
        }
        var batch = new LLamaBatch();
        for (var i = 0; i < ids.Count; i++) batch.Add(ids[i], i, LLamaSeqId.Zero, true);
        var result = ctx.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) Assert.Fail($"llama_decode: {result}\n{Log}");
        var vocab = w.Vocab.Count;
        var logits = new float[ids.Count][];
        for (var i = 0; i < ids.Count; i++) logits[i] = ctx.NativeHandle.GetLogitsIth(i)[..vocab].ToArray();
        return logits;
    }

    /// <summary>Greedy continuation of <paramref name="prompt"/> by <paramref name="n"/> tokens (EOS not special).</summary>
    public static int[] Greedy(LLamaWeights w, ModelParams p, IReadOnlyList<int> prompt, int n)
    {
        using var ctx = w.CreateContext(p);
        var batch = new LLamaBatch();
        for (var i = 0; i < prompt.Count; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Count - 1);
        var output = new List<int>();
        var pos = prompt.Count;
        for (var step = 0; step < n; step++)
        {
            if (ctx.NativeHandle.Decode(batch) != DecodeResult.Ok) Assert.Fail($"llama_decode failed\n{Log}");
            var logits = ctx.NativeHandle.GetLogitsIth(batch.TokenCount - 1)[..w.Vocab.Count];
            var next = ArgMax(logits);
            output.Add(next);
            batch.Clear();
            batch.Add(next, pos++, LLamaSeqId.Zero, true);
        }
        return output.ToArray();
    }

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        var best = 0;
        for (var i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    /// <summary>llama.cpp's quantizer (llama_model_quantize, as llama-quantize runs it without an importance matrix;
    /// LLamaSharp's wrapper refuses BF16, so the native entry point is called directly), 2 threads.</summary>
    public static void Quantize(string src, string dst, LLamaFtype ftype)
    {
        if (!TryQuantize(src, dst, ftype)) Assert.Fail($"llama_model_quantize {ftype} failed\n{Log}");
    }

    /// <summary>As <see cref="Quantize"/>; false when llama.cpp refuses (e.g. Q8_0 of rows not a multiple of 32).</summary>
    public static bool TryQuantize(string src, string dst, LLamaFtype ftype)
    {
        Configure();
        var p = LLamaModelQuantizeParams.Default();
        p.ftype = ftype;
        p.nthread = 2;
        return NativeApi.llama_model_quantize(src, dst, ref p) == 0;
    }
}
