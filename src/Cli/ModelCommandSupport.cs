using SlothSharp.Models;
using Spectre.Console;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>What `sloth eval` and `sloth generate` share: device/dtype choice, model loading with status on stderr,
/// the --adapter hook.</summary>
internal static class ModelCommandSupport
{
    /// <summary>stderr, for progress and status: stdout carries only results (the loss line, the generated text).</summary>
    public static IAnsiConsole Stderr { get; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>Runs a command body. Failures propagate: <see cref="SlothCli"/> turns them into one `error: …` line
    /// on stderr with the documented exit code (2 for bad input).</summary>
    public static int Guard(Func<int> body) => body();

    /// <summary>--device: "auto" (CUDA when usable, else CPU), cpu, cuda, cuda:N.</summary>
    public static Device ParseDevice(string name) =>
        name == "auto" ? (cuda.is_available() && CudaDevice.IsAvailable ? new Device("cuda") : CPU) : CheckpointCommands.ParseDevice(name);

    /// <summary>--dtype, or null for the default (bf16 on CUDA, fp32 on the CPU).</summary>
    public static ScalarType? ParseDtype(string? name) => string.IsNullOrEmpty(name) ? null : CheckpointCommands.ParseDtype(name);

    public static void RequireModelDirectory(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"--model: {dir}: directory not found");
        if (!File.Exists(Path.Combine(dir, "config.json")))
            throw new FileNotFoundException($"--model: {Path.Combine(dir, "config.json")}: not found (a Hugging Face model directory has config.json)");
    }

    public static LlamaForCausalLM Load(string dir, string? adapter, Device device, ScalarType? dtype)
    {
        RequireModelDirectory(dir);
        if (adapter is not null && !Directory.Exists(adapter)) throw new DirectoryNotFoundException($"--adapter: {adapter}: directory not found");
        Stderr.MarkupLine($"loading [bold]{Markup.Escape(dir)}[/] on {device}…");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var model = LlamaForCausalLM.FromPretrained(dir, new LoadOptions { Device = device, ComputeDtype = dtype });
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
    public static void LoadAdapter(LlamaForCausalLM model, string dir) => SlothSharp.Peft.PeftAdapter.Load(model, dir);
}
