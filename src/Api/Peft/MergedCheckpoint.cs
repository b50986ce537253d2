using System.Text.Json;
using System.Text.Json.Nodes;
using SlothSharp.IO;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Peft;

/// <summary>
/// Writes a model with its LoRA adapters folded in (W + scale·B·A; NF4 weights dequantized first) as a dense Hugging Face
/// checkpoint that transformers loads without PEFT or bitsandbytes: config.json (the source's, without
/// quantization_config, dtype updated), model.safetensors, and the source's tokenizer and generation files.
/// </summary>
public static class MergedCheckpoint
{
    /// <summary>Files copied from the base model directory as they are (those that exist).</summary>
    public static readonly string[] CopiedFiles =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja", "tokenizer.model"];

    /// <summary>Writes the merged checkpoint into <paramref name="outDir"/>, which must not exist or be empty. Everything
    /// goes into a temporary sibling directory first, renamed into place when complete.</summary>
    public static void Write(CausalLM model, string outDir, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32))
            throw new ArgumentException($"dtype {dtype} is not a checkpoint dtype (bf16, fp16 or fp32)", nameof(dtype));
        var full = Path.GetFullPath(outDir);
        if (File.Exists(full)) throw new IOException($"{full}: exists and is a file; the merged checkpoint needs a new directory");
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new IOException($"{full}: exists and is not empty; choose a new output directory");
        using var staging = StagingDirectory.Beside(full);
        var tmp = staging.Path;
        var config = (JsonObject)model.Config.Raw.DeepClone();
        config.Remove("quantization_config");
        var dtypeName = dtype switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" };
        var wrote = false;
        foreach (var key in new[] { "dtype", "torch_dtype" })
            if (config.ContainsKey(key)) (config[key], wrote) = (dtypeName, true);
        if (!wrote) config["torch_dtype"] = dtypeName;
        File.WriteAllText(Path.Combine(tmp, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

        using (var scope = NewDisposeScope())
        {
            var tensors = model.MergedDenseWeights(dtype).ToList();
            SafetensorsWriter.Save(Path.Combine(tmp, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        }
        foreach (var name in CopiedFiles)
        {
            var src = Path.Combine(model.SourceDirectory, name);
            if (File.Exists(src)) File.Copy(src, Path.Combine(tmp, name));
        }
        if (Directory.Exists(full)) Directory.Delete(full);  // empty (checked above)
        staging.MoveTo(full);
    }
}
