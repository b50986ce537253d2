using System.CommandLine;
using SlothSharp.Cli.Demo;

namespace SlothSharp.Cli;

/// <summary>sloth: the SlothSharp command line. Errors and exit codes: <see cref="SlothCli"/>.</summary>
public static class Program
{
    public static int Main(string[] args) => SlothCli.Run(args, Console.Out, Console.Error);

    /// <summary>Every sloth command. A command lives in its own file as <c>public static Command Create()</c> and is
    /// registered here with one line; it reports expected failures by throwing <see cref="CliException"/> (or a typed
    /// library exception) and takes its dtype, device and size options from <see cref="CliOptions"/>.</summary>
    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("SlothSharp: NF4 weights and memory-efficient LM-head losses for TorchSharp");
        foreach (var command in CheckpointVerbs()) root.Subcommands.Add(command);
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(FinetuneCommand.Create());
        root.Subcommands.Add(PreviewCommand.Create());
        root.Subcommands.Add(ChatCommand.Create());
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(MakeCheckpointCommand.Create());
        return root;
    }

    /// <summary>info, dequant, quantize on bitsandbytes 4-bit safetensors checkpoints (CheckpointCommands).</summary>
    private static IEnumerable<Command> CheckpointVerbs()
    {
        var file = CliOptions.InputFileOrDirectory("file", "a model directory (config.json inside) or a safetensors file");
        var info = new Command("info", "Describe a model directory, or list the bitsandbytes NF4 weights of a safetensors checkpoint") { file };
        info.SetAction(r => ModelInfoCommand.Info(r.GetValue(file)!));
        yield return info;

        var input = CliOptions.InputFileOrDirectory("input", "input: a safetensors file, a sharded checkpoint's index or a model folder");
        var output = new Argument<string>("output") { Description = "output safetensors file" };
        var dtype = CliOptions.Dtype(description: "output dtype: bf16, fp16 or fp32");
        var device = CliOptions.Device();
        var dequant = new Command("dequant", "Dequantize every NF4 weight of a bitsandbytes 4-bit checkpoint into a dense safetensors file")
            { input, output, dtype, device };
        dequant.SetAction(r => CheckpointCommands.Dequant(r.GetValue(input)!, r.GetValue(output)!, CliOptions.ToScalarType(r.GetValue(dtype)!),
                                                          CliOptions.ToDevice(r.GetValue(device)!)));
        yield return dequant;

        var qInput = CliOptions.InputFileOrDirectory("input", "input: a safetensors file, a sharded checkpoint's index or a model folder");
        var qOutput = new Argument<string>("output") { Description = "output safetensors file" };
        var blocksize = CliOptions.PowerOfTwo("--blocksize",
            $"NF4 blocksize (power of two, {Nf4QuantState.MinBlocksize}..{Nf4QuantState.MaxBlocksize})", Nf4QuantState.DefaultBlocksize,
            Nf4QuantState.MinBlocksize, Nf4QuantState.MaxBlocksize);
        var include = CliOptions.CheckedBy(new Option<string>("--include") { Description = "regex of the 2-D weights to quantize", DefaultValueFactory = _ => @"\.weight$" },
                                           CheckpointCommands.IncludePattern);
        var quantize = new Command("quantize", "Quantize the 2-D float weights of a safetensors file to bitsandbytes NF4 (double-quantized absmax)")
            { qInput, qOutput, blocksize, include };
        quantize.SetAction(r => CheckpointCommands.Quantize(r.GetValue(qInput)!, r.GetValue(qOutput)!, r.GetValue(blocksize),
                                                            CheckpointCommands.IncludePattern(r.GetValue(include)!)));
        yield return quantize;
    }
}
