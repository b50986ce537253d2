using System.Text;
using SlothSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>How <see cref="TunedGemm"/> picks a shape's algorithm when the shape comes back (sloth_gemm's
/// <c>tune</c>).</summary>
public enum GemmTuning
{
    /// <summary>cuBLASLt's first heuristic choice, never timed.</summary>
    None = SlothConstants.GemmNoTuning,
    /// <summary>Time cuBLASLt's heuristic candidates (up to 16; ~0.1 s once per shape) and keep the fastest.</summary>
    Heuristic = SlothConstants.GemmTuneHeuristic,
    /// <summary>Also time variants of those candidates (other tile shapes, cluster shapes, CTA swizzling) that cuBLASLt
    /// accepts for the shape: up to 96 candidates, about a second once per shape.</summary>
    Wide = SlothConstants.GemmTuneWide,
}

/// <summary>
/// C = alpha · a · b + beta · C on a CUDA device in float16/bfloat16, through cuBLASLt with a per-shape tuner
/// (<c>sloth_gemm</c> in slothsharp.h): a shape's first call takes cuBLASLt's heuristic choice; a later call with
/// a tuning mode other than <see cref="GemmTuning.None"/> and beta = 0 times candidate algorithms on the real operands
/// (one host synchronization) and keeps the fastest for the process. The fused cross-entropy runs its three GEMMs through it, where TorchSharp's matmul leaves SMs idle on the chunk shapes.
/// Runs on TorchSharp's stream (the legacy default stream), so it orders with TorchSharp's own work.
/// </summary>
public static class TunedGemm
{
    /// <summary>Workspace per device for split-K partial sums: 32 MiB, what PyTorch gives cuBLAS on Hopper. Allocated
    /// once per device on first use and kept for the process (like cuBLAS's own workspace). The GEMMs run in stream
    /// order on one stream, so one buffer per device serves them all.</summary>
    public const long WorkspaceBytes = 32L << 20;

    private static readonly object Gate = new();
    private static readonly Dictionary<int, Tensor> Workspaces = new();
    private static string? _unavailable;  // why sloth_gemm cannot run in this process (set once, on the first refusal)

    /// <summary>Why the tuned GEMM is not used in this process (cuBLASLt missing, library built without CUDA), or
    /// null when it is, or when it has not been tried yet.</summary>
    public static string? UnavailableReason => Volatile.Read(ref _unavailable);

    /// <summary>
    /// <paramref name="c"/> [m, n] (unit column stride, any row stride ≥ n) = alpha · a · b + beta · c, with a [m, k]
    /// and b [k, n] 2-D views that are row-major or transposed (one of the two strides 1, e.g. <c>w.t()</c>); all on
    /// one CUDA device, all float16 or all bfloat16; products accumulate in float32. beta = 0 ignores c's contents.
    /// Throws <see cref="ArgumentException"/> for tensors it cannot take and <see cref="SlothUnsupportedException"/>
    /// when cuBLASLt cannot be loaded (the message says what was tried).
    /// </summary>
    public static void MatMulInto(Tensor a, Tensor b, Tensor c, float alpha = 1, float beta = 0,
                                  GemmTuning tuning = GemmTuning.Heuristic)
    {
        CheckTuning(tuning);
        if (Describe(a, b, c) is { } problem) throw new ArgumentException(problem);
        Native.Check(Call(a, b, c, alpha, beta, tuning));
    }

    /// <summary>The same when it can: false (nothing done) when the tensors are not CUDA f16/bf16 2-D views it takes,
    /// or when cuBLASLt is unavailable in this process (remembered after the first refusal); the caller then uses its
    /// own GEMM. Other failures (a CUDA fault) throw.</summary>
    public static bool TryMatMulInto(Tensor a, Tensor b, Tensor c, float alpha = 1, float beta = 0,
                                     GemmTuning tuning = GemmTuning.Heuristic)
    {
        CheckTuning(tuning);
        if (Volatile.Read(ref _unavailable) is not null || Describe(a, b, c) is not null) return false;
        var status = Call(a, b, c, alpha, beta, tuning);
        if (status == SlothStatus.ErrorUnsupported || status == SlothStatus.ErrorNoCuda)
        {
            Interlocked.CompareExchange(ref _unavailable, Native.LastErrorMessage, null);
            return false;
        }
        Native.Check(status);
        return true;
    }

    /// <summary>sloth_gemm on tensors that <see cref="Describe"/> accepted, on TorchSharp's stream.</summary>
    private static SlothStatus Call(Tensor a, Tensor b, Tensor c, float alpha, float beta, GemmTuning tuning) =>
        Native.TryGemm(Transposed(a) ? 1 : 0, Transposed(b) ? 1 : 0, c.shape[0], c.shape[1], a.shape[1], alpha,
            TensorInterop.DataPtr(a), LeadingStride(a), TensorInterop.DataPtr(b), LeadingStride(b), beta,
            TensorInterop.DataPtr(c), c.stride(0), TensorInterop.ToSloth(c.dtype, nameof(c)), Workspace(c), WorkspaceBytes,
            (int)tuning, TensorInterop.DeviceSelector(c), 0);

    private static void CheckTuning(GemmTuning tuning)
    {
        if (!Enum.IsDefined(tuning)) throw new ArgumentOutOfRangeException(nameof(tuning), tuning, "not a GemmTuning value");
    }

    /// <summary>Forgets every choice the tuner kept (all devices): each shape starts again from its first call. For
    /// comparing tuning modes in one process, or re-tuning after the conditions changed (clocks, other work on the
    /// GPU).</summary>
    public static void ForgetTuning() => Native.GemmForgetTuning();

    /// <summary>What the tuner chose so far, one line per shape (for benchmarks and diagnostics).</summary>
    public static unsafe string TuningReport()
    {
        int needed;
        Native.GemmTuningReport(0, 0, (nint)(&needed));
        var buffer = new byte[Math.Max(1, needed)];
        fixed (byte* p = buffer) Native.GemmTuningReport((nint)p, buffer.Length, 0);
        var end = Array.IndexOf(buffer, (byte)0);
        return Encoding.UTF8.GetString(buffer, 0, end < 0 ? buffer.Length : end);
    }

    /// <summary>Null when sloth_gemm takes these tensors, else why not.</summary>
    private static string? Describe(Tensor a, Tensor b, Tensor c)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(c);
        if (a.ndim != 2 || b.ndim != 2 || c.ndim != 2) return "a, b and c must be 2-D";
        if (a.shape[0] != c.shape[0] || b.shape[1] != c.shape[1] || a.shape[1] != b.shape[0])
            return $"shapes do not chain: a [{a.shape[0]}, {a.shape[1]}] · b [{b.shape[0]}, {b.shape[1]}] → c [{c.shape[0]}, {c.shape[1]}]";
        if (c.dtype is not (ScalarType.BFloat16 or ScalarType.Float16) || a.dtype != c.dtype || b.dtype != c.dtype)
            return $"a, b and c must all be float16 or all bfloat16; got {a.dtype}, {b.dtype}, {c.dtype}";
        if (c.device_type != DeviceType.CUDA || a.device_type != DeviceType.CUDA || b.device_type != DeviceType.CUDA
            || TensorInterop.DeviceSelector(a) != TensorInterop.DeviceSelector(c) || TensorInterop.DeviceSelector(b) != TensorInterop.DeviceSelector(c))
            return $"a, b and c must be on one CUDA device; got {a.device}, {b.device}, {c.device}";
        if (c.numel() == 0 || a.shape[1] == 0) return "empty problem";
        if (c.stride(1) != 1 || c.stride(0) < c.shape[1]) return "c needs unit column stride and row stride >= its columns";
        if (!Layout(a) || !Layout(b)) return "a and b must each have a unit stride in one dimension (row-major or a transposed view)";
        return null;
    }

    // Row-major: unit column stride, row stride ≥ columns.
    private static bool RowMajor(Tensor t) => t.stride(1) == 1 && t.stride(0) >= Math.Max(1, t.shape[1]);

    // Row-major, or the transpose of a row-major matrix (e.g. w.t()).
    private static bool Layout(Tensor t) => RowMajor(t) || (t.stride(0) == 1 && t.stride(1) >= Math.Max(1, t.shape[0]));

    private static bool Transposed(Tensor t) => !RowMajor(t);

    private static long LeadingStride(Tensor t) => Transposed(t) ? t.stride(1) : t.stride(0);

    private static nint Workspace(Tensor like)
    {
        var device = TensorInterop.DeviceSelector(like);
        lock (Gate)
        {
            if (!Workspaces.TryGetValue(device, out var w))
            {
                // Outside any DisposeScope of the caller: the buffer lives for the process.
                using (NewDisposeScope())
                    w = empty(WorkspaceBytes, ScalarType.Byte, like.device).DetachFromDisposeScope();
                Workspaces[device] = w;
            }
            return TensorInterop.DataPtr(w);
        }
    }
}
