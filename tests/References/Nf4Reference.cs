using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Random NF4 weights for the tests (the dequantization reference itself is in references/).</summary>
internal static class Nf4Reference
{
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
