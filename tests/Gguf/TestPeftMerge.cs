using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// A family-independent LoRA merge for the GGUF tests (SlothSharp's model classes only run Llama so far): the dense
/// checkpoint's tensors in float32 with W + (alpha / r)·B·A folded into every adapted weight, as PEFT's
/// merge_and_unload does.
/// </summary>
internal static class TestPeftMerge
{
    public static List<KeyValuePair<string, Tensor>> DenseFloat32(string denseDir)
    {
        using var ckpt = SafetensorsCheckpoint.Open(denseDir);
        var list = new List<KeyValuePair<string, Tensor>>();
        foreach (var key in ckpt.Keys)
        {
            using var t = ckpt.Read(key);
            list.Add(new(key, t.to_type(ScalarType.Float32).contiguous()));
        }
        return list;
    }

    public static List<KeyValuePair<string, Tensor>> Merged(string denseDir, string adapterDir)
    {
        var tensors = DenseFloat32(denseDir);
        var ac = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, "adapter_config.json")))!.AsObject();
        var scale = ac["lora_alpha"]!.GetValue<double>() / ac["r"]!.GetValue<int>();
        using var r = new SafetensorsReader(Path.Combine(adapterDir, "adapter_model.safetensors"));
        var merged = 0;
        for (var i = 0; i < tensors.Count; i++)
        {
            var (name, w) = tensors[i];
            if (!name.EndsWith(".weight", StringComparison.Ordinal)) continue;
            var module = "base_model.model." + name[..^".weight".Length];
            if (!r.Contains(module + ".lora_A.weight")) continue;
            using var a = r.Read(module + ".lora_A.weight").to_type(ScalarType.Float32);
            using var b = r.Read(module + ".lora_B.weight").to_type(ScalarType.Float32);
            tensors[i] = new(name, (w + b.matmul(a) * scale).contiguous());
            w.Dispose();
            merged++;
        }
        if (merged * 2 != r.Keys.Count()) throw new InvalidOperationException($"merged {merged} modules but the adapter has {r.Keys.Count()} tensors");
        return tensors;
    }

    public static void Dispose(List<KeyValuePair<string, Tensor>> tensors)
    {
        foreach (var (_, t) in tensors) t.Dispose();
    }
}
