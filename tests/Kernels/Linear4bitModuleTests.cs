using SlothSharp.References;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Linear4bit as a TorchSharp module: bitsandbytes' state-dict layout, .to(device/dtype), load_state_dict,
/// checkpoints, disposal.</summary>
public class Linear4bitModuleTests() : TempDirFixture("l4")
{
    private const string QProj = "model.layers.0.self_attn.q_proj";
    private static string TinyNf4 => Path.Combine(TestEnv.TinyLlamaDir, "nf4", "model.safetensors");

    [Test]
    public void StateDictEqualsTheTransformersCheckpointForThatLayer()
    {
        using var scope = NewDisposeScope();
        using var ckpt = SafetensorsCheckpoint.Open(Path.Combine(TestEnv.TinyLlamaDir, "nf4"));
        using var layer = Linear4bit.FromCheckpoint(ckpt, QProj);
        var sd = layer.state_dict();
        var expectedKeys = ckpt.Keys.Where(k => k.StartsWith(QProj + ".", StringComparison.Ordinal))
            .Select(k => k[(QProj.Length + 1)..]).Order().ToList();
        Assert.That(sd.Keys.Order().ToList(), Is.EqualTo(expectedKeys), "same keys");
        foreach (var key in expectedKeys)
        {
            using var stored = ckpt.Read($"{QProj}.{key}");
            Assert.That(TestEnv.BitEqual(sd[key], stored), Is.True, $"{key}: dtype {sd[key].dtype} [{string.Join(", ", sd[key].shape)}], bytes");
        }
    }

    [Test]
    public void GoldenQProjDequantizesLikeTheReference()
    {
        using var scope = NewDisposeScope();
        using var reader = new SafetensorsReader(TinyNf4);
        using var layer = Linear4bit.FromCheckpoint(reader, QProj);
        Assert.That(layer.Weight.Shape, Is.EqualTo(new long[] { 64, 64 }));
        Assert.That(layer.Weight.OriginalDtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(layer.Bias, Is.Null);
        using var direct = Nf4Weight.FromSafetensors(reader, QProj + ".weight");
        var mine = layer.Weight.Dequantize(ScalarType.Float32);
        Assert.That(TestEnv.BitEqual(mine, direct.Dequantize(ScalarType.Float32)), Is.True, "same as Nf4Weight");
        Assert.That(TestEnv.BitEqual(mine, Nf4DequantizeReference.Dequantize(direct, ScalarType.Float32)), Is.True, "bitsandbytes semantics");
        var x = randn(3, 64, generator: new Generator(1));
        TestEnv.AssertClose(layer.forward(x), matmul(x, mine.t()), 1e-6, "forward");
    }

    [Test]
    public void RoundTripThroughStateDictAndSafetensors()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(7);
        using var layer = Linear4bit.FromDense(randn(40, 96, generator: gen) * 0.05f, randn(40, generator: gen));
        var path = Path.Combine(Dir, "layer.safetensors");
        SafetensorsWriter.Save(path, layer.state_dict().ToList());
        var x = randn(2, 5, 96, generator: gen);
        var expected = layer.forward(x);

        using var reader = new SafetensorsReader(path);
        using var fromFile = Linear4bit.FromCheckpoint(reader, "");
        Assert.That(TestEnv.BitEqual(fromFile.forward(x), expected), Is.True, "FromCheckpoint of the written state dict");

        // load_state_dict into a layer of the same shape but other weights (another nested offset, JSON of another length).
        using var other = Linear4bit.FromDense(randn(40, 96, generator: gen) * 3, zeros(40));
        Assert.That(TestEnv.BitEqual(other.forward(x), expected), Is.False);
        var loaded = reader.Keys.ToDictionary(k => k, k => reader.Read(k));
        var (missing, unexpected) = other.load_state_dict(loaded);
        Assert.That(missing, Is.Empty);
        Assert.That(unexpected, Is.Empty);
        Assert.That(TestEnv.BitEqual(other.forward(x), expected), Is.True, "load_state_dict restores it");
        Assert.That(other.Weight.State, Is.EqualTo(layer.Weight.State));
        foreach (var (k, v) in other.state_dict()) Assert.That(TestEnv.BitEqual(v, loaded[k]), Is.True, k);
    }

    [Test]
    public void DenseCheckpointsQuantizeOnLoadWhenAsked()
    {
        using var scope = NewDisposeScope();
        using var dense = SafetensorsCheckpoint.Open(Path.Combine(TestEnv.TinyLlamaDir, "dense"));
        Assert.Throws<InvalidDataException>(() => Linear4bit.FromCheckpoint(dense, QProj));
        using var layer = Linear4bit.FromCheckpoint(dense, QProj, quantizeDense: true);
        using var direct = Nf4Weight.Quantize(dense.Read(QProj + ".weight"));
        Assert.That(TestEnv.BitEqual(layer.Weight.Packed, direct.Packed), Is.True);
        Assert.That(layer.Weight.State, Is.EqualTo(direct.State));
    }

    [Test]
    public void LoadStateDictRejectsMismatches()
    {
        using var scope = NewDisposeScope();
        using var layer = Linear4bit.FromDense(randn(8, 64));
        using var wider = Linear4bit.FromDense(randn(8, 128));
        var sd = layer.state_dict();
        Assert.Throws<InvalidOperationException>(() => wider.load_state_dict(sd), "other shape");
        var partial = sd.Where(kv => kv.Key != "weight.absmax").ToDictionary();
        Assert.Throws<InvalidOperationException>(() => layer.load_state_dict(partial), "missing key");
        var extra = new Dictionary<string, Tensor>(sd) { ["other"] = ones(1) };
        Assert.Throws<InvalidOperationException>(() => layer.load_state_dict(extra), "unexpected key");
    }

    [Test]
    public void ToDtypeChangesOnlyTheComputeDtype()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(8);
        using var layer = Linear4bit.FromDense(randn(24, 64, generator: gen) * 0.1f, randn(24, generator: gen));
        var x = randn(4, 64, generator: gen);
        var y32 = layer.forward(x);
        var before = layer.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

        layer.to(ScalarType.BFloat16);
        Assert.That(layer.ComputeDtype, Is.EqualTo(ScalarType.BFloat16));
        Assert.That(layer.Bias!.dtype, Is.EqualTo(ScalarType.BFloat16), "the bias follows the dtype");
        foreach (var (k, v) in layer.state_dict().Where(kv => kv.Key != "bias"))
            Assert.That(TestEnv.BitEqual(v, before[k]), Is.True, $"{k} untouched by .to(bfloat16)");
        var y16 = layer.forward(x);
        Assert.That(y16.dtype, Is.EqualTo(ScalarType.Float32), "output in the input's dtype");
        var w16 = layer.Weight.Dequantize(ScalarType.BFloat16);
        var reference = functional_linear(x.to(ScalarType.BFloat16), w16, layer.Bias).to(ScalarType.Float32);
        Assert.That(TestEnv.BitEqual(y16, reference), Is.True, "computed in bfloat16");
        TestEnv.AssertClose(y16, y32, 2e-2, "bf16 close to fp32");

        layer.to(ScalarType.Float32);
        Assert.That(layer.Bias!.dtype, Is.EqualTo(ScalarType.Float32));
        TestEnv.AssertClose(layer.forward(x), y32, 1e-2, "back to float32 (bias was rounded through bf16)");
    }

    private static Tensor functional_linear(Tensor x, Tensor w, Tensor? b) => nn.functional.linear(x, w, b);

    private sealed class Holder : nn.Module<Tensor, Tensor>
    {
        private readonly Linear4bit proj;

        public Holder(Linear4bit layer) : base("Holder")
        {
            proj = layer;
            RegisterComponents();
        }

        public Linear4bit Proj => proj;
        public override Tensor forward(Tensor x) => proj.forward(x);
    }

    [Test]
    public void ParentModulesLoadNf4StatesToo()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(10);
        using var a = new Holder(Linear4bit.FromDense(randn(16, 64, generator: gen), randn(16, generator: gen)));
        using var b = new Holder(Linear4bit.FromDense(randn(16, 64, generator: gen) * 7, randn(16, generator: gen)));
        var x = randn(2, 64, generator: gen);
        var sd = a.state_dict();
        Assert.That(sd.Keys, Does.Contain("proj.weight.quant_state.bitsandbytes__nf4").And.Contain("proj.weight.nested_quant_map"));
        Linear4bit.LoadStateDict(b, sd);
        Assert.That(TestEnv.BitEqual(b.forward(x), a.forward(x)), Is.True, "LoadStateDict on a parent");

        // TorchSharp's own load_state_dict copies in place; a quant state JSON of the same length is picked up in forward.
        var state = a.Proj.Weight.State;
        var newState = Enumerable.Range(1, 2000).Select(k => state.WithNestedOffset(state.NestedOffset * (1 + k * 1e-4f)))
            .First(s => BitsAndBytesNf4Format.FormatQuantState(s).Length == BitsAndBytesNf4Format.FormatQuantState(state).Length);
        var edited = a.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        edited["proj.weight.quant_state.bitsandbytes__nf4"] = BitsAndBytesNf4Format.QuantStateTensor(newState);
        b.load_state_dict(edited);
        var y = b.forward(x);
        Assert.That(b.Proj.Weight.State, Is.EqualTo(newState), "the new offset was adopted");
        var expected = nn.functional.linear(x, Nf4DequantizeReference.Dequantize(b.Proj.Weight, ScalarType.Float32), b.Proj.Bias);
        Assert.That(TestEnv.BitEqual(y, expected), Is.True);
        Assert.That(TestEnv.BitEqual(y, a.forward(x)), Is.False, "the offset changed the output");
    }

    [Test]
    public void DisposeIsSafeAndUseAfterDisposeThrows()
    {
        var layer = Linear4bit.FromDense(randn(8, 64), ones(8));
        layer.to(ScalarType.BFloat16);
        layer.to(ScalarType.Float32);
        using (var y = layer.forward(randn(1, 64))) Assert.That(y.shape, Is.EqualTo(new long[] { 1, 8 }));
        layer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => layer.forward(randn(1, 64)));
        Assert.DoesNotThrow(() => layer.Dispose(), "twice");
    }

    [Test]
    public void MissingOrWrongCheckpointTensorsAreClearErrors()
    {
        using var scope = NewDisposeScope();
        using var reader = new SafetensorsReader(TinyNf4);
        var ex = Assert.Throws<InvalidDataException>(() => Linear4bit.FromCheckpoint(reader, "model.layers.0.self_attn.nope"))!;
        Assert.That(ex.Message, Does.Contain(TinyNf4).And.Contain("model.layers.0.self_attn.nope.weight"));
        var path = Path.Combine(Dir, "partial.safetensors");
        var entries = Nf4Weight.Quantize(randn(8, 64)).ToSafetensorsEntries("p.weight").Where(kv => !kv.Key.EndsWith(".absmax")).ToList();
        SafetensorsWriter.Save(path, entries);
        using var partial = new SafetensorsReader(path);
        ex = Assert.Throws<InvalidDataException>(() => Linear4bit.FromCheckpoint(partial, "p"))!;
        Assert.That(ex.Message, Does.Contain("p.weight.absmax"));
    }

    [Test, Category("Gpu")]
    public void ToCudaMovesEveryTensorThenForward()
    {
        TestEnv.RequireCuda();
        using var scope = NewDisposeScope();
        var gen = new Generator(9);
        using var layer = Linear4bit.FromDense(randn(64, 128, generator: gen) * 0.05f, randn(64, generator: gen));
        var x = randn(3, 128, generator: gen);
        var yCpu = layer.forward(x);
        layer.to(CUDA);
        Assert.That(layer.Device.type, Is.EqualTo(DeviceType.CUDA));
        foreach (var (k, v) in layer.state_dict().Where(kv => !kv.Key.EndsWith(BitsAndBytesNf4Format.QuantStateSuffix)))
            Assert.That(v.device_type, Is.EqualTo(DeviceType.CUDA), k);
        foreach (var (spec, t) in layer.Weight.Tensors) Assert.That(t.device_type, Is.EqualTo(DeviceType.CUDA), spec.Name);
        var yGpu = layer.forward(x.cuda());
        TestEnv.AssertClose(yGpu.cpu(), yCpu, 1e-5, "CUDA forward");
        layer.to(ScalarType.BFloat16);
        TestEnv.AssertClose(layer.forward(x.cuda()).cpu(), yCpu, 2e-2, "CUDA bf16 forward");
        layer.to(CPU);
        layer.to(ScalarType.Float32);
        Assert.That(layer.Device.type, Is.EqualTo(DeviceType.CPU));
        TestEnv.AssertClose(layer.forward(x), yCpu, 1e-2, "back on the CPU");
    }
}
