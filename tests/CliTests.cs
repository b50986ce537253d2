using NUnit.Framework;
using SlothSharp.Cli;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The `sloth dequant` / `sloth quantize` commands on the golden bitsandbytes checkpoints.</summary>
public class CliTests
{
    private string _dir = "";

    [SetUp]
    public void MakeDir() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), $"sloth-cli-{Guid.NewGuid():N}"));

    [TearDown]
    public void RemoveDir() => Directory.Delete(_dir, recursive: true);

    [TestCaseSource(typeof(TestEnv), nameof(TestEnv.GoldenFiles))]
    public void DequantWritesBitsandbytesOutputAndKeepsOtherTensors(string file)
    {
        using var scope = NewDisposeScope();
        var output = Path.Combine(_dir, "dense.safetensors");
        Assert.That(CheckpointCommands.Dequant(TestEnv.Golden(file), output, "bf16", "cpu"), Is.EqualTo(0));
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
        var input = Path.Combine(_dir, "dense.safetensors");
        SafetensorsWriter.Save(input, [new("mlp.up_proj.weight", golden.Read("source_bf16")), new("norm.bias", ones(4))]);
        var output = Path.Combine(_dir, "nf4.safetensors");
        Assert.That(CheckpointCommands.Quantize(input, output, 64, @"\.weight$"), Is.EqualTo(0));
        using var r = new SafetensorsReader(output);
        Assert.That(CheckpointCommands.Nf4Prefixes(r), Is.EqualTo(new[] { "mlp.up_proj.weight" }));
        using var mine = Nf4Weight.FromSafetensors(r, "mlp.up_proj.weight");
        using var theirs = Nf4Weight.FromSafetensors(golden, "weight");
        Assert.That(TestEnv.BitEqual(mine.Packed, theirs.Packed), Is.True, "packed bytes equal bitsandbytes'");
        Assert.That(r.Entries.ContainsKey("norm.bias"), Is.True, "a 1-D tensor is left alone");
    }

    [Test]
    public void BadInputsGiveErrorsNotCrashes()
    {
        var notNf4 = Path.Combine(_dir, "plain.safetensors");
        using (var t = ones(2, 2)) SafetensorsWriter.Save(notNf4, [new("w", t)]);
        Assert.Throws<InvalidDataException>(() => CheckpointCommands.Dequant(notNf4, Path.Combine(_dir, "o.safetensors"), "bf16", "cpu"));
        Assert.Throws<ArgumentException>(() => CheckpointCommands.Dequant(TestEnv.Golden("bnb_nf4_small"), Path.Combine(_dir, "o.safetensors"), "int8", "cpu"));
        Assert.Throws<ArgumentException>(() => CheckpointCommands.ParseDevice("tpu"));
    }
}
