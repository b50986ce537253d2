using System.CommandLine;
using SlothSharp.Models;
using SlothSharp.Peft;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>`sloth merge`: base model + PEFT adapter → a dense Hugging Face checkpoint with the adapter folded in.</summary>
public static class MergeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "base model directory (dense or bnb-4bit Hugging Face checkpoint)", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors)", Required = true };
        var output = new Option<string>("--out") { Description = "new directory for the merged dense checkpoint", Required = true };
        var dtype = CliOptions.Dtype(description: "dtype of the merged weights: bf16, fp16 or fp32");
        var cmd = new Command("merge", "Fold a LoRA adapter into its base model and write a dense Hugging Face checkpoint") { model, adapter, output, dtype };
        cmd.SetAction(r => Run(r.GetValue(model)!, r.GetValue(adapter)!, r.GetValue(output)!, CliOptions.ToScalarType(r.GetValue(dtype)!)));
        return cmd;
    }

    internal static int Run(string modelDir, string adapterDir, string outDir, ScalarType dtype)
    {
        ModelCommandSupport.RequireModelDirectory(modelDir);
        // Dense bases stay dense (the merge folds the adapter into the original weights, as PEFT's merge_and_unload
        // does); bnb-4bit bases are dequantized by MergedDenseWeights. Float32 compute: the fold is exact before the cast.
        using var model = CausalLM.FromPretrained(modelDir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32, Quantize = false });
        PeftAdapter.Load(model, adapterDir);
        MergedCheckpoint.Write(model, outDir, dtype);
        Console.WriteLine($"merged checkpoint: {Path.GetFullPath(outDir)} ({dtype}; config.json, model.safetensors, tokenizer files)");
        return 0;
    }
}
