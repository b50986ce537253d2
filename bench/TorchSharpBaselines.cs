using static TorchSharp.torch;

namespace SlothSharp.Bench;

/// <summary>What a TorchSharp user writes today without SlothSharp.</summary>
internal static class TorchSharpBaselines
{
    /// <summary>NF4 double dequantization with TorchSharp ops: decode the absmax (gather, multiply, add), split the
    /// nibbles (shift, mask), gather the NF4 codes, scale, cast.</summary>
    public static Tensor Nf4Dequantize(Nf4Weight w, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var absmax = w.NestedCodeMap.index_select(0, w.AbsmaxCodes.to(ScalarType.Int64));
        var nestedPerBlock = w.NestedAbsmax.repeat_interleave(w.NestedBlocksize)[..(int)w.AbsmaxCodes.numel()];
        var scale = absmax * nestedPerBlock + w.NestedOffset;
        var packed = w.Packed.to(ScalarType.Int64);
        var nibbles = stack([packed.bitwise_right_shift(4), packed.bitwise_and(15)], 1).flatten();
        var values = w.CodeTable.index_select(0, nibbles).view(-1, w.Blocksize);
        var result = (values * scale.unsqueeze(1)).to(dtype).view(w.Shape);
        return result.MoveToOuterDisposeScope();
    }
}
