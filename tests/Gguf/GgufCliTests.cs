using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Cli;
using SlothSharp.Gguf;
using SlothSharp.Tokenization;

namespace SlothSharp.Tests;

/// <summary>`sloth export` and `sloth info x.gguf`: the bnb-4bit tiny Llama with its adapter folded in (the model
/// path), the dense checkpoint straight from safetensors with an Ollama Modelfile, the adapter alone as a GGUF LoRA,
/// and the errors a user can make.</summary>
[NonParallelizable]
public class GgufCliTests() : TempDirFixture("gguf-cli")
{
    [Test]
    public void ExportsTheNf4ModelWithItsAdapterFoldedIn()
    {
        var path = Path.Combine(Dir, "merged-q8_0.gguf");
        var err = new StringWriter();
        Assert.That(SlothCli.Run(["export", "--model", LlamaGolden.Nf4Dir, "--adapter", LlamaGolden.AdapterDir, "--out", path, "--type", "q8_0"], TextWriter.Null, err), Is.EqualTo(0), err.ToString());
        var file = GgufReader.Open(path);
        Assert.That(file.Metadata["general.file_type"].AsInt64(), Is.EqualTo(7));
        using var w = LlamaCpp.Load(path, out var p);
        var ids = HfTokenizer.FromDirectory(LlamaGolden.DenseDir).Encode("Make an iterator that", addBos: true);
        Assert.That(LlamaCpp.Logits(w, p, ids).SelectMany(r => r).All(float.IsFinite));
    }

    [Test]
    public void ExportsADenseModelWithAnOllamaModelfileAndInfoReadsIt()
    {
        // A copy of the dense model with a Llama 3 chat template, so the Modelfile gets a translated TEMPLATE.
        var model = Path.Combine(Dir, "model");
        Directory.CreateDirectory(model);
        foreach (var f in Directory.GetFiles(LlamaGolden.DenseDir)) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
        var tcfg = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "tokenizer_config.json")))!.AsObject();
        tcfg["chat_template"] = "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}";
        File.WriteAllText(Path.Combine(model, "tokenizer_config.json"), tcfg.ToJsonString());
        var path = Path.Combine(Dir, "tiny.gguf");
        var err = new StringWriter();
        Assert.That(SlothCli.Run(["export", "--model", model, "--out", path, "--type", "f16", "--ollama"], TextWriter.Null, err), Is.EqualTo(0), err.ToString());
        var modelfile = File.ReadAllText(Path.Combine(Dir, "Modelfile"));
        Assert.That(modelfile, Does.Contain("FROM ./tiny.gguf"));
        Assert.That(modelfile, Does.Contain("TEMPLATE \"\"\"").And.Contain("<|start_header_id|>assistant<|end_header_id|>"));
        Assert.That(modelfile, Does.Contain("PARAMETER stop <|eot_id|>").And.Contain("PARAMETER stop <|end_of_text|>"));
        Assert.That(GgufReader.Open(path).Metadata["tokenizer.chat_template"].AsString(), Is.EqualTo(tcfg["chat_template"]!.GetValue<string>()));

        var output = new StringWriter();
        Assert.That(GgufInfoCommand.Info(path, output), Is.EqualTo(0));
        Assert.That(output.ToString(), Does.Contain("general.architecture = \"llama\"").And.Contain("token_embd.weight"));
        Assert.That(SlothCli.Run(["info", path], TextWriter.Null, err), Is.EqualTo(0), err.ToString());
    }

    [Test]
    public void ExportOnCudaWithoutAGpuIsAClearErrorAndWritesNothing()
    {
        if (CudaDevice.IsAvailable) Assert.Ignore("this machine has a usable GPU: the export would run");
        var path = Path.Combine(Dir, "cuda.gguf");
        var err = new StringWriter();
        Assert.That(SlothCli.Run(["export", "--model", LlamaGolden.Nf4Dir, "--adapter", LlamaGolden.AdapterDir, "--out", path, "--type", "q8_0",
                                  "--device", "cuda"], TextWriter.Null, err), Is.EqualTo(2));
        Assert.That(err.ToString(), Does.Contain("--device").And.Contain("needs a CUDA GPU"));
        Assert.That(File.Exists(path), Is.False);
    }

    [Test, Category("Gpu")]
    public void ExportOnCudaGivesTheCpuExportsTensors()
    {
        TestEnv.RequireCuda();
        string Export(string device)
        {
            var path = Path.Combine(Dir, $"merged-f32-{device}.gguf");
            var err = new StringWriter();
            Assert.That(SlothCli.Run(["export", "--model", LlamaGolden.Nf4Dir, "--adapter", LlamaGolden.AdapterDir, "--out", path, "--type", "f32",
                                      "--device", device], TextWriter.Null, err), Is.EqualTo(0), err.ToString());
            return path;
        }
        var cpu = GgufReader.Open(Export("cpu"));
        var gpu = GgufReader.Open(Export("cuda"));
        Assert.That(gpu.Tensors.Select(t => t.Name), Is.EqualTo(cpu.Tensors.Select(t => t.Name)));
        foreach (var t in cpu.Tensors)
        {
            // The NF4 dequantization is bit-identical on both; the adapter's B·A product may round differently.
            var a = MemoryMarshal.Cast<byte, float>(cpu.ReadTensorBytes(t)).ToArray();
            var b = MemoryMarshal.Cast<byte, float>(gpu.ReadTensorBytes(gpu.Tensor(t.Name))).ToArray();
            Assert.That(b.Length, Is.EqualTo(a.Length), t.Name);
            for (var i = 0; i < a.Length; i++)
                Assert.That(Math.Abs(a[i] - b[i]), Is.LessThanOrEqualTo(1e-5 * Math.Max(1, Math.Abs(a[i]))), $"{t.Name}[{i}]");
        }
    }

    [Test]
    public void ExportsTheAdapterAlone()
    {
        var path = Path.Combine(Dir, "lora.gguf");
        var err = new StringWriter();
        Assert.That(SlothCli.Run(["export", "--model", LlamaGolden.DenseDir, "--adapter", LlamaGolden.AdapterDir, "--adapter-only", "--out", path, "--type", "f16"], TextWriter.Null, err), Is.EqualTo(0), err.ToString());
        var file = GgufReader.Open(path);
        Assert.That(file.Metadata["adapter.type"].AsString(), Is.EqualTo("lora"));
        Assert.That(file.Tensors.Select(t => t.Name), Does.Contain("blk.0.attn_q.weight.lora_a").And.Contain("blk.1.ffn_down.weight.lora_b"));
        Assert.That(file.Tensors.All(t => t.Type == GgmlType.F16));
    }

    [TestCase("--type", "q3_k", "unknown value 'q3_k'")]
    [TestCase("--adapter-only", null, "needs --adapter")]
    [TestCase("--unsupported-family", null, "cannot be exported to GGUF")]
    [TestCase("--adapter-type", null, "lora adapters are written as f32, f16, bf16 or q8_0")]
    public void BadInputIsExitCode2WithAClearMessage(string what, string? value, string expected)
    {
        var model = LlamaGolden.DenseDir;
        var args = new List<string> { "export", "--out", Path.Combine(Dir, "x.gguf") };
        switch (what)
        {
            case "--type": args.AddRange(["--model", model, "--type", value!]); break;
            case "--adapter-only": args.AddRange(["--model", model, "--adapter-only"]); break;
            case "--adapter-type": args.AddRange(["--model", model, "--adapter", LlamaGolden.AdapterDir, "--adapter-only", "--type", "q4_k_m"]); break;
            default:
                var odd = Path.Combine(Dir, "odd");
                Directory.CreateDirectory(odd);
                foreach (var f in Directory.GetFiles(model)) File.Copy(f, Path.Combine(odd, Path.GetFileName(f)));
                var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(odd, "config.json")))!.AsObject();
                cfg["model_type"] = "falcon";
                File.WriteAllText(Path.Combine(odd, "config.json"), cfg.ToJsonString());
                args.AddRange(["--model", odd]);
                break;
        }
        var err = new StringWriter();
        Assert.That(SlothCli.Run(args.ToArray(), TextWriter.Null, err), Is.EqualTo(ExitCodes.BadInput), err.ToString());
        Assert.That(err.ToString(), Does.Contain(expected).IgnoreCase);
        Assert.That(File.Exists(Path.Combine(Dir, "x.gguf")), Is.False, "nothing written");
        Assert.That(Directory.GetFiles(Dir).Where(f => Path.GetFileName(f).StartsWith('.')), Is.Empty, "no temporary files left");
    }
}
