using NUnit.Framework;
using SlothSharp.Cli;
using SlothSharp.Gguf;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The exporter refuses weights holding NaN or infinity (a broken checkpoint) unless told otherwise: the
/// tensor, the count and the first position named, nothing written; and the scanner behind it.</summary>
public class GgufNonFiniteTests() : TempDirFixture("gguf-non-finite")
{
    [TestCase(0)]
    [TestCase(7)]
    [TestCase(8)]
    [TestCase(1000)]
    [TestCase((1 << 20) + 13)]   // past one chunk: the parallel path
    [TestCase(3 * (1 << 20) + 5)]
    public void ScannerCountsEveryNonFiniteValueAndFindsTheFirst(int n)
    {
        var rng = new Random(n);
        var x = new float[n];
        for (var i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2e38 - 1e38);
        var specials = new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.Int32BitsToSingle(0x7F800001), BitConverter.Int32BitsToSingle(unchecked((int)0xFFFFFFFF)) };
        var at = new SortedSet<int>();
        for (var k = 0; k < Math.Min(n, 40); k++) at.Add(rng.Next(n));
        foreach (var i in at) x[i] = specials[i % specials.Length];
        // Neighbours that must not count: the largest finite values, subnormals, zeros.
        if (n > 2) { x[0] = at.Contains(0) ? x[0] : float.MaxValue; x[n - 1] = at.Contains(n - 1) ? x[n - 1] : -float.Epsilon; }
        var (count, first) = NonFiniteValues.Find(x);
        Assert.That(count, Is.EqualTo(at.Count));
        Assert.That(first, Is.EqualTo(at.Count == 0 ? -1 : at.Min));
        Assert.That(count, Is.EqualTo(x.LongCount(v => !float.IsFinite(v))));
    }

    [Test]
    public void ExportStopsAtATensorHoldingNaNAndWritesNothing()
    {
        using var model = SyntheticModel.Create(hidden: 256, intermediate: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 300, tied: false, seed: 11);
        var name = "model.layers.1.mlp.down_proj.weight";
        var w = model.Tensors.Single(kv => kv.Key == name).Value;   // [256, 512]
        w[5, 17] = tensor(float.NaN);
        w[200, 3] = tensor(float.NegativeInfinity);
        var path = Path.Combine(Dir, "broken.gguf");
        var tokDir = Path.Combine(TestEnv.TinyLlamaDir, "dense");
        var e = Assert.Throws<InvalidDataException>(() =>
            GgufExporter.Export(model.Config, model.Tensors, tokDir, path, new GgufExportOptions { Type = GgufOutputType.Q8_0, Name = "m" }));
        Assert.That(e!.Message, Does.Contain(name).And.Contain("[256, 512]").And.Contain("2 non-finite values").And.Contain("row 5, column 17")
                                   .And.Contain("--allow-non-finite"));
        Assert.That(File.Exists(path), Is.False);
        Assert.That(Directory.GetFiles(Dir), Is.Empty, "the exporter's temporary data file is left behind");

        var allowed = GgufExporter.Export(model.Config, model.Tensors, tokDir, path, new GgufExportOptions { Type = GgufOutputType.Q8_0, Name = "m", AllowNonFinite = true });
        Assert.That(File.Exists(allowed.Path), Is.True);
    }

    [Test]
    public void CliNamesTheBrokenTensorWithoutAStackTrace()
    {
        // A copy of the tiny dense Llama whose embedding holds an infinity.
        var model = CopyWithOneValue(LlamaGolden.DenseDir, "model", "model.safetensors",
                                     tensors => tensors.Single(kv => kv.Key == "model.embed_tokens.weight"), 3, 4, float.PositiveInfinity);
        var path = Path.Combine(Dir, "tiny.gguf");
        var err = new StringWriter();
        Assert.That(SlothCli.Run(["export", "--model", model, "--out", path, "--type", "f16"], TextWriter.Null, err), Is.Not.EqualTo(0));
        Assert.That(err.ToString(), Does.Contain("model.embed_tokens.weight").And.Contain("row 3, column 4").And.Contain("Infinity"));
        Assert.That(err.ToString(), Does.Not.Contain("   at "));
        Assert.That(File.Exists(path), Is.False);
        err = new StringWriter();
        Assert.That(SlothCli.Run(["export", "--model", model, "--out", path, "--type", "f16", "--allow-non-finite"], TextWriter.Null, err), Is.EqualTo(0), err.ToString());
        Assert.That(File.Exists(path), Is.True);
    }

    [Test]
    public void AdapterExportStopsAtANaNMatrix()
    {
        var bName = "";
        var adapter = CopyWithOneValue(LlamaGolden.AdapterDir, "adapter", "adapter_model.safetensors", tensors =>
        {
            var b = tensors.First(kv => kv.Key.EndsWith(".lora_B.weight", StringComparison.Ordinal));
            bName = b.Key;
            return b;
        }, 1, 0, float.NaN);
        var path = Path.Combine(Dir, "lora.gguf");
        var err = new StringWriter();
        Assert.That(SlothCli.Run(["export", "--model", LlamaGolden.DenseDir, "--adapter", adapter, "--adapter-only", "--out", path, "--type", "f16"], TextWriter.Null, err), Is.Not.EqualTo(0));
        Assert.That(err.ToString(), Does.Contain(bName).And.Contain("row 1, column 0").And.Contain("NaN"));
        Assert.That(File.Exists(path), Is.False);
        err = new StringWriter();
        Assert.That(SlothCli.Run(["export", "--model", LlamaGolden.DenseDir, "--adapter", adapter, "--adapter-only", "--out", path, "--type", "f16", "--allow-non-finite"],
                                 TextWriter.Null, err), Is.EqualTo(0), err.ToString());
    }

    /// <summary>A copy of <paramref name="source"/> in Dir/<paramref name="name"/> whose safetensors file
    /// <paramref name="file"/> has <paramref name="value"/> at [row, column] of the tensor <paramref name="pick"/> chooses.</summary>
    private string CopyWithOneValue(string source, string name, string file, Func<List<KeyValuePair<string, Tensor>>, KeyValuePair<string, Tensor>> pick,
                                    long row, long column, float value)
    {
        var dir = Path.Combine(Dir, name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var st = Path.Combine(dir, file);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        using (var reader = new SafetensorsReader(st))
            foreach (var key in reader.Keys) tensors.Add(new(key, reader.Read(key)));
        pick(tensors).Value[row, column] = tensor(value);
        File.Delete(st);
        SafetensorsWriter.Save(st, tensors);
        foreach (var (_, t) in tensors) t.Dispose();
        return dir;
    }
}
