namespace SlothSharp.Gguf;

/// <summary>
/// Wall time of a GGUF export by stage, to tell which one bounds it.
/// </summary>
/// <param name="Input">Producing the input tensors: dequantizing NF4 weights and merging a LoRA adapter when they come
/// from a loaded model (about 0 for a checkpoint directory, which is read during <paramref name="ToFloat32"/>).</param>
/// <param name="ToFloat32">Converting each tensor to float32 (from bf16/f16; for a checkpoint directory straight from
/// the memory-mapped file) and llama.cpp's layout changes (the RoPE row permutation of q/k).</param>
/// <param name="Quantize">Quantizing to the ggml types (parallel over rows).</param>
/// <param name="Write">Appending the quantized bytes to the temporary data file.</param>
/// <param name="Assemble">Writing the GGUF file: header, metadata, and the tensor data copied from the temporary file.</param>
public sealed record GgufExportStages(TimeSpan Input, TimeSpan ToFloat32, TimeSpan Quantize, TimeSpan Write, TimeSpan Assemble);
