using NUnit.Framework;
using SlothSharp.Gguf;

namespace SlothSharp.Tests;

/// <summary>GGUF writer and reader: every metadata type (scalars and arrays) round-trips, tensors land at aligned
/// offsets with their bytes, llama.cpp reads a hand-built file's metadata, invalid input is refused with a clear
/// error and nothing half-written is left behind.</summary>
public class GgufFormatTests() : TempDirFixture("gguf-format")
{
    internal static GgufWriter SampleWriter()
    {
        var w = new GgufWriter();
        w.Add("general.architecture", GgufValue.Str("llama"));
        w.Add("t.u8", GgufValue.U8(200));
        w.Add("t.i8", GgufValue.I8(-100));
        w.Add("t.u16", GgufValue.U16(60000));
        w.Add("t.i16", GgufValue.I16(-30000));
        w.Add("t.u32", GgufValue.U32(4_000_000_000));
        w.Add("t.i32", GgufValue.I32(-2_000_000_000));
        w.Add("t.f32", GgufValue.F32(3.25f));
        w.Add("t.bool", GgufValue.Bool(true));
        w.Add("t.str", GgufValue.Str("héllo ✓"));
        w.Add("t.u64", GgufValue.U64(ulong.MaxValue));
        w.Add("t.i64", GgufValue.I64(long.MinValue));
        w.Add("t.f64", GgufValue.F64(Math.PI));
        w.Add("t.arr.str", GgufValue.Strings(["a", "", "ĠĠ"]));
        w.Add("t.arr.i32", GgufValue.Int32s([1, -2, 3]));
        w.Add("t.arr.f32", GgufValue.Float32s([0.5f, -1f]));
        w.Add("t.arr.bool", GgufValue.Array(GgufValueType.Bool, new[] { true, false }));
        w.Add("t.arr.u8", GgufValue.Array(GgufValueType.UInt8, new byte[] { 1, 2, 255 }));
        w.Add("t.arr.empty", GgufValue.Array(GgufValueType.Int64, Array.Empty<long>()));
        w.AddTensor("a", [3], GgmlType.F32, new byte[12]);
        w.AddTensor("b", [32, 2], GgmlType.Q8_0, Enumerable.Range(0, 68).Select(i => (byte)i).ToArray());
        w.AddTensor("c", [5], GgmlType.F16, new byte[10]);
        return w;
    }

    [Test]
    public void EveryValueTypeAndTensorRoundTrips()
    {
        var path = Path.Combine(Dir, "x.gguf");
        SampleWriter().Write(path);
        var r = GgufReader.Open(path);
        Assert.That(r.Version, Is.EqualTo(3));
        Assert.That(r.Alignment, Is.EqualTo(32));
        var m = r.Metadata;
        Assert.That(m["general.alignment"].Value, Is.EqualTo(32u));
        Assert.That(m["t.u8"].Value, Is.EqualTo((byte)200));
        Assert.That(m["t.i8"].Value, Is.EqualTo((sbyte)-100));
        Assert.That(m["t.u16"].Value, Is.EqualTo((ushort)60000));
        Assert.That(m["t.i16"].Value, Is.EqualTo((short)-30000));
        Assert.That(m["t.u32"].Value, Is.EqualTo(4_000_000_000u));
        Assert.That(m["t.i32"].Value, Is.EqualTo(-2_000_000_000));
        Assert.That(m["t.f32"].Value, Is.EqualTo(3.25f));
        Assert.That(m["t.bool"].Value, Is.EqualTo(true));
        Assert.That(m["t.str"].Value, Is.EqualTo("héllo ✓"));
        Assert.That(m["t.u64"].Value, Is.EqualTo(ulong.MaxValue));
        Assert.That(m["t.i64"].Value, Is.EqualTo(long.MinValue));
        Assert.That(m["t.f64"].Value, Is.EqualTo(Math.PI));
        Assert.That(m["t.arr.str"].Value, Is.EqualTo(new[] { "a", "", "ĠĠ" }));
        Assert.That(m["t.arr.i32"].Value, Is.EqualTo(new[] { 1, -2, 3 }));
        Assert.That(m["t.arr.f32"].Value, Is.EqualTo(new[] { 0.5f, -1f }));
        Assert.That(m["t.arr.bool"].Value, Is.EqualTo(new[] { true, false }));
        Assert.That(m["t.arr.u8"].Value, Is.EqualTo(new byte[] { 1, 2, 255 }));
        Assert.That(m["t.arr.empty"].ElementType, Is.EqualTo(GgufValueType.Int64));
        Assert.That(r.MetadataList.Select(kv => kv.Key).First(), Is.EqualTo("general.alignment"));
        Assert.That(r.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "a", "b", "c" }));
        Assert.That(r.Tensors.All(t => (t.DataOffset - r.DataStart) % 32 == 0 && r.DataStart % 32 == 0));
        Assert.That(r.Tensor("b").Dims, Is.EqualTo(new long[] { 32, 2 }));
        Assert.That(r.ReadTensorBytes(r.Tensor("b")), Is.EqualTo(Enumerable.Range(0, 68).Select(i => (byte)i).ToArray()));
        Assert.That(new FileInfo(path).Length % 32, Is.EqualTo(0));
    }

    [Test]
    public void WriterRefusesBadInputAndLeavesNothingBehind()
    {
        var w = new GgufWriter();
        Assert.That(() => w.Add("general.alignment", GgufValue.U32(64)), Throws.ArgumentException.With.Message.Contains("added twice"));
        Assert.That(() => w.AddTensor(new string('x', 64), [32], GgmlType.F32, new byte[128]), Throws.ArgumentException.With.Message.Contains("63 bytes"));
        Assert.That(() => w.AddTensor("q", [33], GgmlType.Q8_0, new byte[34]), Throws.ArgumentException.With.Message.Contains("block size"));
        Assert.That(() => GgufValue.Array(GgufValueType.Int32, new long[1]), Throws.ArgumentException);
        Assert.That(() => new GgufWriter(48), Throws.ArgumentException);
        w.AddTensor("short", [4], GgmlType.F32, new byte[8]); // 8 bytes instead of 16
        var path = Path.Combine(Dir, "bad.gguf");
        Assert.That(() => w.Write(path), Throws.InvalidOperationException.With.Message.Contains("produced 8 bytes, expected 16"));
        Assert.That(Directory.GetFiles(Dir), Is.Empty, "no partial or temporary file");
    }

    [Test]
    public void ReaderNamesTheFieldAndOffset()
    {
        var path = Path.Combine(Dir, "x.gguf");
        SampleWriter().Write(path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..6]);
        Assert.That(() => GgufReader.Open(path), Throws.InstanceOf<InvalidDataException>().With.Message.Contains("(version)").And.Message.StartsWith(path));
        bytes[0] = (byte)'X';
        File.WriteAllBytes(path, bytes);
        Assert.That(() => GgufReader.Open(path), Throws.InstanceOf<InvalidDataException>().With.Message.Contains("not a GGUF file"));
        bytes[0] = (byte)'G';
        BitConverter.TryWriteBytes(bytes.AsSpan(16), ulong.MaxValue); // metadata count
        File.WriteAllBytes(path, bytes);
        Assert.That(() => GgufReader.Open(path), Throws.InstanceOf<InvalidDataException>().With.Message.Contains("metadata_kv_count"));
    }

    [Test]
    public void OutputTypeNamesParse()
    {
        foreach (var n in GgufOutputTypes.Names) Assert.That(GgufOutputTypes.Parse(n).Name(), Is.EqualTo(n));
        Assert.That(() => GgufOutputTypes.Parse("q2_k"), Throws.ArgumentException.With.Message.Contains("q4_k_m"));
    }

    [TestCase("{{ '<|start_header_id|>' + m.role + '<|end_header_id|>' }}{{ m.content + '<|eot_id|>' }}", "llama3")]
    [TestCase("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}", "chatml")]
    [TestCase("<start_of_turn>user\n{{ content }}<end_of_turn>", "gemma")]
    [TestCase("{{ bos_token }}[INST] {{ m }} [/INST]", "mistral")]
    [TestCase("<|user|>\n{{ m }}<|end|>\n<|assistant|>\n", "phi3")]
    [TestCase("{{ messages }}", null)]
    public void ChatTemplateFormatsAreRecognized(string template, string? format)
    {
        Assert.That(OllamaModelfile.DetectFormat(template), Is.EqualTo(format));
        var text = OllamaModelfile.Build("./m.gguf", template, "</s>");
        Assert.That(text, Does.StartWith("# Ollama").And.Contain("FROM ./m.gguf").And.Contain("PARAMETER stop </s>"));
        Assert.That(text.Contains("TEMPLATE"), Is.EqualTo(format is not null));
    }

    [Test]
    public void TypePlanFollowsLlamaCppForA32LayerModel()
    {
        // Llama-3.2-1B-like shapes (16 layers) and a 32-layer variant: attn_v/ffn_down get Q6_K on llama.cpp's layers.
        foreach (var layers in new[] { 16, 32 })
        {
            var tensors = new List<(string, long[])> { ("token_embd.weight", [2048, 128256]) };
            for (var i = 0; i < layers; i++)
            {
                tensors.Add(($"blk.{i}.attn_v.weight", [2048, 512]));
                tensors.Add(($"blk.{i}.ffn_down.weight", [8192, 2048]));
                tensors.Add(($"blk.{i}.attn_norm.weight", [2048]));
            }
            var types = GgufTensorTypePlan.Choose(tensors, GgufOutputType.Q4_K_M);
            Assert.That(types[0], Is.EqualTo(GgmlType.Q6_K), "tied embedding is the output");
            var q6 = Enumerable.Range(0, layers).Where(i => types[1 + 3 * i] == GgmlType.Q6_K).ToArray();
            var expected = Enumerable.Range(0, layers).Where(i => i < layers / 8 || i >= 7 * layers / 8 || (i - layers / 8) % 3 == 2).ToArray();
            Assert.That(q6, Is.EqualTo(expected));
            Assert.That(Enumerable.Range(0, layers).Select(i => types[3 + 3 * i]), Is.All.EqualTo(GgmlType.F32));
        }
    }
}
