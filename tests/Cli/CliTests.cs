using NUnit.Framework;
using SlothSharp.Cli;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The `sloth dequant` / `sloth quantize` commands on the golden bitsandbytes checkpoints.</summary>
public class CliTests() : TempDirFixture("cli")
{
    [TestCaseSource(typeof(TestEnv), nameof(TestEnv.GoldenFiles))]
    public void DequantWritesBitsandbytesOutputAndKeepsOtherTensors(string file)
    {
        using var scope = NewDisposeScope();
        var output = Path.Combine(Dir, "dense.safetensors");
        Assert.That(CheckpointCommands.Dequant(TestEnv.Golden(file), output, ScalarType.BFloat16, CPU), Is.EqualTo(0));
        using var golden = new SafetensorsReader(TestEnv.Golden(file));
        using var dense = new SafetensorsReader(output);
        Assert.That(TestEnv.BitEqual(dense.Read("weight"), golden.Read("expected_bf16")), Is.True, "weight");
        Assert.That(dense.Entries.Keys, Does.Not.Contain("weight.absmax"), "quantization state removed");
        Assert.That(TestEnv.BitEqual(dense.Read("source_bf16"), golden.Read("source_bf16")), Is.True, "other tensors copied");
    }

    [Test]
    public void QuantizeProducesTheBitsandbytesLayout()
    {
        using var scope = NewDisposeScope();
        using var golden = new SafetensorsReader(TestEnv.Golden("bnb_nf4_mlp"));
        var input = Path.Combine(Dir, "dense.safetensors");
        SafetensorsWriter.Save(input, [new("mlp.up_proj.weight", golden.Read("source_bf16")), new("norm.bias", ones(4))]);
        var output = Path.Combine(Dir, "nf4.safetensors");
        Assert.That(CheckpointCommands.Quantize(input, output, 64, CheckpointCommands.IncludePattern(@"\.weight$")), Is.EqualTo(0));
        using var r = new SafetensorsReader(output);
        Assert.That(CheckpointCommands.Nf4Prefixes(r), Is.EqualTo(new[] { "mlp.up_proj.weight" }));
        using var mine = Nf4Weight.FromSafetensors(r, "mlp.up_proj.weight");
        using var theirs = Nf4Weight.FromSafetensors(golden, "weight");
        Assert.That(TestEnv.BitEqual(mine.Packed, theirs.Packed), Is.True, "packed bytes equal bitsandbytes'");
        Assert.That(r.Entries.ContainsKey("norm.bias"), Is.True, "a 1-D tensor is left alone");
    }

    /// <summary>The command line takes a model folder as the input of dequant and quantize, as the commands do.</summary>
    [Test]
    public void DequantAndQuantizeTakeAModelFolderOnTheCommandLine()
    {
        var nf4Dir = Path.Combine(TestEnv.TinyLlamaDir, "nf4");
        var dense = Path.Combine(Dir, "dense.safetensors");
        var err = new StringWriter();
        Assert.That(SlothCli.Run(["dequant", nf4Dir, dense, "--dtype", "fp32"], TextWriter.Null, err), Is.EqualTo(0), err.ToString());
        Assert.That(SlothCli.Run(["quantize", LlamaGolden.DenseDir, Path.Combine(Dir, "nf4.safetensors")], TextWriter.Null, err), Is.EqualTo(0), err.ToString());
        Assert.That(File.Exists(dense) && File.Exists(Path.Combine(Dir, "nf4.safetensors")), Is.True);
    }

    [Test]
    public void InfoAndDequantReadModelDirectoriesAndShards()
    {
        using var scope = NewDisposeScope();
        var nf4Dir = Path.Combine(TestEnv.TinyLlamaDir, "nf4");
        Assert.That(CheckpointCommands.Info(nf4Dir), Is.EqualTo(0));
        // The same checkpoint split into two shards with an index.
        using (var src = new SafetensorsReader(Path.Combine(nf4Dir, "model.safetensors")))
        {
            var keys = src.Keys.Order(StringComparer.Ordinal).ToList();
            var layer0 = keys.Where(k => !k.StartsWith("model.layers.1.", StringComparison.Ordinal)).ToList();
            var layer1 = keys.Except(layer0).ToList();
            SafetensorsWriter.Save(Path.Combine(Dir, "a.safetensors"), layer0.Select(k => new KeyValuePair<string, Tensor>(k, src.Read(k))).ToList());
            SafetensorsWriter.Save(Path.Combine(Dir, "b.safetensors"), layer1.Select(k => new KeyValuePair<string, Tensor>(k, src.Read(k))).ToList());
            var map = string.Join(", ", layer0.Select(k => $"\"{k}\": \"a.safetensors\"").Concat(layer1.Select(k => $"\"{k}\": \"b.safetensors\"")));
            File.WriteAllText(Path.Combine(Dir, SafetensorsCheckpoint.IndexFileName), $"{{\"metadata\": {{}}, \"weight_map\": {{{map}}}}}");
        }
        var fromFile = Path.Combine(Dir, "from-file.safetensors");
        var fromShards = Path.Combine(Dir, "from-shards.safetensors");
        Assert.That(CheckpointCommands.Dequant(nf4Dir, fromFile, ScalarType.Float32, CPU), Is.EqualTo(0));
        Assert.That(CheckpointCommands.Dequant(Path.Combine(Dir, SafetensorsCheckpoint.IndexFileName), fromShards, ScalarType.Float32, CPU), Is.EqualTo(0));
        using var a = new SafetensorsReader(fromFile);
        using var b = new SafetensorsReader(fromShards);
        Assert.That(b.Keys.Order(), Is.EqualTo(a.Keys.Order()));
        Assert.That(a.Entries["model.layers.1.mlp.down_proj.weight"].Shape, Is.EqualTo(new long[] { 64, 160 }));
        foreach (var k in a.Keys) Assert.That(TestEnv.BitEqual(a.Read(k), b.Read(k)), Is.True, k);
    }

    [Test]
    public void CorruptFilesAndBadOptionsNameTheirSubject()
    {
        var corrupt = Path.Combine(Dir, "corrupt.safetensors");
        File.WriteAllBytes(corrupt, [8, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'x']);
        var ex = Assert.Throws<SafetensorsFormatException>(() => CheckpointCommands.Info(corrupt))!;
        Assert.That(ex.Message, Does.StartWith(corrupt));
        File.WriteAllBytes(corrupt, []);
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => CheckpointCommands.Dequant(corrupt, Path.Combine(Dir, "o.safetensors"), ScalarType.BFloat16, CPU))!.Message,
            Is.EqualTo($"{corrupt}: the file is empty"));
        var missing = Path.Combine(Dir, "missing.safetensors");
        Assert.That(Assert.Throws<FileNotFoundException>(() => CheckpointCommands.Info(missing))!.Message, Does.Contain(missing));
        var input = TestEnv.Golden("bnb_nf4_small");
        // Bad option values are usage errors found while parsing.
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("quantize", input, Path.Combine(Dir, "q.safetensors"), "--blocksize", "96"), "--blocksize", "power of two");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("quantize", input, Path.Combine(Dir, "q.safetensors"), "--include", "(["), "--include", "regular expression");
        Assert.That(Assert.Throws<ArgumentException>(() => CheckpointCommands.Quantize(input, Path.Combine(Dir, "no", "q.safetensors"), 64, CheckpointCommands.IncludePattern(".")))!.Message,
            Does.Contain("does not exist"));
        Assert.That(Directory.GetFiles(Dir), Has.Length.EqualTo(1), "nothing written");
    }

    [Test]
    public void BadInputsGiveErrorsNotCrashes()
    {
        var notNf4 = Path.Combine(Dir, "plain.safetensors");
        using (var t = ones(2, 2)) SafetensorsWriter.Save(notNf4, [new("w", t)]);
        Assert.Throws<InvalidDataException>(() => CheckpointCommands.Dequant(notNf4, Path.Combine(Dir, "o.safetensors"), ScalarType.BFloat16, CPU));
        var output = Path.Combine(Dir, "o.safetensors");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("dequant", TestEnv.Golden("bnb_nf4_small"), output, "--dtype", "int8"), "--dtype", "unknown dtype 'int8'");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("dequant", TestEnv.Golden("bnb_nf4_small"), output, "--device", "tpu"), "--device", "unknown device 'tpu'");
        Assert.That(File.Exists(output), Is.False, "nothing written");
    }
}
