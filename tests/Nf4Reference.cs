using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>NF4 dequantization written with TorchSharp ops only (gather + multiply), as the tests' reference. Each
/// product and the sum are separate float32 tensor ops, so no fused multiply-add can creep in.</summary>
internal static class Nf4Reference
{
    public static Tensor Dequantize(Nf4Weight w, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var n = w.NumElements;
        var blocks = w.AbsmaxCodes.numel();
        var codeValues = w.NestedCodeMap.index_select(0, w.AbsmaxCodes.to(ScalarType.Int64));
        var nestedIdx = arange(blocks, device: w.Device) / w.NestedBlocksize;
        var scaled = codeValues * w.NestedAbsmax.index_select(0, nestedIdx.to(ScalarType.Int64));
        var scale = scaled + w.NestedOffset;
        var packed = w.Packed.to(ScalarType.Int64);
        var nibbles = stack([packed.bitwise_right_shift(4), packed.bitwise_and(15)], 1).flatten()[..(int)n];
        var values = w.CodeTable.index_select(0, nibbles);
        var perElement = scale.repeat_interleave(w.Blocksize)[..(int)n];
        var result = (values * perElement).to(dtype).reshape(w.Shape);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>A random but valid NF4 weight: random packed bytes and codes, positive nested absmax, a random offset.</summary>
    public static Nf4Weight Random(long[] shape, int blocksize, int nestedBlocksize, Generator gen, Device? device = null)
    {
        using var scope = NewDisposeScope();
        var n = shape.Aggregate(1L, (a, b) => a * b);
        var blocks = (n + blocksize - 1) / blocksize;
        var nested = (blocks + nestedBlocksize - 1) / nestedBlocksize;
        var packed = randint(0, 256, [(n + 1) / 2], ScalarType.Byte, generator: gen);
        var codes = randint(0, 256, [blocks], ScalarType.Byte, generator: gen);
        var nestedAbsmax = rand([nested], ScalarType.Float32, generator: gen) * 0.05f + 0.001f;
        var offset = (float)(rand([1], ScalarType.Float32, generator: gen).item<float>() * 0.1);
        var w = Nf4Weight.FromTensors(packed, codes, nestedAbsmax, offset,
            tensor(Nf4Tables.DynamicMap.ToArray()), tensor(Nf4Tables.Nf4Codes.ToArray()), shape, blocksize, nestedBlocksize);
        var moved = device is null ? w : w.To(device);
        if (!ReferenceEquals(moved, w)) w.Dispose();
        moved.MoveToOuterDisposeScope();
        return moved;
    }
}
