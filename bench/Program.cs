using BenchmarkDotNet.Running;
using SlothSharp;
using SlothSharp.Bench;
using static TorchSharp.torch;

// SlothSharp benchmarks (GPU). Usage: SlothSharp.Bench [--results DIR] [--suite nf4|loss|step|all] [--quick] [--tiny] ("all" = nf4 + loss)
// (--suite tokenizer [--tokenizer DIR]... [--corpus FILE] [--repeat N] [--threads N]: HfTokenizer tokens/s on the CPU)
// (--suite step --tiny: the step suite on the CPU on a tiny model, a smoke test)
// (--suite packing [--preset NAME] [--pack-length N] [--pack-rows N] [--batch N] [--documents N] [--min-length N] [--max-length N]
//  [--warmup N] [--checkpointing K] [--seed N] [--tiny]: packed vs padded QLoRA steps on a length mix of conversations)
// (--suite decode [--presets a,b] [--batches 1,64] [--steps N] [--prefill N] [--tiny]: the native decoding engine, tokens/s at batch 1 and 64 and 2,048-token prefill; --tiny: CPU smoke test)
// (--suite softcap: Gemma 2's soft-capped attention, eager vs blocks with recompute vs the one-pass flash kernels, one 2B layer, time and peak memory)
// (internal child modes: --measure-memory SHAPE METHOD, --suite loss-time with SLOTH_BENCH_SHAPE,
//  --suite step-row --shape S --path fused|fused-recompute-attention|fused-recompute|reference --checkpointing 0|K (every K-th layer) --device cpu|cuda, --suite step-loss --shape S --device D)
BenchSetup.ApplyEnvironment();
if (Arg("--suite") == "tokenizer") return TokenizerSpeed.Run(args);
var results = Arg("--results") ?? Path.Combine(Environment.CurrentDirectory, "bench-results");
var suite = Arg("--suite") ?? "all";
var quick = args.Contains("--quick");
var tiny = args.Contains("--tiny");
Directory.CreateDirectory(results);

// The step suite's children and its --tiny smoke test run on the CPU too.
if (suite == "step-row")
    return StepSuite.RunRow(Arg("--shape") ?? "1b", Arg("--path") ?? "fused", int.Parse(Arg("--checkpointing") ?? "0"), Arg("--device") ?? "cuda",
                            profileTimed: args.Contains("--profile-timed"));
if (suite == "step-loss") return StepSuite.RunLossMatch(Arg("--shape") ?? "1b", Arg("--device") ?? "cuda");
if (suite == "step" && tiny) return StepSuite.Run(results, "CPU (--tiny)", tiny: true);
if (suite == "packing-mode") return PackingSuite.RunMode(args, Arg("--mode") ?? "packed", Arg("--device") ?? "cuda");
if (suite == "packing" && tiny) return PackingSuite.Run(args, results, "CPU (--tiny)", tiny: true);
if (suite == "decode") return DecodeSuite.Run(args, results, tiny);
if (suite == "softcap-row") return SoftcapSuite.RunRow(Arg("--method") ?? "blocks");
if (suite is "ce-sweep-shape" or "ce-sweep" && LossProblem.Dev.type == TorchSharp.DeviceType.CPU) // SLOTH_BENCH_DEVICE=cpu: smoke test
    return suite == "ce-sweep" ? CeSweep.Run(results, "CPU (smoke test)") : CeSweep.RunShape();

if (!cuda.is_available() || !CudaDevice.IsAvailable)
{
    Console.Error.WriteLine("The benchmarks need a CUDA GPU, a CUDA build of libslothsharp (./build.sh native on a machine with nvcc) " +
                            "and TorchSharp with a CUDA libtorch. Nothing was measured.");
    return 2;
}
var device = $"{CudaDevice.Name(0)} (sm_{CudaDevice.ComputeCapability(0).Major}{CudaDevice.ComputeCapability(0).Minor})";
if (Arg("--measure-memory") is null && suite != "loss-time") Console.WriteLine($"device: {device}");
var config = BenchSetup.Config(Path.Combine(results, "bdn"), quick);
if (Arg("--measure-memory") is { } memShape) return LossSuite.MeasureMemory(memShape, args[Array.IndexOf(args, "--measure-memory") + 2]);
if (suite == "ce-sweep-shape") return CeSweep.RunShape();
if (suite == "ce-sweep") return CeSweep.Run(results, device);
if (suite == "loss-time")
{
    LossSuite.RunTimes(config);
    return 0;
}

if (suite is "nf4" or "all")
{
    var summaries = BenchmarkRunner.Run([typeof(CopyBandwidth), typeof(Nf4Dequant)], config);
    Nf4Report.Write(summaries, results, device);
}
if (suite is "loss" or "all") LossSuite.Run(results, device, quick);
if (suite == "step") return StepSuite.Run(results, device, tiny: false);
if (suite == "packing") return PackingSuite.Run(args, results, device, tiny: false);
if (suite == "softcap") return SoftcapSuite.Run(results, device);
return 0;

string? Arg(string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
