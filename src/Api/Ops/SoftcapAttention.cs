using System.Collections.Concurrent;
using SlothSharp.Autograd;
using SlothSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// Soft-capped attention (Gemma 2's attn_logit_softcapping) over blocks of query rows, with the scores made again in
/// backward instead of kept. The math of transformers' eager path, which TorchSharp's SDPA cannot express (it has no
/// soft-cap): s = cap·tanh(q·kᵀ·scale / cap) in the dtype, masked to -inf where not allowed, softmax in float32,
/// probabilities rounded to the dtype, times v. The eager path keeps several [B, H, T, L] tensors per layer for
/// backward (scores, tanh, float32 probabilities, their cast); this keeps q, k, v and the mask, and holds one block's
/// scores at a time (about 2^24 elements) in either direction, for a third matmul per block in backward. Between the
/// matmuls, one kernel per block and direction (<see cref="SoftcapSoftmax"/>) does the soft-cap, mask and softmax (and
/// their gradient) with the eager expression's roundings, in place of about eight (twelve in backward) element-wise
/// TorchSharp passes over the block. K and V come grouped (GQA, [B, KV, L, D]): a block's query rows of the G = H/KV
/// heads that share a KV head are one matrix of G·rows rows (the same memory as its [B, H, rows, L] scores), so K and V
/// are never expanded to every head (Gemma-2-2B: a [B, H, L, D] copy of each a layer, and the sum over the groups in
/// backward, gone) and their gradients are summed over the groups by the GEMMs themselves. A block
/// works only on the keys its rows may attend to (the span of the mask's allowed columns over its rows): past them
/// every probability is exactly 0, so a causal mask costs about half the full square and a sliding window less.
/// <see cref="Models.DecoderKernels"/> puts it in place of the eager path in the fused kernel set.
/// On request (<see cref="SoftcapAttentionMethod.Flash"/>; CUDA in bf16/f16 with a head size the kernels take,
/// <see cref="FlashSupported"/>) the one-pass kernels (sloth_softcap_flash_*) run instead: flash-attention style tiles
/// on the tensor cores, the scores never in memory, float32 soft-cap and online softmax (not the eager expression's
/// dtype roundings: within the dtype's rounding of it), only q, k, v, the output and the rows' log-sum-exp kept for
/// backward (0.47 GB against the blocks' 1.22 GB a Gemma-2-2B layer). <see cref="SoftcapAttentionMethod.Auto"/> runs
/// the blocks: the one-pass kernels (tiles loaded by cp.async) are faster on one Gemma-2-2B layer (H200, 3.07 against
/// 3.52 ms), but in the QLoRA step they were 2.6% slower on the H200 (bench/results/2026-12-06-round17) and 1.5% faster
/// on the H100 (bench/results/2026-12-07-round18), so neither is the default yet.
/// </summary>
public static class SoftcapAttention
{
    /// <summary>Elements of one block's scores [B, H, rows, L]: the query rows per block are chosen to stay near it.</summary>
    public const long BlockElements = 1L << 24;

    /// <summary>q [B, H, T, D], k and v [B, KV, L, D] with H a multiple of KV (one float dtype and device; each KV head
    /// serves H/KV consecutive query heads, as transformers' repeat_kv; KV = H is plain multi-head attention); any strides
    /// (q and the gradients keep the layout they came in); allowed: bool [B or 1, 1 or H, T, L] (true = may attend) or
    /// null (every key). Returns [B, H, T, D] in the dtype, laid out as q.
    /// Differentiable in q, k and v. Computed the <see cref="SoftcapAttentionMethod.Auto"/> way (the blocks).
    /// <paramref name="rowsPerBlock"/> asks for the blocks path with that block size
    /// (tests).</summary>
    public static Tensor Apply(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap, long? rowsPerBlock = null)
    {
        if (rowsPerBlock is null) return Apply(q, k, v, allowed, scale, cap, SoftcapAttentionMethod.Auto);
        Check(q, k, v, allowed, cap);
        return Blocks(q, k, v, allowed, scale, cap, rowsPerBlock);
    }

    /// <summary>The same with the method chosen by the caller: <see cref="SoftcapAttentionMethod.Flash"/> throws an
    /// <see cref="ArgumentException"/> where the one-pass kernels do not run (<see cref="FlashSupported"/>).</summary>
    public static Tensor Apply(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap, SoftcapAttentionMethod method) =>
        Apply(q, k, v, allowed, scale, cap, method, null);

    /// <summary>The same, with the blocks' key spans of <paramref name="allowed"/> taken from <paramref name="spans"/>
    /// (a decoder's layers share one mask per kind: one device-to-host read for all of them, not one a layer).</summary>
    internal static Tensor Apply(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap, SoftcapAttentionMethod method,
                                 SoftcapSpanCache? spans)
    {
        Check(q, k, v, allowed, cap);
        var flash = method switch
        {
            SoftcapAttentionMethod.Blocks => false,
            SoftcapAttentionMethod.Flash => true,
            SoftcapAttentionMethod.Auto => false,   // the blocks, until the one-pass kernels measure faster
            _ => throw new ArgumentOutOfRangeException(nameof(method), method, "unknown method"),
        };
        if (!flash) return Blocks(q, k, v, allowed, scale, cap, null, spans);
        if (!FlashSupported(q, k, v))
            throw new ArgumentException($"the one-pass soft-capped attention kernels do not run for {q.dtype} q {OpChecks.Shape(q)} on {q.device} " +
                                        "(CUDA: bf16 or f16, head_dim a multiple of 16 up to 256, sm_80 or newer; any dtype on the CPU)", nameof(method));
        // The one-pass kernels take K and V per query head: grouped ones are expanded (a copy) first.
        var groups = q.shape[1] / k.shape[1];
        using var ke = GqaAttention.Expand(k, groups);
        using var ve = GqaAttention.Expand(v, groups);
        var (qc, kc, vc) = (Contiguous(q), Contiguous(ke), Contiguous(ve));
        try
        {
            return SoftcapFlashFunction.Apply(new SoftcapFlashPlan(scale, cap), qc, kc, vc, allowed);
        }
        finally
        {
            if (!ReferenceEquals(qc, q)) qc.Dispose();
            if (!ReferenceEquals(kc, ke)) kc.Dispose();
            if (!ReferenceEquals(vc, ve)) vc.Dispose();
        }
    }

    /// <summary>Whether the one-pass kernels (sloth_softcap_flash_*) run for these tensors where they are: on the CPU
    /// for any float dtype and 1 ≤ D ≤ 256; on CUDA for bf16 and f16, D a multiple of 16 up to 256, on a device and
    /// build with sm_80 tensor-core code and enough shared memory. Asked once per device, dtype and D. Views that are
    /// not contiguous or not 16-byte aligned (a transposed q, GQA's expanded k and v) run on contiguous copies.</summary>
    public static bool FlashSupported(Tensor q, Tensor k, Tensor v)
    {
        var d = q.shape[3];
        if (q.dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16)) return false;
        var dtype = TensorInterop.ToSloth(q.dtype, "q");
        var device = TensorInterop.DeviceSelector(q);
        return Supported.GetOrAdd((device, dtype, d), key =>
        {
            var result = new int[1];
            unsafe
            {
                fixed (int* p = result) Native.SoftcapFlashSupported(key.Dtype, key.D, key.Device, (nint)p);
            }
            return result[0] != 0;
        });
    }

    /// <summary>x itself when the kernels can read it (contiguous, 16-byte aligned), else a copy in a new (so aligned)
    /// contiguous allocation; the caller disposes a copy.</summary>
    private static Tensor Contiguous(Tensor x) =>
        x.is_contiguous() && Aligned(x) ? x : (x.is_contiguous() ? x.clone() : x.contiguous()).DetachFromDisposeScope();

    private static readonly ConcurrentDictionary<(int Device, SlothDtype Dtype, long D), bool> Supported = new();

    private static bool Aligned(Tensor t) => TensorInterop.DataPtr(t) % 16 == 0;

    private static void Check(Tensor q, Tensor k, Tensor v, Tensor? allowed, double cap)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        if (q.ndim != 4 || k.ndim != 4 || v.ndim != 4)
            throw new ArgumentException($"q {OpChecks.Shape(q)}, k {OpChecks.Shape(k)} and v {OpChecks.Shape(v)} must be [B, H, T|L, D]");
        OpChecks.FloatingSameDtype(q, nameof(q), k, nameof(k));
        OpChecks.FloatingSameDtype(q, nameof(q), v, nameof(v));
        var (b, h, t, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        var (kv, l) = (k.shape[1], k.shape[2]);
        if (k.shape[0] != b || kv < 1 || h % kv != 0 || k.shape[3] != d || !v.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"k {OpChecks.Shape(k)} and v {OpChecks.Shape(v)} must be [{b}, KV, L, {d}] with {h} a multiple of KV for q {OpChecks.Shape(q)}");
        if (allowed is not null && (allowed.dtype != ScalarType.Bool || allowed.ndim != 4 || allowed.shape[2] != t || allowed.shape[3] != l ||
                                    allowed.shape[0] is var mb && mb != 1 && mb != b || allowed.shape[1] is var mh && mh != 1 && mh != h))
            throw new ArgumentException($"allowed must be bool [B or 1, H or 1, {t}, {l}]; got {allowed.dtype} {OpChecks.Shape(allowed)}", nameof(allowed));
        if (!(cap > 0) || double.IsInfinity(cap)) throw new ArgumentOutOfRangeException(nameof(cap), cap, "the soft-cap must be positive and finite");
        TensorInterop.RequireSameDevice(q, "q", k, "k");
        TensorInterop.RequireSameDevice(q, "q", v, "v");
        if (allowed is not null) TensorInterop.RequireSameDevice(q, "q", allowed, "allowed");
    }

    /// <summary>The blocks path on tensors <see cref="Check"/> accepted.</summary>
    private static Tensor Blocks(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap, long? rowsPerBlock,
                                 SoftcapSpanCache? spans = null)
    {
        var (b, h, t, l) = (q.shape[0], q.shape[1], q.shape[2], k.shape[2]);
        var rows = rowsPerBlock ?? Math.Max(1, BlockElements / Math.Max(1, b * h * l));
        if (rows < 1) throw new ArgumentOutOfRangeException(nameof(rowsPerBlock), rowsPerBlock, "must be >= 1");
        var keys = spans is not null && allowed is not null ? spans.Get(allowed, t, l, rows) : SoftcapAttentionFunction.KeySpans(allowed, t, l, rows);
        return SoftcapAttentionFunction.Apply(new SoftcapAttentionPlan(scale, cap, rows, keys), q, k, v, allowed);
    }
}

/// <summary>Keys: per block of Rows query rows, the key columns it works on (KeySpans), read once for forward and
/// backward.</summary>
internal sealed record SoftcapAttentionPlan(double Scale, double Cap, long Rows, (long Start, long Count)[] Keys);

/// <summary>What the blocks' backward needs of K and V besides the saved inputs: the contiguous copies forward made
/// (null where the input was already contiguous and is saved itself) and the inputs' strides, which their gradients
/// take (a layer's K and V are views of [B, L, KV, D] projections: the gradients go back without another copy).</summary>
internal sealed record SoftcapKv(TensorBox Copies, long[] KStrides, long[] VStrides);

internal sealed class SoftcapAttentionFunction : SlothFunction<SoftcapAttentionFunction, SoftcapAttentionPlan>
{
    public override string Name => "SlothSharp.SoftcapAttention";

    protected override Tensor Forward(autograd.AutogradContext ctx, SoftcapAttentionPlan plan, Tensor?[] inputs)
    {
        var (q, k, v, allowed) = (inputs[0]!, inputs[1]!, inputs[2]!, inputs[3]);
        var t = q.shape[2];
        // K and V as the GEMMs read them ([B·KV] matrices of one stride); a layer's K and V come as transposed views
        // of their projections' [B, L, KV, D] outputs, so this is one copy each (what backward keeps).
        var kCopy = k.is_contiguous() ? null : k.contiguous().DetachFromDisposeScope();
        var vCopy = v.is_contiguous() ? null : v.contiguous().DetachFromDisposeScope();
        var (kc, vc) = (kCopy ?? k, vCopy ?? v);
        var output = empty_like(q);
        using (var kt = kc.transpose(2, 3))
        using (var mask = SoftcapMask.Readable(allowed))
            for (long t0 = 0, i = 0; t0 < t; t0 += plan.Rows, i++)
            {
                using var scope = NewDisposeScope();
                var n = Math.Min(plan.Rows, t - t0);
                var (c0, c) = plan.Keys[i];
                var qb = Grouped(q, kc, t0, n);
                var probs = SoftcapSoftmax.Forward(PerHead(qb.matmul(kt.narrow(3, c0, c)), q, n), Block(mask, t0, n, c0, c),
                    plan.Scale, plan.Cap);
                output.narrow(2, t0, n).copy_(PerHead(Grouped(probs, kc).matmul(vc.narrow(2, c0, c)), q, n));
            }
        if (Recording)
        {
            // The inputs where they are the GEMMs' own; copies otherwise (boxed), with the layout the gradients take.
            ctx.save_for_backward([q, kCopy is null ? k : null!, vCopy is null ? v : null!, allowed!]);
            ctx.save_data("kv", new SoftcapKv(new TensorBox(kCopy, vCopy), k.stride(), v.stride()));
        }
        else
        {
            kCopy?.Dispose();
            vCopy?.Dispose();
        }
        return output;
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, SoftcapAttentionPlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        var kvSaved = (SoftcapKv)ctx.get_data("kv");
        var copies = kvSaved.Copies.Take();
        using var kCopy = copies[0];
        using var vCopy = copies[1];
        var (q, k, v, allowed) = (saved[0]!, kCopy ?? saved[1]!, vCopy ?? saved[2]!, saved[3]);
        var t = q.shape[2];
        var dq = empty_like(q);
        // dK and dV gather every block's contribution: summed in float32, rounded once into the layout K and V came in.
        using var dk32 = zeros(k.shape, ScalarType.Float32, k.device);
        using var dv32 = zeros(v.shape, ScalarType.Float32, v.device);
        using var kt = k.transpose(2, 3);
        using var vt = v.transpose(2, 3);
        using var mask = SoftcapMask.Readable(allowed);
        for (long t0 = 0, i = 0; t0 < t; t0 += plan.Rows, i++)
        {
            using var scope = NewDisposeScope();
            var n = Math.Min(plan.Rows, t - t0);
            var (c0, c) = plan.Keys[i];
            var qb = Grouped(q, k, t0, n);             // each read twice: one copy per block
            var db = Grouped(gradOutput, k, t0, n);
            // The block's scores made again and dP = dout · vᵀ; the kernel gives the probabilities (for dV) and the
            // scores' gradient with the eager backward's roundings (SoftcapSoftmax.ReferenceBackward).
            var (probs, draw) = SoftcapSoftmax.Backward(PerHead(qb.matmul(kt.narrow(3, c0, c)), q, n),
                PerHead(db.matmul(vt.narrow(3, c0, c)), q, n), Block(mask, t0, n, c0, c), plan.Scale, plan.Cap);
            var (pg, dg) = (Grouped(probs, k), Grouped(draw, k));
            // In-place adds of the dtype's products to float32 (one pass each, no float32 copy of the product).
            dv32.narrow(2, c0, c).add_(pg.transpose(2, 3).matmul(db));
            dq.narrow(2, t0, n).copy_(PerHead(dg.matmul(k.narrow(2, c0, c)), q, n));
            dk32.narrow(2, c0, c).add_(dg.transpose(2, 3).matmul(qb));
        }
        var dk = empty_strided(k.shape, kvSaved.KStrides, k.dtype, k.device).copy_(dk32);
        var dv = empty_strided(v.shape, kvSaved.VStrides, v.dtype, v.device).copy_(dv32);
        return [dq, dk, dv, null];
    }

    /// <summary>Rows [t0, t0 + n) of x [B, H, T, D] as the GEMMs take them with grouped K [B, KV, L, D]: [B, KV, G·n, D],
    /// the G heads of a KV head one after another (a contiguous copy where the rows are not already laid out so).</summary>
    private static Tensor Grouped(Tensor x, Tensor k, long t0, long n)
    {
        using var rows = x.narrow(2, t0, n);
        return Grouped(rows.contiguous(), k);
    }

    /// <summary>A block's contiguous [B, H, n, X] scores, probabilities or rows as [B, KV, G·n, X] (a view).</summary>
    private static Tensor Grouped(Tensor perHead, Tensor k) =>
        perHead.view(perHead.shape[0], k.shape[1], perHead.shape[1] / k.shape[1] * perHead.shape[2], perHead.shape[3]);

    /// <summary>A GEMM's contiguous [B, KV, G·n, X] result as [B, H, n, X] (a view; H from q).</summary>
    private static Tensor PerHead(Tensor grouped, Tensor q, long n) => grouped.view(q.shape[0], q.shape[1], n, grouped.shape[3]);

    /// <summary>The mask of one block: rows [t0, t0 + n), key columns [c0, c0 + c).</summary>
    private static Tensor? Block(Tensor? allowed, long t0, long n, long c0, long c) => allowed?.narrow(2, t0, n).narrow(3, c0, c);

    /// <summary>Per block of <paramref name="rows"/> query rows: the first key column any of its rows may attend to
    /// (in any batch row or head) and the count up to the last such column. Without a mask, or for a block with no
    /// allowed key at all (its rows are NaN, as on the eager path), every key. One small device-to-host read, once per
    /// call (the plan carries the spans to backward).</summary>
    internal static (long Start, long Count)[] KeySpans(Tensor? allowed, long t, long l, long rows)
    {
        var blocks = (t + rows - 1) / rows;
        var spans = new (long Start, long Count)[blocks];
        Array.Fill(spans, (0L, l));
        if (allowed is null) return spans;
        using var scope = NewDisposeScope();
        var any = allowed.any(0).any(0);  // [T, L]
        var perBlock = stack(Enumerable.Range(0, (int)blocks).Select(i => any.narrow(0, i * rows, Math.Min(rows, t - i * rows)).any(0)).ToArray());
        var column = arange(l, ScalarType.Int64, allowed.device).unsqueeze(0);
        var first = column.masked_fill(perBlock.logical_not(), l).amin(1);
        var end = (column + 1).masked_fill(perBlock.logical_not(), 0).amax(1);
        var host = stack([first, end]).cpu();
        var f = host[0].data<long>().ToArray();
        var e = host[1].data<long>().ToArray();
        for (var i = 0; i < blocks; i++)
            if (e[i] > f[i]) spans[i] = (f[i], e[i] - f[i]);
        return spans;
    }
}
