using System.Text.Json.Nodes;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The hf-tiny-llama golden data (tests/data/hf-tiny-llama, README there): the NF4 and dense checkpoints, the
/// PEFT adapter, the golden batch and what transformers/PEFT computed from them; the one place the Llama, fine-tuning
/// and model-CLI tests reach it through.</summary>
internal static class LlamaGolden
{
    public static string Nf4Dir => Path.Combine(TestEnv.TinyLlamaDir, "nf4");
    public static string DenseDir => Path.Combine(TestEnv.TinyLlamaDir, "dense");
    public static string AdapterDir => Path.Combine(TestEnv.TinyLlamaDir, "adapter");
    public static string AdapterFile => Path.Combine(AdapterDir, "adapter_model.safetensors");
    public static string ExpectedFile => Path.Combine(TestEnv.TinyLlamaDir, "expected.safetensors");

    /// <summary>expected.json: the numbers and id lists transformers/PEFT produced.</summary>
    public static JsonObject ExpectedJson => JsonNode.Parse(File.ReadAllText(Path.Combine(TestEnv.TinyLlamaDir, "expected.json")))!.AsObject();

    /// <summary>A number of expected.json.</summary>
    public static double Expected(string key) => ExpectedJson[key]!.GetValue<double>();

    /// <summary>A tensor of expected.safetensors (CPU).</summary>
    public static Tensor Read(string key)
    {
        using var r = new SafetensorsReader(ExpectedFile);
        return r.Read(key);
    }

    /// <summary>The NF4 base (or the checkpoint in <paramref name="dir"/>) on the CPU in float32, the golden data's
    /// compute dtype.</summary>
    public static CausalLM LoadBase(string? dir = null) =>
        CausalLM.FromPretrained(dir ?? Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 });

    /// <summary>input_ids, attention_mask, labels of the golden batch ([2, 43]).</summary>
    public static (Tensor Ids, Tensor Mask, Tensor Labels) Batch() => (Read("input_ids"), Read("attention_mask"), Read("labels"));

    /// <summary>The golden batch's rows without their padding.</summary>
    public static List<int[]> Rows()
    {
        using var scope = NewDisposeScope();
        var (ids, mask, _) = Batch();
        var rows = new List<int[]>();
        for (var b = 0; b < ids.shape[0]; b++)
        {
            var n = (int)mask[b].sum().item<long>();
            rows.Add(ids[b].narrow(0, 0, n).data<long>().Select(x => (int)x).ToArray());
        }
        return rows;
    }

    /// <summary>transformers' causal-LM loss: logits[:, :-1] against labels[:, 1:], mean over labels != -100.</summary>
    public static Tensor ShiftedLoss(Tensor logits, Tensor labels)
    {
        var v = logits.shape[^1];
        var l = logits[.., ..^1, ..].reshape(-1, v);
        var y = labels[.., 1..].reshape(-1).to(logits.device);
        return nn.functional.cross_entropy(l, y, ignore_index: -100);
    }

    /// <summary>Test-only: the golden PEFT adapter copied into a model with LoRA r 4, alpha 8 on all seven projections
    /// (the trainer's PeftAdapter is the real loader).</summary>
    public static void LoadGoldenAdapter(CausalLM model)
    {
        model.AddLora(new LoraConfig(Rank: 4, Alpha: 8), seed: 1);
        using var r = new SafetensorsReader(AdapterFile);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.LoraParameters())
        {
            using var t = r.Read("base_model.model." + name);
            p.copy_(t);
        }
        if (model.LoraParameters().Count != r.Entries.Count)
            throw new InvalidOperationException($"adapter has {r.Entries.Count} tensors, model {model.LoraParameters().Count}");
    }

    public static double MaxAbs(Tensor a, Tensor b)
    {
        using var d = (a.detach().cpu().to(ScalarType.Float64) - b.detach().cpu().to(ScalarType.Float64)).abs().max();
        return d.item<double>();
    }

    /// <summary>A fresh empty temporary folder.</summary>
    public static string NewTempDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"sloth-llama-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Copies a model directory into a fresh temporary one (to break it in a test).</summary>
    public static string CopyToTemp(string source)
    {
        var dir = NewTempDir();
        foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    /// <summary>Edits config.json of a model directory.</summary>
    public static void EditConfig(string dir, Action<JsonObject> edit)
    {
        var path = Path.Combine(dir, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }
}
