namespace SlothSharp.Gguf;

/// <summary>A tensor described by a GGUF file.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="Dims">ggml order (Dims[0] is the row length).</param>
/// <param name="Type">ggml type (possibly one SlothSharp does not know).</param>
/// <param name="DataOffset">Absolute byte offset of the tensor's data in the file.</param>
/// <param name="ByteCount">Size of the data; -1 when the type is not one SlothSharp knows (the reader still lists it).</param>
public sealed record GgufTensorInfo(string Name, long[] Dims, GgmlType Type, long DataOffset, long ByteCount)
{
    public long ElementCount => Dims.Aggregate(1L, (a, d) => a * d);
}
