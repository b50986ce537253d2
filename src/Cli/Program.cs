using System.CommandLine;
using SlothSharp.Cli;
using SlothSharp.Cli.Demo;
using Spectre.Console;

// sloth: the SlothSharp command line. `sloth demo` is the main job (QLoRA fine-tuning, naive vs memory-efficient loss).
var root = new RootCommand("SlothSharp: NF4 weights and memory-efficient LM-head losses for TorchSharp");

var fileArg = new Argument<string>("file") { Description = "a safetensors file or a model directory" };
var info = new Command("info", "Describe a model directory, or list the bitsandbytes NF4 weights of a safetensors checkpoint") { fileArg };
info.SetAction(r => Run(() => ModelInfoCommand.Info(r.GetValue(fileArg)!)));
root.Subcommands.Add(info);

var inArg = new Argument<string>("input") { Description = "input safetensors file" };
var outArg = new Argument<string>("output") { Description = "output safetensors file" };
var dtypeOpt = new Option<string>("--dtype") { Description = "output dtype: bf16, fp16 or fp32", DefaultValueFactory = _ => "bf16" };
var deviceOpt = new Option<string>("--device") { Description = "cpu or cuda", DefaultValueFactory = _ => "cpu" };
var dequant = new Command("dequant", "Dequantize every NF4 weight of a bitsandbytes 4-bit checkpoint into a dense safetensors file")
    { inArg, outArg, dtypeOpt, deviceOpt };
dequant.SetAction(r => Run(() => CheckpointCommands.Dequant(r.GetValue(inArg)!, r.GetValue(outArg)!, r.GetValue(dtypeOpt)!, r.GetValue(deviceOpt)!)));
root.Subcommands.Add(dequant);

var bsOpt = new Option<int>("--blocksize") { Description = "NF4 blocksize (power of two, 32..4096)", DefaultValueFactory = _ => 64 };
var includeOpt = new Option<string>("--include") { Description = "regex of the 2-D weights to quantize", DefaultValueFactory = _ => @"\.weight$" };
var quantize = new Command("quantize", "Quantize the 2-D float weights of a safetensors file to bitsandbytes NF4 (double-quantized absmax)")
    { inArg, outArg, bsOpt, includeOpt };
quantize.SetAction(r => Run(() => CheckpointCommands.Quantize(r.GetValue(inArg)!, r.GetValue(outArg)!, r.GetValue(bsOpt), r.GetValue(includeOpt)!)));
root.Subcommands.Add(quantize);

root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(FinetuneCommand.Create());
root.Subcommands.Add(MergeCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
return root.Parse(args).Invoke();

static int Run(Func<int> body)
{
    try
    {
        return body();
    }
    catch (Exception e) when (e is ArgumentException or InvalidDataException or IOException or SlothSharp.Interop.SlothException or KeyNotFoundException)
    {
        AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
}
