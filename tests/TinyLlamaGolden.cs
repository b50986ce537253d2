using System.Text.Json.Nodes;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Access to tests/data/hf-tiny-llama for the fine-tuning tests: the NF4 base, the PEFT adapter, the batch
/// and what transformers/PEFT computed from them (README there).</summary>
internal static class TinyLlamaGolden
{
    public static string Nf4Dir => Path.Combine(TestEnv.TinyLlamaDir, "nf4");
    public static string AdapterDir => Path.Combine(TestEnv.TinyLlamaDir, "adapter");
    public static string ExpectedTensors => Path.Combine(TestEnv.TinyLlamaDir, "expected.safetensors");

    public static JsonObject Expected => JsonNode.Parse(File.ReadAllText(Path.Combine(TestEnv.TinyLlamaDir, "expected.json")))!.AsObject();

    /// <summary>The NF4 base on the CPU in float32 (the golden data's compute dtype).</summary>
    public static LlamaForCausalLM LoadBase(string? dir = null) =>
        LlamaForCausalLM.FromPretrained(dir ?? Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 });

    /// <summary>input_ids, attention_mask, labels of the golden batch ([2, 43]).</summary>
    public static (Tensor Ids, Tensor Mask, Tensor Labels) Batch()
    {
        using var r = new SafetensorsReader(ExpectedTensors);
        return (r.Read("input_ids"), r.Read("attention_mask"), r.Read("labels"));
    }

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

    public static double Number(string field) => Expected[field]!.GetValue<double>();

    public static string NewTempDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"sloth-ft-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
