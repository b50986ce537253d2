using NUnit.Framework;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Each validation path of the NF4 entry points gives its documented exception, never a crash.</summary>
public unsafe class Nf4ValidationTests
{
    private sealed class Buffers : IDisposable
    {
        public readonly Tensor Packed = zeros(32, ScalarType.Byte);
        public readonly Tensor Codes = zeros(1, ScalarType.Byte);
        public readonly Tensor Map = tensor(Nf4Tables.DynamicMap.ToArray());
        public readonly Tensor Nested = ones(1, ScalarType.Float32);
        public readonly Tensor Offset = zeros(1, ScalarType.Float32);
        public readonly Tensor Table = tensor(Nf4Tables.Nf4Codes.ToArray());
        public readonly Tensor Out = zeros(64, ScalarType.Float32);
        public readonly Tensor Scratch = zeros(1, ScalarType.Float32);
        public void Dispose() { foreach (var t in new[] { Packed, Codes, Map, Nested, Offset, Table, Out, Scratch }) t.Dispose(); }
    }

    private static SlothStatus Dequant(Buffers b, nint? packed = null, nint? codes = null, nint? map = null, nint? nested = null,
                                        nint? offset = null, nint? table = null, long n = 64, int bs = 64, int nbs = 256,
                                        int dtype = 0, nint? output = null, int device = -1) =>
        Native.TryNf4Dequantize(packed ?? Ptr(b.Packed), codes ?? Ptr(b.Codes), map ?? Ptr(b.Map),
            nested ?? Ptr(b.Nested), offset ?? Ptr(b.Offset), table ?? Ptr(b.Table), n, bs, nbs, (SlothDtype)dtype,
            output ?? Ptr(b.Out), device, 0);

    // These buffers are contiguous, offset-0 CPU tensors of float32 or uint8: storage<T> of their own dtype is exact.
    private static nint Ptr(Tensor t) => t.dtype switch
    {
        ScalarType.Byte => t.storage<byte>().data_ptr(),
        _ => t.storage<float>().data_ptr(),
    };

    private static void ExpectStatus(SlothStatus actual, SlothStatus expected, string messagePart)
    {
        Assert.That(actual, Is.EqualTo(expected));
        var ex = Assert.Catch<SlothException>(() => Native.Check(actual))!;
        Assert.That(ex.NativeMessage, Does.Contain(messagePart));
        Assert.That(ex.Status, Is.EqualTo(expected));
    }

    [SetUp]
    public void Load() => Native.EnsureLoaded();

    [Test]
    public void ValidCallSucceeds()
    {
        using var b = new Buffers();
        Assert.That(Dequant(b), Is.EqualTo(SlothStatus.Ok));
    }

    [TestCase("packed")]
    [TestCase("absmax_codes")]
    [TestCase("nested_code_map")]
    [TestCase("nested_absmax")]
    [TestCase("nested_offset")]
    [TestCase("nf4_code_table")]
    [TestCase("out")]
    public void NullPointersAreRejected(string which)
    {
        using var b = new Buffers();
        var s = which switch
        {
            "packed" => Dequant(b, packed: 0),
            "absmax_codes" => Dequant(b, codes: 0),
            "nested_code_map" => Dequant(b, map: 0),
            "nested_absmax" => Dequant(b, nested: 0),
            "nested_offset" => Dequant(b, offset: 0),
            "nf4_code_table" => Dequant(b, table: 0),
            _ => Dequant(b, output: 0),
        };
        ExpectStatus(s, SlothStatus.ErrorInvalidArgument, $"{which} is NULL");
    }

    [TestCase(0)]
    [TestCase(16)]
    [TestCase(48)]
    [TestCase(8192)]
    [TestCase(-64)]
    public void BadBlocksizesAreRejected(int bs)
    {
        using var b = new Buffers();
        ExpectStatus(Dequant(b, bs: bs), SlothStatus.ErrorInvalidArgument, "blocksize");
        ExpectStatus(Dequant(b, nbs: bs), SlothStatus.ErrorInvalidArgument, "nested_blocksize");
    }

    [TestCase(0L)]
    [TestCase(-5L)]
    public void BadSizesAreRejected(long n)
    {
        using var b = new Buffers();
        ExpectStatus(Dequant(b, n: n), SlothStatus.ErrorInvalidArgument, "n = ");
    }

    [Test]
    public void UnknownDtypeIsRejected()
    {
        using var b = new Buffers();
        ExpectStatus(Dequant(b, dtype: 7), SlothStatus.ErrorInvalidArgument, "out_dtype = 7");
    }

    [Test]
    public void BadDeviceIsRejected()
    {
        using var b = new Buffers();
        ExpectStatus(Dequant(b, device: -2), SlothStatus.ErrorInvalidArgument, "device = -2");
    }

    [Test]
    public void MissingCudaDeviceIsAnErrorNotACrash()
    {
        using var b = new Buffers();
        // A device ordinal that no machine has: a CPU-only build says "no CUDA", a CUDA build "this machine has N".
        var s = Dequant(b, device: 999);
        Assert.That(s, Is.AnyOf(SlothStatus.ErrorNoCuda, SlothStatus.ErrorInvalidArgument));
        Assert.Catch<SlothException>(() => Native.Check(s));
    }

    [Test]
    public void QuantizeValidatesToo()
    {
        using var b = new Buffers();
        var src = b.Out;
        ExpectStatus(Native.TryNf4Quantize(0, SlothDtype.F32, 64, 64, 256, Ptr(b.Map), Ptr(b.Packed),
            Ptr(b.Codes), Ptr(b.Nested), Ptr(b.Offset), Ptr(b.Scratch), -1, 0), SlothStatus.ErrorInvalidArgument, "src is NULL");
        ExpectStatus(Native.TryNf4Quantize(Ptr(src), SlothDtype.F32, 64, 100, 256, Ptr(b.Map), Ptr(b.Packed),
            Ptr(b.Codes), Ptr(b.Nested), Ptr(b.Offset), Ptr(b.Scratch), -1, 0), SlothStatus.ErrorInvalidArgument, "blocksize = 100");
        // A device no machine has (host pointers must never reach a real GPU launch): "no CUDA" or "has N devices".
        var s = Native.TryNf4Quantize(Ptr(src), SlothDtype.F32, 64, 64, 256, Ptr(b.Map), Ptr(b.Packed),
            Ptr(b.Codes), Ptr(b.Nested), Ptr(b.Offset), Ptr(b.Scratch), 999, 0);
        Assert.That(s, Is.AnyOf(SlothStatus.ErrorNoCuda, SlothStatus.ErrorInvalidArgument));
    }

    [Test]
    public void ManagedApiValidatesBeforeCallingNative()
    {
        using var scope = NewDisposeScope();
        using var w = Nf4Weight.Quantize(randn(8, 64));
        Assert.Throws<ArgumentException>(() => w.DequantizeInto(zeros(8, 64, ScalarType.Int32)), "int32 output");
        Assert.Throws<ArgumentException>(() => w.DequantizeInto(zeros(8, 63)), "wrong element count");
        Assert.Throws<ArgumentException>(() => w.DequantizeInto(zeros(64, 8).t()), "non-contiguous output");
        Assert.Throws<ArgumentException>(() => Nf4Weight.Quantize(zeros(4, 64, ScalarType.Int64)), "integer weight");
        Assert.Throws<ArgumentException>(() => Nf4Weight.Quantize(zeros(0, 64)), "empty weight");
        Assert.Throws<ArgumentOutOfRangeException>(() => Nf4Weight.Quantize(randn(4, 64), blocksize: 96));
        Assert.Throws<ArgumentException>(() => Nf4Weight.FromTensors(zeros(10, ScalarType.Byte), zeros(1, ScalarType.Byte),
            ones(1), 0f, tensor(Nf4Tables.DynamicMap.ToArray()), tensor(Nf4Tables.Nf4Codes.ToArray()), [64]), "packed too short");
        Assert.Throws<ArgumentException>(() => Nf4Weight.FromTensors(zeros(32, ScalarType.Byte), zeros(1, ScalarType.Byte),
            ones(1), 0f, tensor(Nf4Tables.DynamicMap.ToArray()), zeros(15), [64]), "code table of 15");
        var nan = randn(2, 64);
        nan[0, 3] = tensor(float.NaN);
        var ex = Assert.Throws<SlothInvalidArgumentException>(() => Nf4Weight.Quantize(nan))!;
        Assert.That(ex.Message, Does.Contain("src[3] is not finite"));
    }

    [Test]
    public void UseAfterDisposeThrows()
    {
        var w = Nf4Weight.Quantize(randn(2, 64));
        w.Dispose();
        Assert.Throws<ObjectDisposedException>(() => w.Dequantize());
    }
}
