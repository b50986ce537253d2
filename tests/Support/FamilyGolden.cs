using System.Text.Json.Nodes;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The hf-tiny-families golden data (tests/data/hf-tiny-families, README there): per family a bf16 dense
/// checkpoint, its bnb-4bit save, a PEFT adapter (all-linear) and what transformers / PEFT computed (float32 losses,
/// greedy ids), never written by SlothSharp.</summary>
internal static class FamilyGolden
{
    public static readonly string[] Families = ["qwen2", "qwen3", "mistral", "gemma2", "gemma3", "phi3"];

    public static string Dir(string family) => Path.Combine(TestEnv.DataDir, "hf-tiny-families", family);
    public static string Dense(string family) => Path.Combine(Dir(family), "dense");
    public static string Nf4(string family) => Path.Combine(Dir(family), "nf4");
    public static string Adapter(string family) => Path.Combine(Dir(family), "adapter");

    public static JsonObject Expected(string family) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(Dir(family), "expected.json")))!.AsObject();

    public static CausalLM Load(string dir, bool quantize = true) =>
        CausalLM.FromPretrained(dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32, Quantize = quantize });

    /// <summary>The golden batch as transformers built it: BOS + text per document, right-padded to seq_len with the
    /// pad id; labels −100 on padding.</summary>
    public static (Tensor Ids, Tensor Mask, Tensor Labels) Batch(string family)
    {
        var e = Expected(family);
        var tok = HfTokenizer.FromDirectory(Dense(family));
        var texts = e["texts"]!.AsArray().Select(t => t!.GetValue<string>()).ToArray();
        var seq = e["seq_len"]!.GetValue<int>();
        var rows = texts.Select(t => tok.Encode(t, addBos: true)).ToArray();
        var ids = new long[texts.Length * seq];
        var mask = new long[texts.Length * seq];
        var labels = new long[texts.Length * seq];
        for (var r = 0; r < rows.Length; r++)
            for (var c = 0; c < seq; c++)
            {
                var inside = c < rows[r].Length;
                ids[r * seq + c] = inside ? rows[r][c] : tok.PadTokenId!.Value;
                mask[r * seq + c] = inside ? 1 : 0;
                labels[r * seq + c] = inside ? rows[r][c] : -100;
            }
        if (rows.Max(r => r.Length) != seq) throw new InvalidOperationException($"{family}: the tokenizer gives {rows.Max(r => r.Length)} tokens for the longest text; the golden batch has {seq}");
        return (tensor(ids).reshape(rows.Length, seq), tensor(mask).reshape(rows.Length, seq), tensor(labels).reshape(rows.Length, seq));
    }

    /// <summary>transformers' loss through the model's float32 logits (the reference computation).</summary>
    public static double Loss(CausalLM model, string family)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (ids, mask, labels) = Batch(family);
        var logits = model.Logits(model.Forward(ids, mask));
        return LlamaGolden.ShiftedLoss(logits, labels).item<float>();
    }
}
