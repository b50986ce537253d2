using SlothSharp.Models;
using Spectre.Console;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>What the model commands share: the --model folder check, model loading with status on stderr, the
/// --adapter hook. Their --device and --dtype come from <see cref="CliOptions"/>.</summary>
internal static class ModelCommandSupport
{
    /// <summary>stderr, for progress and status: stdout carries only results (the loss line, the generated text).</summary>
    public static IAnsiConsole Stderr { get; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>--model: a folder with config.json (the one check eval, generate, finetune and merge share).</summary>
    public static void RequireModelDirectory(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"--model: {dir}: directory not found");
        if (!File.Exists(Path.Combine(dir, "config.json")))
            throw new FileNotFoundException($"--model: {Path.Combine(dir, "config.json")}: not found (a Hugging Face model directory has config.json)");
    }

    public static CausalLM Load(string dir, string? adapter, Device device, ScalarType? dtype)
    {
        RequireModelDirectory(dir);
        if (adapter is not null && !Directory.Exists(adapter)) throw new DirectoryNotFoundException($"--adapter: {adapter}: directory not found");
        Stderr.MarkupLine($"loading [bold]{Markup.Escape(dir)}[/] on {device}…");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var model = CausalLM.FromPretrained(dir, new LoadOptions { Device = device, ComputeDtype = dtype });
        if (device.type == TorchSharp.DeviceType.CUDA) CudaDevice.Synchronize(device.index < 0 ? 0 : device.index);
        Stderr.MarkupLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"loaded in {clock.Elapsed.TotalSeconds:F2} s ({(model.IsQuantized ? "NF4" : "dense")} decoder, {model.ComputeDtype})"));
        try
        {
            if (adapter is not null) LoadAdapter(model, adapter);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>The one place that applies --adapter: a PEFT LoRA adapter directory (SlothSharp.Peft.PeftAdapter).</summary>
    public static void LoadAdapter(CausalLM model, string dir) => SlothSharp.Peft.PeftAdapter.Load(model, dir);
}
