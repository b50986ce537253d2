using System.CommandLine;
using System.Text.Json.Nodes;
using SlothSharp.Gguf;
using SlothSharp.Models;
using SlothSharp.Peft;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>
/// `sloth export`: a Hugging Face model (optionally with a PEFT adapter folded in) as a GGUF file for llama.cpp,
/// Ollama, LM Studio and LLamaSharp; or, with --adapter-only, the adapter alone as a GGUF LoRA.
/// </summary>
public static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model directory (Hugging Face checkpoint: config.json, safetensors, tokenizer.json)", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "PEFT LoRA adapter directory: folded into the weights, or exported alone with --adapter-only" };
        var output = new Option<string>("--out") { Description = "the .gguf file to write", Required = true };
        var type = CliOptions.OneOf("--type", "tensor types: f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m or q6_k (adapters: f32, f16, bf16, q8_0)", "q4_k_m",
            [.. GgufOutputTypes.Names]);
        var adapterOnly = new Option<bool>("--adapter-only") { Description = "write only the adapter, as a GGUF LoRA (llama.cpp --lora, Ollama ADAPTER)" };
        var ollama = new Option<bool>("--ollama") { Description = "also write an Ollama Modelfile beside the .gguf" };
        var device = CliOptions.Device(description: "where an NF4 base is dequantized, an adapter folded in, and the Q8_0/Q4_K/Q5_K/Q6_K tensors " +
                                                    "quantized: cpu (default), cuda or cuda:N (the same bytes either way, identical to llama.cpp's)");
        var allowNonFinite = new Option<bool>("--allow-non-finite")
            { Description = "export weights holding NaN or infinity as they are (by default the export stops at such a tensor and names it)" };
        var cmd = new Command("export", "Export a model (or a LoRA adapter) to GGUF for llama.cpp, Ollama, LM Studio and LLamaSharp")
            { model, adapter, output, type, adapterOnly, ollama, device, allowNonFinite };
        cmd.SetAction(r => Run(r.GetValue(model)!, r.GetValue(adapter), r.GetValue(output)!, r.GetValue(type)!, r.GetValue(adapterOnly), r.GetValue(ollama),
                               r.GetValue(device)!, r.GetValue(allowNonFinite)));
        return cmd;
    }

    internal static int Run(string modelDir, string? adapterDir, string outPath, string typeName, bool adapterOnly, bool ollama,
                            string deviceName = "cpu", bool allowNonFinite = false)
    {
        ModelCommandSupport.RequireModelDirectory(modelDir);
        if (adapterDir is not null && !Directory.Exists(adapterDir)) throw new CliException("--adapter", $"{adapterDir}: folder not found");
        var outDir = Path.GetDirectoryName(Path.GetFullPath(outPath))!;
        if (!Directory.Exists(outDir)) throw new CliException("--out", $"{outDir}: folder not found");
        var type = GgufOutputTypes.Parse(typeName);
        var progress = new Progress(Console.Out);
        var configPath = Path.Combine(modelDir, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? throw new InvalidDataException($"{configPath}: not a JSON object");
        try
        {
            if (adapterOnly)
            {
                if (adapterDir is null) throw new CliException("--adapter-only", "needs --adapter (the PEFT adapter to export)");
                if (ollama) throw new CliException("--ollama", "with --adapter-only there is no model GGUF to name in FROM; export the base model with --ollama and add 'ADAPTER <file>' to its Modelfile");
                GgufLoraExporter.Export(config, adapterDir, outPath, type, progress, allowNonFinite);
                return 0;
            }
            var dev = CliOptions.ToDevice(deviceName);
            // On a GPU the block quantizers run there too; on the CPU the C# quantizers (null) keep today's path.
            var options = new GgufExportOptions
            {
                Type = type, Progress = progress, QuantizeDevice = dev.type == TorchSharp.DeviceType.CUDA ? dev : null,
                AllowNonFinite = allowNonFinite,
            };
            if (adapterDir is null && config["quantization_config"] is null)
                GgufExporter.ExportDirectory(modelDir, outPath, options);  // dense checkpoint: straight from its safetensors
            else
                ExportThroughModel(modelDir, adapterDir, outPath, options, dev);
            if (ollama) Console.Out.WriteLine($"Ollama Modelfile: {OllamaModelfile.WriteBeside(outPath, modelDir)}");
            return 0;
        }
        catch (NotSupportedException e)
        {
            throw new CliException(modelDir, e.Message);
        }
    }

    /// <summary>
    /// Loads the model with SlothSharp (dequantizing a bnb-4bit checkpoint, folding the adapter in) and exports its
    /// merged dense weights. Every use of the model class is here, in one place.
    /// </summary>
    private static void ExportThroughModel(string modelDir, string? adapterDir, string outPath, GgufExportOptions options, Device device)
    {
        // On a GPU the NF4 dequantization and the adapter's B·A products run there; each merged tensor then comes to
        // the CPU (float32) for the layout transforms, and its slices go back to the GPU for the block quantizers
        // (options.QuantizeDevice).
        using var model = CausalLM.FromPretrained(modelDir, new LoadOptions { Device = device, ComputeDtype = ScalarType.Float32, Quantize = false });
        if (adapterDir is not null) PeftAdapter.Load(model, adapterDir);
        GgufExporter.Export(model.Config.Raw, DisposeAfterUse(model.MergedDenseWeights(ScalarType.Float32)), modelDir, outPath, options);
    }

    /// <summary>The merged tensors are new tensors owned by the caller: each is brought to the CPU and disposed once the
    /// exporter moved on.</summary>
    private static IEnumerable<KeyValuePair<string, Tensor>> DisposeAfterUse(IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        foreach (var kv in tensors)
        {
            var onCpu = kv.Value.device_type == TorchSharp.DeviceType.CPU ? kv.Value : kv.Value.cpu();
            try { yield return new KeyValuePair<string, Tensor>(kv.Key, onCpu); }
            finally
            {
                if (!ReferenceEquals(onCpu, kv.Value)) onCpu.Dispose();
                kv.Value.Dispose();
            }
        }
    }

    private sealed class Progress(TextWriter output) : IProgress<string>
    {
        public void Report(string value) => output.WriteLine(value);
    }
}
