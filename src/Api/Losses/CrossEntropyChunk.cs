using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Losses;

/// <summary>The fused kernel on one logits chunk: per-row loss and log-sum-exp, and the logits overwritten in place
/// by grad_scale_r · dloss/dlogits (see <c>sloth_cross_entropy_chunk</c> in slothsharp.h).</summary>
public static class CrossEntropyChunk
{
    /// <summary>
    /// logits: [rows, V] float32/float16/bfloat16 with unit column stride (row stride may exceed V); labels: int64 [rows];
    /// rowGradScale: float32 [rows] or null (then <paramref name="gradScale"/> for every row); lossOut, lseOut: float32 [rows].
    /// All contiguous (except logits rows) and on one device. Out-of-range labels fail on the CPU; on the GPU their
    /// loss is NaN (validate labels first: the fused autograd function does).
    /// </summary>
    public static void Compute(Tensor logits, Tensor labels, CrossEntropyOptions options, Tensor? rowGradScale, float gradScale,
                               bool computeGrad, Tensor lossOut, Tensor lseOut)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(lossOut);
        ArgumentNullException.ThrowIfNull(lseOut);
        options.Validate();
        var dtype = TensorInterop.ToSloth(logits.dtype, nameof(logits));
        if (logits.ndim != 2 || logits.stride(1) != 1 || logits.stride(0) < logits.shape[1])
            throw new ArgumentException($"logits must be [rows, V] with unit column stride; got shape [{string.Join(", ", logits.shape)}], strides [{string.Join(", ", logits.stride())}]", nameof(logits));
        var rows = logits.shape[0];
        TensorInterop.RequireDtype(labels, ScalarType.Int64, nameof(labels));
        TensorInterop.RequireDtype(lossOut, ScalarType.Float32, nameof(lossOut));
        TensorInterop.RequireDtype(lseOut, ScalarType.Float32, nameof(lseOut));
        foreach (var (t, name) in new[] { (labels, nameof(labels)), (lossOut, nameof(lossOut)), (lseOut, nameof(lseOut)) })
        {
            TensorInterop.RequireContiguous(t, name);
            TensorInterop.RequireNumel(t, rows, name);
            TensorInterop.RequireSameDevice(logits, nameof(logits), t, name);
        }
        if (rowGradScale is not null)
        {
            TensorInterop.RequireDtype(rowGradScale, ScalarType.Float32, nameof(rowGradScale));
            TensorInterop.RequireContiguous(rowGradScale, nameof(rowGradScale));
            TensorInterop.RequireNumel(rowGradScale, rows, nameof(rowGradScale));
            TensorInterop.RequireSameDevice(logits, nameof(logits), rowGradScale, nameof(rowGradScale));
        }
        if (rows == 0) return;
        // Threads per row and blocks: the library's choices unless the benchmark set them (FusedCrossEntropyTuning).
        Native.CrossEntropyChunkTuned(TensorInterop.DataPtr(logits), dtype, rows, logits.shape[1],
            logits.stride(0), TensorInterop.DataPtr(labels), options.IgnoreIndex, (float)options.LogitScale,
            (float)options.Softcap, (float)options.LabelSmoothing, (float)options.ZLoss,
            rowGradScale is null ? 0 : TensorInterop.DataPtr(rowGradScale), gradScale, computeGrad ? 1 : 0,
            TensorInterop.DataPtr(lossOut), TensorInterop.DataPtr(lseOut), FusedCrossEntropyTuning.KernelThreadsPerRow,
            FusedCrossEntropyTuning.KernelRowsInFlight, TensorInterop.DeviceSelector(logits), 0);
    }
}
