using System.Text;
using NUnit.Framework;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The safetensors reader's checks (each malformed file a SafetensorsFormatException naming file, tensor and
/// problem), sharded checkpoints, the writer, and the bitsandbytes quant-state JSON.</summary>
public class SafetensorsTests() : TempDirFixture("st")
{
    /// <summary>A file with the given header JSON (padded to 8) and data bytes.</summary>
    private string Raw(string headerJson, int dataBytes, string name = "t.safetensors", long? lengthOverride = null)
    {
        var json = Encoding.UTF8.GetBytes(headerJson);
        var path = Path.Combine(Dir, name);
        using var s = File.Create(path);
        s.Write(BitConverter.GetBytes(lengthOverride ?? json.Length));
        s.Write(json);
        s.Write(new byte[dataBytes]);
        return path;
    }

    private static SafetensorsFormatException Bad(string path)
    {
        var ex = Assert.Throws<SafetensorsFormatException>(() =>
        {
            using var r = new SafetensorsReader(path);
            foreach (var k in r.Keys) r.Read(k).Dispose();
        })!;
        Assert.That(ex.Message, Does.StartWith(path), "names the file");
        Assert.That(ex.FilePath, Is.EqualTo(path));
        return ex;
    }

    private const string W = "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}";

    [Test]
    public void EveryMalformedFileNamesFileTensorAndProblem()
    {
        using (var valid = new SafetensorsReader(Raw("{" + W + "}", 16)))
            Assert.That(valid.Entries["w"].Shape, Is.EqualTo(new long[] { 2, 2 }), "the valid base case");

        var empty = Path.Combine(Dir, "empty.safetensors");
        File.WriteAllBytes(empty, []);
        Assert.That(Bad(empty).Problem, Does.Contain("empty"));
        var tiny = Path.Combine(Dir, "tiny.safetensors");
        File.WriteAllBytes(tiny, [1, 2, 3]);
        Assert.That(Bad(tiny).Problem, Does.Contain("too short"));

        Assert.That(Bad(Raw("{" + W + "}", 16, lengthOverride: 1000)).Problem, Does.Contain("past the end"));
        Assert.That(Bad(Raw("{" + W + "}", 16, lengthOverride: 200_000_000)).Problem, Does.Contain("limit"));
        Assert.That(Bad(Raw("{" + W + "}", 16, lengthOverride: long.MinValue)).Problem, Does.Contain("limit"));
        Assert.That(Bad(Raw("{\"w\":{\"dtype\":", 16)).Problem, Does.Contain("not valid JSON"));
        Assert.That(Bad(Raw("[1,2]", 0)).Problem, Does.Contain("not an object"));
        var badUtf8 = Path.Combine(Dir, "utf8.safetensors");
        File.WriteAllBytes(badUtf8, [8, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'"', 0xFF, (byte)'"', (byte)':', (byte)'1', (byte)'}', (byte)' ']);
        Assert.That(Bad(badUtf8).Problem, Does.Contain("UTF-8"));
        Assert.That(Bad(Raw("{" + W + "}", 8)).TensorName, Is.EqualTo("w"), "truncated data");

        var ex = Bad(Raw("{" + W.Replace("F32", "F33") + "}", 16));
        Assert.That((ex.TensorName, ex.Problem), Is.EqualTo(("w", "unknown dtype 'F33'")));
        Assert.That(Bad(Raw("{" + W.Replace("[2,2]", "[-2,-2]") + "}", 16)).Problem, Does.Contain("negative"));
        Assert.That(Bad(Raw("{" + W.Replace("[2,2]", "[4294967296,4294967296]") + "}", 16)).Problem, Does.Contain("overflows"));
        Assert.That(Bad(Raw("{" + W.Replace("[2,2]", "[2,3]") + "}", 16)).Problem, Does.Contain("needs 24 bytes"));
        Assert.That(Bad(Raw("{" + W.Replace("[2,2]", "[2.5,2]") + "}", 16)).Problem, Does.Contain("not a 64-bit integer"));
        Assert.That(Bad(Raw("{" + W.Replace(",\"shape\":[2,2]", "") + "}", 16)).Problem, Does.Contain("no 'shape'"));
        Assert.That(Bad(Raw("{\"w\":[1]}", 0)).Problem, Does.Contain("not an object"));
        Assert.That(Bad(Raw("{" + W + "," + W + "}", 16)).Problem, Does.Contain("twice"));
        Assert.That(Bad(Raw("{" + W + ",\"v\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[12,16]}}", 16)).Problem, Does.Contain("overlap"));
        Assert.That(Bad(Raw("{" + W + ",\"v\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[20,24]}}", 24)).Problem, Does.Contain("gap"));
        Assert.That(Bad(Raw("{" + W + "}", 24)).Problem, Does.Contain("trailing"));
        Assert.That(Bad(Raw("{\"__metadata__\":{\"a\":1}," + W + "}", 16)).Problem, Does.Contain("not a string"));
        var u16 = Bad(Raw("{\"u\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4));
        Assert.That(u16.Problem, Does.Contain("no TorchSharp type"), "a valid file whose dtype TorchSharp lacks: parses, the read fails");
    }

    [Test]
    public void ReadsTensorsBeyondTwoGibibytesFromASparseFile()
    {
        using var scope = NewDisposeScope();
        const long pad = (1L << 31) + 8;  // a tensor past the 2 GiB mark; the file is sparse, nothing is paged in for it
        var json = $"{{\"pad\":{{\"dtype\":\"U8\",\"shape\":[{pad}],\"data_offsets\":[0,{pad}]}},\"w\":{{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[{pad},{pad + 16}]}}}}";
        var header = Encoding.UTF8.GetBytes(json.PadRight((json.Length + 7) / 8 * 8));
        var path = Path.Combine(Dir, "big.safetensors");
        using (var s = File.Create(path))
        {
            s.Write(BitConverter.GetBytes((long)header.Length));
            s.Write(header);
            s.SetLength(8 + header.Length + pad + 16);
            s.Seek(8 + header.Length + pad, SeekOrigin.Begin);
            foreach (var v in new[] { 1.5f, -2f, 3.25f, 4f }) s.Write(BitConverter.GetBytes(v));
        }
        using var r = new SafetensorsReader(path);
        Assert.That(r.Entries["pad"].ByteLength, Is.EqualTo(pad));
        Assert.That(r.Read("w").data<float>().ToArray(), Is.EqualTo(new[] { 1.5f, -2f, 3.25f, 4f }));
    }

    [Test, Category("Gpu")]
    public void ReadsStraightToCuda()
    {
        TestEnv.RequireCuda();
        using var scope = NewDisposeScope();
        using var r = new SafetensorsReader(TestEnv.Golden("bnb_nf4_small"));
        var gpu = r.Read("expected_bf16", CUDA);
        Assert.That(gpu.device_type, Is.EqualTo(TorchSharp.DeviceType.CUDA));
        Assert.That(TestEnv.BitEqual(gpu, r.Read("expected_bf16")), Is.True);
    }

    [Test]
    public void ReadsAllDtypesTheWriterWrites()
    {
        using var scope = NewDisposeScope();
        var tensors = new List<KeyValuePair<string, Tensor>>
        {
            new("bf16", randn(3, 5).to(ScalarType.BFloat16)), new("f16", randn(7).to(ScalarType.Float16)),
            new("f32", randn(2, 3, 4)), new("f64", randn(3, dtype: ScalarType.Float64)),
            new("u8", randint(0, 255, [9], ScalarType.Byte)), new("i8", randint(-100, 100, [3], ScalarType.Int8)),
            new("i16", randint(-100, 100, [3], ScalarType.Int16)), new("i32", randint(-100, 100, [3], ScalarType.Int32)),
            new("i64", arange(5L)), new("bool", tensor(new[] { true, false, true })), new("empty", zeros(0, 4)),
            new("scalar", tensor(3.5f)), new("view", randn(6, 6)[1..4, 2..5]),
        };
        var path = Path.Combine(Dir, "all.safetensors");
        SafetensorsWriter.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        Assert.That(new FileInfo(path).Length, Is.GreaterThan(8));
        using var r = new SafetensorsReader(path);
        Assert.That(BitConverter.ToInt64(File.ReadAllBytes(path), 0) % 8, Is.EqualTo(0), "header padded to 8 bytes");
        Assert.That(r.Metadata["format"], Is.EqualTo("pt"));
        foreach (var (name, t) in tensors) Assert.That(TestEnv.BitEqual(r.Read(name), t), Is.True, name);
        Assert.That(Directory.GetFiles(Dir), Has.Length.EqualTo(1), "no temporary file left");
    }

    [Test]
    public void WriterRejectsBadInputWithoutTouchingTheTarget()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(Dir, "keep.safetensors");
        SafetensorsWriter.Save(path, [new("w", ones(2))]);
        var before = File.ReadAllBytes(path);
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Save(path, [new("c", ones(2, dtype: ScalarType.ComplexFloat32))]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Save(path, [new("a", ones(1)), new("a", ones(1))]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Save(path, [new("__metadata__", ones(1))]));
        var disposed = ones(1);
        disposed.Dispose();
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Save(path, [new("d", disposed)]));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(Dir), Has.Length.EqualTo(1), "no temporary file left");
    }

    [Test]
    public void ShardedCheckpointReadsThroughItsIndex()
    {
        using var scope = NewDisposeScope();
        SafetensorsWriter.Save(Path.Combine(Dir, "model-00001-of-00002.safetensors"), [new("a", arange(4f)), new("b", ones(2))]);
        SafetensorsWriter.Save(Path.Combine(Dir, "model-00002-of-00002.safetensors"), [new("c", full(3, 7f))]);
        var index = Path.Combine(Dir, SafetensorsCheckpoint.IndexFileName);
        File.WriteAllText(index, """{"metadata": {"total_size": 36}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}""");
        using (var ckpt = SafetensorsCheckpoint.Open(Dir))
        {
            Assert.That(ckpt.Keys.Order(), Is.EqualTo(new[] { "a", "b", "c" }));
            Assert.That(ckpt.Contains("c") && !ckpt.Contains("d"), Is.True);
            Assert.That(ckpt.Metadata["total_size"], Is.EqualTo("36"));
            Assert.That(TestEnv.BitEqual(ckpt.Read("c"), full(3, 7f)), Is.True);
            Assert.That(ckpt.FileOf("a"), Does.EndWith("model-00001-of-00002.safetensors"));
            Assert.Throws<KeyNotFoundException>(() => ckpt.Read("d"));
        }

        File.WriteAllText(index, """{"weight_map": {"a": "model-00001-of-00002.safetensors", "c": "model-00003.safetensors"}}""");
        var ex = Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(index))!;
        Assert.That(ex.Message, Does.Contain(index).And.Contain("model-00003.safetensors"));

        File.WriteAllText(index, """{"weight_map": {"a": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"}}""");
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(index))!.TensorName, Is.EqualTo("a"));

        SafetensorsWriter.Save(Path.Combine(Dir, "model-00002-of-00002.safetensors"), [new("c", full(3, 7f)), new("a", ones(1))]);
        File.WriteAllText(index, """{"weight_map": {"a": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}""");
        ex = Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(index))!;
        Assert.That(ex.Problem, Does.Contain("two shards"));

        File.WriteAllText(index, """{"weight_map": {"zz": "model-00001-of-00002.safetensors"}}""");
        Assert.That(Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(index))!.Problem, Does.Contain("no such tensor"));
        File.WriteAllText(index, "{not json");
        Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(index));
    }

    [Test]
    public void QuantStateJsonIsWrittenByteForByteAsBitsandbytesWritesIt()
    {
        using var scope = NewDisposeScope();
        using var ckpt = SafetensorsCheckpoint.Open(Path.Combine(TestEnv.TinyLlamaDir, "nf4"));
        var keys = BitsAndBytesNf4Format.WeightKeys(ckpt);
        Assert.That(keys, Has.Count.EqualTo(14), "7 projections x 2 layers");
        foreach (var key in keys)
        {
            var stored = ckpt.ReadUtf8(key + BitsAndBytesNf4Format.QuantStateSuffix);
            var state = BitsAndBytesNf4Format.ParseQuantState(Encoding.UTF8.GetBytes(stored), key);
            Assert.That(BitsAndBytesNf4Format.FormatQuantState(state), Is.EqualTo(stored), key);
        }
        foreach (var file in TestEnv.GoldenFiles)
        {
            using var r = new SafetensorsReader(TestEnv.Golden(file));
            var stored = r.ReadUtf8("weight" + BitsAndBytesNf4Format.QuantStateSuffix);
            Assert.That(BitsAndBytesNf4Format.FormatQuantState(BitsAndBytesNf4Format.ParseQuantState(Encoding.UTF8.GetBytes(stored), file)),
                Is.EqualTo(stored), file);
        }
    }

    [TestCase(0.05189990997314453f, "0.05189990997314453")]
    [TestCase(1e-5f, "9.999999747378752e-06")]
    [TestCase(0.0001f, "9.999999747378752e-05")]
    [TestCase(0.25f, "0.25")]
    [TestCase(3f, "3.0")]
    [TestCase(-0f, "-0.0")]
    [TestCase(1e17f, "9.999999843067494e+16")]
    [TestCase(1e16f, "1.0000000272564224e+16")]
    [TestCase(123456789012f, "123456790528.0")]
    [TestCase(1234567f, "1234567.0")]
    public void FloatsAreFormattedAsPythonRepr(float value, string python) =>
        Assert.That(BitsAndBytesNf4Format.PythonFloat(value), Is.EqualTo(python));

    [Test]
    public void BadQuantStatesAreClearErrors()
    {
        void Bad(string json, string expected)
        {
            var ex = Assert.Throws<InvalidDataException>(() => BitsAndBytesNf4Format.ParseQuantState(Encoding.UTF8.GetBytes(json), "f: 'k'"))!;
            Assert.That(ex.Message, Does.StartWith("f: 'k'").And.Contain(expected));
        }
        const string ok = """{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.5}""";
        Assert.That(BitsAndBytesNf4Format.ParseQuantState(Encoding.UTF8.GetBytes(ok), "x").Shape, Is.EqualTo(new long[] { 64, 64 }));
        Bad(ok.Replace("\"nf4\"", "\"fp4\""), "not nf4");
        Bad(ok.Replace("64, 64", "64, -1"), "positive");
        Bad(ok.Replace("\"blocksize\": 64", "\"blocksize\": 96"), "power of two");
        Bad(ok.Replace("float32\", \"shape", "int8\", \"shape"), "original dtype");
        Bad(ok.Replace(", \"nested_offset\": 0.5", ""), "nested");
        Bad(ok[..20], "not valid JSON");
    }
}
