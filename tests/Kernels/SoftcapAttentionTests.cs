using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Gemma 2's soft-capped attention computed block by block with the scores made again in backward
/// (<see cref="SoftcapAttention"/>, the fused kernel set's) against transformers' eager expression through autograd:
/// outputs and the gradients of q and of the grouped k and v (GQA: the blocks take them grouped, the eager path
/// expanded, as transformers' repeat_kv), with causal, padding and sliding-window masks,
/// blocks that do not divide the rows, one block, and no mask; float32, bfloat16 and float16. On each device: the
/// blocks' soft-cap and softmax run in the SoftcapSoftmax kernels there.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class SoftcapAttentionTests(string deviceName) : DeviceFixture(deviceName)
{
    private static Tensor Eager(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap)
    {
        var scores = (q.matmul(k.transpose(2, 3)) * scale / cap).tanh() * cap;
        if (allowed is not null) scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        return scores.softmax(-1, ScalarType.Float32).to(q.dtype).matmul(v);
    }

    /// <summary>Causal over the last t of l keys, some keys of row 1 padding, and (window > 0) only the last `window`
    /// positions; every query row keeps at least its own key.</summary>
    private Tensor Mask(long b, long t, long l, int window) => MaskOnCpu(b, t, l, window).to(Dev);

    private static Tensor MaskOnCpu(long b, long t, long l, int window)
    {
        var qpos = arange(l - t, l, 1, ScalarType.Int64).view(1, 1, t, 1);
        var kpos = arange(0, l, 1, ScalarType.Int64).view(1, 1, 1, l);
        var allowed = kpos.le(qpos).expand(b, 1, t, l).clone();
        if (window > 0) allowed = allowed & kpos.gt(qpos - window);
        allowed[1, 0, TensorIndex.Colon, TensorIndex.Slice(0, 3)] = tensor(false);   // row 1: three padding keys...
        var own = kpos.eq(qpos).expand(b, 1, t, l);
        return allowed | own;                                                         // ...but a row always sees itself
    }

    [TestCase(ScalarType.Float32, 5, 0, true)]
    [TestCase(ScalarType.Float32, 64, 0, true)]
    [TestCase(ScalarType.Float32, 3, 6, true)]
    [TestCase(ScalarType.Float32, 7, 0, false)]
    [TestCase(ScalarType.BFloat16, 5, 6, true)]
    [TestCase(ScalarType.Float16, 4, 0, true)]
    public void MatchesTheEagerPathAndItsGradients(ScalarType dtype, int rows, int window, bool masked)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        const long b = 2, heads = 4, kvHeads = 2, t = 23, l = 29, d = 16;
        const double scale = 0.25, cap = 5.0;
        var q0 = (randn(b, heads, t, d) * 2).to(dtype).to(Dev).requires_grad_();
        var k0 = (randn(b, kvHeads, l, d) * 2).to(dtype).to(Dev).requires_grad_();
        var v0 = randn(b, kvHeads, l, d).to(dtype).to(Dev).requires_grad_();
        Tensor Expand(Tensor x) => x.unsqueeze(2).expand(b, kvHeads, heads / kvHeads, l, d).reshape(b, heads, l, d);
        var allowed = masked ? Mask(b, t, l, window) : null;
        var dout = randn(b, heads, t, d).to(dtype).to(Dev);

        (Tensor Y, Tensor[] Grads) Run(bool blocks)
        {
            foreach (var x in new[] { q0, k0, v0 }) x.grad = null;
            var y = blocks ? SoftcapAttention.Apply(q0, k0, v0, allowed, scale, cap, rows)
                           : Eager(q0, Expand(k0), Expand(v0), allowed, scale, cap);
            y.backward([dout]);
            return (y.detach().to(ScalarType.Float32), [q0.grad!.to(ScalarType.Float32), k0.grad!.to(ScalarType.Float32), v0.grad!.to(ScalarType.Float32)]);
        }
        var (expected, eg) = Run(false);
        var (actual, ag) = Run(true);
        var (outTol, gradTol) = dtype == ScalarType.Float32 ? (1e-6, 1e-5) : (1e-2, 3e-2);
        Assert.That((actual - expected).abs().max().cpu().item<float>(), Is.LessThanOrEqualTo(outTol), "output");
        string[] names = ["dq", "dk", "dv"];
        for (var i = 0; i < 3; i++)
            Assert.That(TestEnv.RelativeError(ag[i], eg[i]), Is.LessThanOrEqualTo(gradTol), names[i]);
    }

    /// <summary>Grouped K and V (GQA, [B, KV, L, D], each KV head serving H/KV consecutive query heads) as a decoder
    /// layer passes them, transposed views of [B, L, KV, D] projections with q one of [B, T, H, D]: the same output and
    /// gradients as the blocks over K and V expanded to every head (contiguous), and the gradients laid out as their
    /// inputs (no copy on the way back to the projections).</summary>
    [TestCase(ScalarType.Float32)]
    [TestCase(ScalarType.BFloat16)]
    public void GroupedKeysAndValuesMatchTheExpandedOnes(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        manual_seed(13);
        const long b = 2, heads = 6, kvHeads = 2, t = 19, d = 16, rows = 5;
        const double scale = 0.25, cap = 5.0;
        var qp = (randn(b, t, heads, d) * 2).to(dtype).to(Dev).requires_grad_();
        var kp = (randn(b, t, kvHeads, d) * 2).to(dtype).to(Dev).requires_grad_();
        var vp = randn(b, t, kvHeads, d).to(dtype).to(Dev).requires_grad_();
        var allowed = Mask(b, t, t, 7);
        var dout = randn(b, heads, t, d).to(dtype).to(Dev);
        Tensor Expand(Tensor x) => x.unsqueeze(2).expand(b, kvHeads, heads / kvHeads, t, d).reshape(b, heads, t, d);

        (Tensor Y, Tensor[] Grads) Run(bool grouped)
        {
            foreach (var x in new[] { qp, kp, vp }) x.grad = null;
            var (q, k, v) = (qp.transpose(1, 2), kp.transpose(1, 2), vp.transpose(1, 2));
            var y = grouped ? SoftcapAttention.Apply(q, k, v, allowed, scale, cap, rows)
                            : SoftcapAttention.Apply(q.contiguous(), Expand(k).contiguous(), Expand(v).contiguous(), allowed, scale, cap, rows);
            y.backward([dout]);
            return (y.detach().to(ScalarType.Float32), [qp.grad!.to(ScalarType.Float32), kp.grad!.to(ScalarType.Float32), vp.grad!.to(ScalarType.Float32)]);
        }
        var (expected, eg) = Run(false);
        var (actual, ag) = Run(true);
        // The same products; a KV head's gradient is summed over its query heads inside one GEMM instead of after
        // the rounding of each head's share.
        var (outTol, gradTol) = dtype == ScalarType.Float32 ? (1e-6, 1e-5) : (0.0, 1e-2);
        Assert.That((actual - expected).abs().max().cpu().item<float>(), Is.LessThanOrEqualTo(outTol), "output");
        string[] names = ["dq", "dk", "dv"];
        for (var i = 0; i < 3; i++)
            Assert.That(TestEnv.RelativeError(ag[i], eg[i]), Is.LessThanOrEqualTo(gradTol), names[i]);

        // The output and the gradients keep the layout of q, k and v.
        var q1 = qp.detach().transpose(1, 2).requires_grad_();
        var k1 = kp.detach().transpose(1, 2).requires_grad_();
        var v1 = vp.detach().transpose(1, 2).requires_grad_();
        var y1 = SoftcapAttention.Apply(q1, k1, v1, allowed, scale, cap, rows);
        Assert.That(y1.stride(), Is.EqualTo(q1.stride()), "output");
        y1.backward([dout]);
        Assert.That(q1.grad!.stride(), Is.EqualTo(q1.stride()), "dq");
        Assert.That(k1.grad!.stride(), Is.EqualTo(k1.stride()), "dk");
        Assert.That(v1.grad!.stride(), Is.EqualTo(v1.stride()), "dv");
    }

    /// <summary>A cache of key spans computes them once per block size for its mask, the spans of KeySpans.</summary>
    [Test]
    public void TheSpanCacheComputesOncePerBlockSize()
    {
        using var scope = NewDisposeScope();
        const long t = 10, l = 14;
        var allowed = Mask(2, t, l, 3);
        var cache = new SoftcapSpanCache();
        Assert.That(cache.Get(allowed, t, l, 4), Is.EqualTo(SoftcapAttentionFunction.KeySpans(allowed, t, l, 4)));
        Assert.That(cache.Get(allowed, t, l, 4), Is.SameAs(cache.Get(allowed, t, l, 4)));
        Assert.That(cache.Computed, Is.EqualTo(1));
        Assert.That(cache.Get(allowed, t, l, 3), Is.EqualTo(SoftcapAttentionFunction.KeySpans(allowed, t, l, 3)));
        Assert.That(cache.Computed, Is.EqualTo(2));
    }

    /// <summary>A mask whose key columns are strided (a transposed view) is made contiguous once per call; one
    /// broadcast over batch rows too: the same output and gradients as the contiguous mask.</summary>
    [Test]
    public void StridedAndBroadcastMasksGiveTheSameResult()
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        const long b = 2, h = 2, t = 9, l = 13, d = 8;
        var q = randn(b, h, t, d).to(Dev).requires_grad_();
        var k = randn(b, h, l, d).to(Dev);
        var v = randn(b, h, l, d).to(Dev);
        var mask = Mask(2, t, l, 4).narrow(0, 0, 1);  // batch row 0 (no padding), for every batch row
        var dout = randn(b, h, t, d).to(Dev);
        Tensor[] Run(Tensor allowed)
        {
            q.grad = null;
            var y = SoftcapAttention.Apply(q, k, v, allowed, 0.3, 5, 4);
            y.backward([dout]);
            return [y.detach(), q.grad!.clone()];
        }
        var expected = Run(mask.expand(b, 1, t, l).contiguous());
        var strided = Run(mask.transpose(2, 3).contiguous().transpose(2, 3));
        var broadcast = Run(mask);
        for (var i = 0; i < 2; i++)
        {
            Assert.That(TestEnv.BitEqual(strided[i], expected[i]), Is.True, $"strided columns {i}");
            Assert.That(TestEnv.BitEqual(broadcast[i], expected[i]), Is.True, $"broadcast batch {i}");
        }
    }

    /// <summary>Each block works on the key columns its rows may attend to: a causal mask over the last t of l keys
    /// gives block i the columns up to its last row's position, a sliding window starts later, a block whose rows
    /// attend to nothing (and no mask) keeps every key.</summary>
    [Test]
    public void BlocksSkipTheKeysTheirRowsCannotSee()
    {
        using var scope = NewDisposeScope();
        const long t = 10, l = 14, rows = 4;  // blocks: rows 0-3, 4-7, 8-9 at positions 4.., i.e. keys <= 7, 11, 13
        var qpos = arange(l - t, l, 1, ScalarType.Int64).view(1, 1, t, 1);
        var kpos = arange(0, l, 1, ScalarType.Int64).view(1, 1, 1, l);
        var causal = kpos.le(qpos).expand(2, 1, t, l);
        Assert.That(SoftcapAttentionFunction.KeySpans(causal, t, l, rows), Is.EqualTo(new[] { (0L, 8L), (0L, 12L), (0L, 14L) }));
        var window = (kpos.le(qpos) & kpos.gt(qpos - 3)).expand(2, 1, t, l);  // keys (pos - 3, pos]
        Assert.That(SoftcapAttentionFunction.KeySpans(window, t, l, rows), Is.EqualTo(new[] { (2L, 6L), (6L, 6L), (10L, 4L) }));
        var none = causal.clone();
        none.narrow(2, 4, 4).fill_(false);
        Assert.That(SoftcapAttentionFunction.KeySpans(none, t, l, rows)[1], Is.EqualTo((0L, l)), "a block that sees nothing keeps every key");
        Assert.That(SoftcapAttentionFunction.KeySpans(null, t, l, rows), Is.EqualTo(new[] { (0L, l), (0L, l), (0L, l) }));
    }

    [Test]
    public void BadArgumentsAreRefusedByName()
    {
        using var scope = NewDisposeScope();
        var q = randn(1, 2, 4, 8);
        var k = randn(1, 2, 6, 8);
        Assert.That(() => SoftcapAttention.Apply(q, k, randn(1, 2, 5, 8), null, 1, 5), Throws.ArgumentException.With.Message.Contains("must be [1, KV, L, 8] with 2 a multiple of KV"));
        Assert.That(() => SoftcapAttention.Apply(q, randn(1, 3, 6, 8), randn(1, 3, 6, 8), null, 1, 5), Throws.ArgumentException.With.Message.Contains("a multiple of KV"));
        Assert.That(() => SoftcapAttention.Apply(q, k, k, ones(1, 1, 4, 5, ScalarType.Bool), 1, 5), Throws.ArgumentException.With.Message.Contains("allowed"));
        Assert.That(() => SoftcapAttention.Apply(q, k, k, null, 1, 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => SoftcapAttention.Apply(q, k.to(ScalarType.Float64), k, null, 1, 5), Throws.ArgumentException);
    }
}
