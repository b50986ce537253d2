using NUnit.Framework;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Raw pointers from views (storage offset), Linear4bit, safetensors round trips.</summary>
public class ViewsAndModulesTests
{
    [Test]
    public void DequantizeIntoASliceOfALargerBufferWritesOnlyThatSlice()
    {
        using var scope = NewDisposeScope();
        using var w = Nf4Weight.Quantize(randn(16, 64, generator: new Generator(3)));
        var buffer = full(3 * 1024 + 5, -7.0f);
        var view = buffer[(1024 + 5)..(2048 + 5)];  // storage_offset 1029: misaligned for 16-byte access too
        Assert.That(view.storage_offset(), Is.EqualTo(1029));
        w.DequantizeInto(view);
        Assert.That(TestEnv.BitEqual(view, w.Dequantize(ScalarType.Float32).flatten()), Is.True, "slice content");
        Assert.That(buffer[..1029].eq(-7.0f).all().item<bool>(), Is.True, "before the slice untouched");
        Assert.That(buffer[(2048 + 5)..].eq(-7.0f).all().item<bool>(), Is.True, "after the slice untouched");
    }

    [Test]
    public void QuantizeReadsAViewFromItsOwnOffset()
    {
        using var scope = NewDisposeScope();
        var big = randn(10, 128, generator: new Generator(4));
        var rows = big[3..7];
        Assert.That(rows.storage_offset(), Is.GreaterThan(0));
        using var fromView = Nf4Weight.Quantize(rows);
        using var fromCopy = Nf4Weight.Quantize(rows.clone());
        Assert.That(TestEnv.BitEqual(fromView.Packed, fromCopy.Packed), Is.True);
        Assert.That(TestEnv.BitEqual(fromView.AbsmaxCodes, fromCopy.AbsmaxCodes), Is.True);
    }

    [Test]
    public void Linear4bitForwardEqualsDenseMatmulWithTheDequantizedWeight()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(5);
        var dense = randn(48, 64, generator: gen) * 0.02f;
        var bias = randn(48, generator: gen);
        using var layer = Linear4bit.FromDense(dense, bias);
        var x = randn(2, 3, 64, generator: gen);
        var wRef = layer.Weight.Dequantize(ScalarType.Float32);
        var expected = matmul(x, wRef.t()) + bias;
        var y = layer.forward(x);
        Assert.That(y.shape, Is.EqualTo(new long[] { 2, 3, 48 }));
        TestEnv.AssertClose(y, expected, 1e-6, "Linear4bit fp32");
        var yBf16 = layer.forward(x.to(ScalarType.BFloat16));
        Assert.That(yBf16.dtype, Is.EqualTo(ScalarType.BFloat16));
        TestEnv.AssertClose(yBf16, expected, 1e-2, "Linear4bit bf16");
        Assert.Throws<ArgumentException>(() => layer.forward(randn(2, 63)));
    }

    [Test]
    public void Linear4bitPassesGradientsToItsInput()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(6);
        using var layer = Linear4bit.FromDense(randn(8, 32, generator: gen));
        var x = randn(4, 32, generator: gen).requires_grad_();
        layer.forward(x).sum().backward();
        var expected = layer.Weight.Dequantize(ScalarType.Float32).sum(dim: 0).expand(4, 32);  // sum(0) would bind to sum(ScalarType)
        TestEnv.AssertClose(x.grad!, expected, 1e-6, "dx");
    }

    [Test]
    public void SafetensorsRoundTripKeepsBitsAndBytesLayout()
    {
        using var scope = NewDisposeScope();
        using var reader = new SafetensorsReader(TestEnv.Golden("bnb_nf4_small"));
        using var golden = Nf4Weight.FromSafetensors(reader, "weight");
        var path = Path.Combine(Path.GetTempPath(), $"sloth-{Guid.NewGuid():N}.safetensors");
        try
        {
            SafetensorsWriter.Save(path, golden.ToSafetensorsEntries("model.layers.0.mlp.up_proj.weight"),
                new Dictionary<string, string> { ["format"] = "pt" });
            using var back = Nf4Weight.FromSafetensors(path, "model.layers.0.mlp.up_proj.weight");
            Assert.That(TestEnv.BitEqual(back.Dequantize(), reader.Read("expected_bf16")), Is.True);
            using var r2 = new SafetensorsReader(path);
            Assert.That(r2.Metadata["format"], Is.EqualTo("pt"));
            Assert.That(r2.Entries["model.layers.0.mlp.up_proj.weight"].Shape, Is.EqualTo(new long[] { 8192, 1 }));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void NonNf4CheckpointsAreRejectedWithAClearMessage()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(Path.GetTempPath(), $"sloth-{Guid.NewGuid():N}.safetensors");
        try
        {
            SafetensorsWriter.Save(path, [new("weight", randn(4, 4))]);
            var ex = Assert.Throws<InvalidDataException>(() => Nf4Weight.FromSafetensors(path))!;
            Assert.That(ex.Message, Does.Contain("not a bitsandbytes 4-bit weight"));
            File.WriteAllBytes(path, [1, 2, 3]);
            Assert.That(() => new SafetensorsReader(path), Throws.InstanceOf<Exception>());
        }
        finally
        {
            File.Delete(path);
        }
    }
}
