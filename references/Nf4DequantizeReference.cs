using static TorchSharp.torch;

namespace SlothSharp.References;

/// <summary>
/// NF4 double dequantization written with TorchSharp ops only: decode the absmax (gather, multiply, add), split the
/// nibbles (shift, mask), gather the NF4 codes, scale, cast. The tests check the kernels against it bit for bit; the
/// benchmarks time it as what a TorchSharp user writes without SlothSharp. Each product and the sum are separate
/// float32 tensor ops, so no fused multiply-add can creep in. Handles a partial last block and partial nested block.
/// (Compiled into tests and bench from references/.)
/// </summary>
internal static class Nf4DequantizeReference
{
    public static Tensor Dequantize(Nf4Weight w, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var n = w.NumElements;
        var blocks = w.AbsmaxCodes.numel();
        var codeValues = w.NestedCodeMap.index_select(0, w.AbsmaxCodes.to(ScalarType.Int64));
        var nestedPerBlock = w.NestedAbsmax.repeat_interleave(w.NestedBlocksize)[..(int)blocks];
        var scale = codeValues * nestedPerBlock + w.NestedOffset;
        var packed = w.Packed.to(ScalarType.Int64);
        var nibbles = stack([packed.bitwise_right_shift(4), packed.bitwise_and(15)], 1).flatten();
        var values = w.CodeTable.index_select(0, nibbles);
        // Pad to whole blocks so that the scale broadcasts per block; the padding is cut off again below.
        var padded = blocks * w.Blocksize;
        if (values.shape[0] < padded) values = nn.functional.pad(values, [0, padded - values.shape[0]]);
        var result = (values[..(int)padded].view(blocks, w.Blocksize) * scale.unsqueeze(1)).flatten()[..(int)n].to(dtype).reshape(w.Shape);
        return result.MoveToOuterDisposeScope();
    }
}
