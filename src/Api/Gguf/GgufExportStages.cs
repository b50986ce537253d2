namespace SlothSharp.Gguf;

/// <summary>
/// Wall time of a GGUF export by stage, to tell which one bounds it.
/// </summary>
/// <param name="Input">Producing the input tensors: reading a checkpoint, or dequantizing NF4 weights and merging a
/// LoRA adapter when the tensors come from a loaded model.</param>
/// <param name="ToFloat32">Converting each tensor to a float32 array (from bf16/f16) and llama.cpp's layout changes
/// (the RoPE row permutation of q/k).</param>
/// <param name="Quantize">Quantizing to the ggml types (parallel over rows).</param>
/// <param name="Write">Appending the quantized bytes to the temporary data file.</param>
/// <param name="Assemble">Writing the GGUF file: header, metadata, and the tensor data copied from the temporary file.</param>
public sealed record GgufExportStages(TimeSpan Input, TimeSpan ToFloat32, TimeSpan Quantize, TimeSpan Write, TimeSpan Assemble);
