using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>
/// The decoding engine against the model's own reference forward: both caches prefilled by CausalLM.Forward with the
/// same (left-padded) prompts, then greedy steps where the reference runs Forward(one token, cache) + Logits and the
/// engine runs Step; the logits of every step are compared, and the greedy ids must agree (the reference's choice is
/// fed to both, so a near tie cannot make the two runs diverge).
/// </summary>
internal static class DecodeParity
{
    /// <summary>Three prompts of different lengths (left padding, a batch of 3).</summary>
    public static readonly long[][] ThreePrompts = [[1, 5, 9, 13, 17, 21, 25], [1, 40, 41], [1, 7, 3, 99, 64]];

    /// <summary>Twelve 4-token prompts, more rows than the NF4 GEMV takes: the decode step's GEMM path.</summary>
    public static readonly long[][] TwelvePrompts = Enumerable.Range(0, 12).Select(i => new long[] { 1, 5 + i, 9, 13 + 2 * i }).ToArray();

    /// <summary>A checkpoint on CUDA in bfloat16 (NF4 projections unless <paramref name="quantize"/> is false).</summary>
    public static CausalLM LoadCudaBf16(string dir, bool quantize = true) =>
        CausalLM.FromPretrained(dir, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.BFloat16, Quantize = quantize });

    /// <summary>Left-padded prompts (pad id 0, mask 0) as [B, T] ids and mask.</summary>
    public static (Tensor Ids, Tensor Mask) LeftPadded(long[][] prompts, Device device)
    {
        var t = prompts.Max(p => p.Length);
        var ids = new long[prompts.Length * t];
        var mask = new long[prompts.Length * t];
        for (var r = 0; r < prompts.Length; r++)
            for (var c = 0; c < prompts[r].Length; c++)
            {
                ids[r * t + t - prompts[r].Length + c] = prompts[r][c];
                mask[r * t + t - prompts[r].Length + c] = 1;
            }
        return (tensor(ids).reshape(prompts.Length, t).to(device), tensor(mask).reshape(prompts.Length, t).to(device));
    }

    /// <summary>Runs the comparison; returns the largest |Δlogit| seen. <paramref name="minMargin"/>: greedy ids are
    /// only required to agree where the reference's top-2 margin is at least this (0: always).</summary>
    public static double Run(CausalLM model, long[][] prompts, int steps, double tolerance, double minMargin = 0, int? maxLength = null,
                             DecodeEngineOptions? options = null)
    {
        using var noGrad = no_grad();
        var b = prompts.Length;
        var length = maxLength ?? prompts.Max(p => p.Length) + steps + 1;
        using var refCache = model.NewKvCache(b, length);
        using var engCache = model.NewKvCache(b, length);
        using var engine = DecodeEngine.TryCreate(model, engCache, out var whyNot, options);
        Assert.That(whyNot, Is.Null);
        Assert.That(engine, Is.Not.Null);
        Tensor next;
        using (var scope = NewDisposeScope())
        {
            var (ids, mask) = LeftPadded(prompts, model.Device);
            var h = model.Forward(ids, mask, refCache);
            model.Forward(ids, mask, engCache);
            next = model.Logits(h.narrow(1, h.shape[1] - 1, 1)).squeeze(1).argmax(-1).MoveToOuterDisposeScope();
        }
        var worst = 0.0;
        for (var s = 0; s < steps; s++)
        {
            using var scope = NewDisposeScope();
            var positions = full([b], (long)engCache.Length, ScalarType.Int64, model.Device);
            var expected = model.Logits(model.Forward(next.unsqueeze(1), null, refCache)).squeeze(1);
            var actual = engine!.Step(next, positions);
            Assert.That(engCache.Length, Is.EqualTo(refCache.Length));
            Assert.That(actual.shape, Is.EqualTo(new long[] { b, model.Config.VocabSize }));
            var diff = (actual - expected).abs().max().item<float>();
            worst = Math.Max(worst, diff);
            Assert.That(diff, Is.LessThanOrEqualTo(tolerance), $"step {s}: max |Δlogit| {diff}");
            var refIds = expected.argmax(-1);
            var engIds = actual.argmax(-1);
            var top2 = expected.topk(2, -1).values;
            var margin = (top2.select(1, 0) - top2.select(1, 1)).cpu().data<float>().ToArray();
            var (r, e) = (refIds.cpu().data<long>().ToArray(), engIds.cpu().data<long>().ToArray());
            for (var row = 0; row < b; row++)
                if (margin[row] >= minMargin)
                    Assert.That(e[row], Is.EqualTo(r[row]), $"step {s}, row {row}: greedy id (reference margin {margin[row]})");
            next.Dispose();
            next = refIds.MoveToOuterDisposeScope();
        }
        next.Dispose();
        return worst;
    }
}
