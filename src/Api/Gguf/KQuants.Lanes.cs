using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static SlothSharp.Gguf.GgmlQuantizer;

namespace SlothSharp.Gguf;

/// <summary>
/// Lane-parallel K-quants: the same bytes as the scalar port, about an order of magnitude faster.
/// <para>
/// Why lanes run over sub-blocks and not over elements or candidates: the reference's scale searches sum over the
/// elements of a sub-block in element order (a vectorized reduction would reorder the sums and change the bytes), and
/// in Q4_K/Q5_K each candidate depends on the previous winner (a winning candidate moves <c>min</c>, which the next
/// candidate's grid uses), so candidates cannot run side by side either. The sub-blocks of a super-block, however, are
/// searched independently: a super-block's 8 (Q4_K/Q5_K) or 16 (Q6_K) sub-blocks are transposed so that vector lane
/// j holds sub-block j, and every lane then performs exactly the scalar code's float32 operations in the scalar
/// code's order (add, multiply, divide, sqrt are lane-wise IEEE operations; no fused multiply-add is ever formed);
/// the scalar branches become per-lane selects.
/// </para>
/// <para>
/// The searches' levels are not kept: the caller requantizes every sub-block with its stored (6-bit or int8) scale
/// anyway, so only a sub-block whose stored scale rounds to 0 needs the search's levels; those are recomputed from the
/// winning candidate's grid (same expression, same bytes).
/// </para>
/// </summary>
internal static partial class KQuants
{
    /// <summary>ggml's nearest_int on 8 lanes: round half to even through the mantissa of f + 1.5·2^23.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> NearestIntLanes(Vector256<float> f) =>
        ((f + Vector256.Create(12582912f)).AsInt32() & Vector256.Create(0x007fffff)) - Vector256.Create(0x00400000);

    /// <summary><see cref="NearestIntLanes"/> on 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> NearestIntLanes16(Vector512<float> f) =>
        ((f + Vector512.Create(12582912f)).AsInt32() & Vector512.Create(0x007fffff)) - Vector512.Create(0x00400000);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load(ref float origin, int offset) => Vector256.LoadUnsafe(ref origin, (nuint)offset);

    /// <summary>Q4_K (nmax 15) and Q5_K (nmax 31): the sub-block searches of one super-block in 8 lanes, or of two
    /// in 16 lanes where 512-bit vectors are accelerated (a second independent chain hides the latency of the
    /// element-order sums).</summary>
    private static void Q45KLanes(ReadOnlySpan<float> x, Span<byte> y, int nmax, int blockBytes, float rmin, float rdelta, int nstep) =>
        Q45KLanes(x, y, nmax, blockBytes, rmin, rdelta, nstep, Vector512.IsHardwareAccelerated ? 16 : 8);

    /// <summary>Q4_K with a chosen lane count (8 or 16; 16 needs accelerated 512-bit vectors to be fast): lets the
    /// tests compare both paths on a machine that would take only one.</summary>
    internal static void Q4_KLanes(ReadOnlySpan<float> x, Span<byte> y, int lanes) =>
        Q45KLanes(x, y, nmax: 15, blockBytes: 144, rmin: -1f, rdelta: 0.1f, nstep: 20, lanes);

    /// <summary>Q5_K with a chosen lane count (see <see cref="Q4_KLanes"/>).</summary>
    internal static void Q5_KLanes(ReadOnlySpan<float> x, Span<byte> y, int lanes) =>
        Q45KLanes(x, y, nmax: 31, blockBytes: 176, rmin: -0.5f, rdelta: 0.1f, nstep: 15, lanes);

    private static void Q45KLanes(ReadOnlySpan<float> x, Span<byte> y, int nmax, int blockBytes, float rmin, float rdelta, int nstep, int lanes)
    {
        if (lanes is not (8 or 16)) throw new ArgumentOutOfRangeException(nameof(lanes), lanes, "8 or 16 lanes");
        var group = lanes / 8;
        // Transposed super-blocks: xt[lanes*i + 8*s + j] is element i of sub-block j of super-block s of the group;
        // wt the same for the weights; qt one candidate's levels (as floats) in the same layout.
        Span<float> xt = stackalloc float[2 * QkK];
        Span<float> wt = stackalloc float[2 * QkK];
        Span<float> qt = stackalloc float[2 * QkK];
        Span<float> scales = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> levelIscale = stackalloc float[16];
        Span<float> levelMin = stackalloc float[16];
        Span<int> flatLanes = stackalloc int[16];
        Span<int> l = stackalloc int[QkK];
        for (int b = 0, nb = x.Length / QkK; b < nb; b += group)
        {
            var count = Math.Min(group, nb - b);
            for (var s = 0; s < group; s++)
            {
                // An odd last super-block fills the second half of the lanes with a copy (searched, not written).
                var xb = x.Slice((b + Math.Min(s, count - 1)) * QkK, QkK);
                for (var j = 0; j < 8; j++)
                    for (var i = 0; i < 32; i++) xt[lanes * i + 8 * s + j] = xb[32 * j + i];
            }
            var result = new SearchResult(scales, mins, levelIscale, levelMin, flatLanes);
            if (group == 2) SearchQkx2<Lanes16>(xt, wt, qt, nmax, rmin, rdelta, nstep, result);
            else SearchQkx2<Lanes8>(xt, wt, qt, nmax, rmin, rdelta, nstep, result);
            for (var s = 0; s < count; s++)
                FinishQ45K(x.Slice((b + s) * QkK, QkK), y.Slice((b + s) * blockBytes, blockBytes), nmax, result.Slice(8 * s), l);
        }
    }

    /// <summary>Per lane (sub-block) results of a scale search: the scale and the stored min (make_qkx2_quants) or the
    /// scale alone (make_qx_quants), the grid of the search's final levels (iscale and the min subtracted before
    /// scaling; 0 for make_qx_quants), and whether the sub-block was constant (levels all 0).</summary>
    private readonly ref struct SearchResult(Span<float> scales, Span<float> mins, Span<float> levelIscale, Span<float> levelMin, Span<int> flat)
    {
        public readonly Span<float> Scales = scales, Mins = mins, LevelIscale = levelIscale, LevelMin = levelMin;
        public readonly Span<int> Flat = flat;

        public SearchResult Slice(int start) => new(Scales[start..], Mins[start..], LevelIscale[start..], LevelMin[start..], Flat[start..]);
    }

    /// <summary>make_qkx2_quants (with Q4_K/Q5_K's weights) for 8 sub-blocks (one super-block; <see cref="Lanes8"/>)
    /// or 16 (two; <see cref="Lanes16"/>) in the lanes of one vector: element i of lane j at xt[Count·i + j].</summary>
    private static void SearchQkx2<TL>(Span<float> xt, Span<float> wt, Span<float> qt, int nmax, float rmin, float rdelta, int nstep, SearchResult result)
        where TL : struct, ILanes<TL>
    {
        ref var xr = ref MemoryMarshal.GetReference(xt);
        ref var wr = ref MemoryMarshal.GetReference(wt);
        ref var qr = ref MemoryMarshal.GetReference(qt);
        var n = TL.Count;
        var zero = TL.Zero;

        // Weights: av_x + |x| with av_x = sqrt(sum x² / 32), summed in element order.
        var sumX2 = zero;
        for (var i = 0; i < 32; i++)
        {
            var xi = TL.Load(ref xr, n * i);
            sumX2 += xi * xi;
        }
        var avX = TL.Sqrt(sumX2 / TL.Splat(32f));
        for (var i = 0; i < 32; i++) (avX + TL.Abs(TL.Load(ref xr, n * i))).Store(ref wr, n * i);

        var min = TL.Load(ref xr, 0);
        var max = min;
        var sumW = TL.Load(ref wr, 0);
        var sumX = sumW * min;
        for (var i = 1; i < 32; i++)
        {
            var xi = TL.Load(ref xr, n * i);
            var wi = TL.Load(ref wr, n * i);
            min = TL.Select(TL.Less(xi, min), xi, min);
            max = TL.Select(TL.Greater(xi, max), xi, max);
            sumW += wi;
            sumX += wi * xi;
        }
        min = TL.Select(TL.Greater(min, zero), zero, min);
        // Constant sub-blocks return scale 0 and levels 0 in the reference; their lanes compute along unused.
        var flat = TL.Equal(max, min);
        var iscale = TL.Splat(nmax) / (max - min);
        var scale = TL.Splat(1f) / iscale;
        var bestError = zero;
        for (var i = 0; i < 32; i++)
        {
            var xi = TL.Load(ref xr, n * i);
            var q = TL.Level(iscale * (xi - min), nmax);
            var diff = scale * q + min - xi;
            diff *= diff;
            bestError += TL.Load(ref wr, n * i) * diff;
        }
        // The grid of the levels the search ends with: iscale·(x - min) with the min in force when they were made.
        var bestIscale = iscale;
        var bestGridMin = min;
        for (var step = 0; step <= nstep; step++)
        {
            iscale = TL.Splat(rmin + rdelta * step + nmax) / (max - min);
            TL sumL = zero, sumL2 = zero, sumXl = zero;
            for (var i = 0; i < 32; i++)
            {
                var xi = TL.Load(ref xr, n * i);
                var q = TL.Level(iscale * (xi - min), nmax);
                q.Store(ref qr, n * i);
                var wq = TL.Load(ref wr, n * i) * q;
                sumL += wq;
                sumL2 += wq * q;
                sumXl += wq * xi;
            }
            var det = sumW * sumL2 - sumL * sumL;
            var solvable = TL.AndNot(TL.Greater(det, zero), flat);
            if (!solvable.Any) continue;
            var thisScale = (sumW * sumXl - sumX * sumL) / det;
            var thisMin = (sumL2 * sumX - sumL * sumXl) / det;
            var positive = TL.Greater(thisMin, zero);
            thisMin = TL.Select(positive, zero, thisMin);
            thisScale = TL.Select(positive, sumXl / sumL2, thisScale);
            var curError = zero;
            for (var i = 0; i < 32; i++)
            {
                var diff = thisScale * TL.Load(ref qr, n * i) + thisMin - TL.Load(ref xr, n * i);
                diff *= diff;
                curError += TL.Load(ref wr, n * i) * diff;
            }
            var better = solvable & TL.Less(curError, bestError);
            bestError = TL.Select(better, curError, bestError);
            scale = TL.Select(better, thisScale, scale);
            bestIscale = TL.Select(better, iscale, bestIscale);
            bestGridMin = TL.Select(better, min, bestGridMin);
            min = TL.Select(better, thisMin, min);
        }
        TL.Select(flat, zero, scale).CopyTo(result.Scales);
        (-min).CopyTo(result.Mins);
        bestIscale.CopyTo(result.LevelIscale);
        bestGridMin.CopyTo(result.LevelMin);
        flat.CopyMaskTo(result.Flat);
    }

    /// <summary>Q4_K/Q5_K's packing of one super-block from its 8 searched sub-blocks: the 6-bit scales and mins,
    /// the requantization with the stored scales, the 4-bit (and fifth-bit) levels.</summary>
    private static void FinishQ45K(ReadOnlySpan<float> xb, Span<byte> yb, int nmax, SearchResult r, Span<int> l)
    {
        yb.Clear();
        var scales = r.Scales;
        var mins = r.Mins;
        float maxScale = 0, maxMin = 0;
        for (var j = 0; j < 8; j++)
        {
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        var (dAll, mAll) = PackScalesMins(yb, scales, mins, maxScale, maxMin);
        var sc = yb.Slice(4, 12);
        ref var xbr = ref MemoryMarshal.GetReference(xb);
        var maxLevel = Vector256.Create(nmax);
        for (var j = 0; j < 8; j++)
        {
            ScaleMin(j, sc, out var s, out var m);
            var d = dAll * s;
            var lj = l.Slice(32 * j, 32);
            if (d == 0)
            {
                // The stored scale is 0: the reference keeps the search's levels.
                if (r.Flat[j] != 0) lj.Clear();
                else
                    for (var i = 0; i < 32; i++)
                        lj[i] = Math.Max(0, Math.Min(nmax, NearestInt(r.LevelIscale[j] * (xb[32 * j + i] - r.LevelMin[j]))));
                continue;
            }
            var dm = Vector256.Create(mAll * m);
            var dv = Vector256.Create(d);
            for (var i = 0; i < 32; i += 8)
            {
                var q = NearestIntLanes((Vector256.LoadUnsafe(ref xbr, (nuint)(32 * j + i)) + dm) / dv);
                Vector256.Min(maxLevel, Vector256.Max(Vector256<int>.Zero, q)).CopyTo(lj.Slice(i, 8));
            }
        }
        PackLevels(yb, (ReadOnlySpan<int>)l, nmax);
    }

    /// <summary>Q6_K with the 16 sub-block searches of a super-block in two groups of 8 lanes.</summary>
    private static void Q6KLanes(ReadOnlySpan<float> x, Span<byte> y)
    {
        const int nmax = 32;
        // xt[16*i + ib] is element i of sub-block ib.
        Span<float> xt = stackalloc float[QkK];
        Span<int> l = stackalloc int[QkK];
        Span<float> scales = stackalloc float[16];
        Span<float> levelIscale = stackalloc float[16];
        Span<int> flatLanes = stackalloc int[16];
        ref var xr = ref MemoryMarshal.GetReference(xt);
        var zero = Vector256<float>.Zero;
        var lo = Vector256.Create(-nmax);
        var hi = Vector256.Create(nmax - 1);
        for (int b = 0, nb = x.Length / QkK; b < nb; b++)
        {
            var xb = x.Slice(b * QkK, QkK);
            var yb = y.Slice(b * 210, 210);
            yb.Clear();
            for (var ib = 0; ib < 16; ib++)
                for (var i = 0; i < 16; i++) xt[16 * i + ib] = xb[16 * ib + i];

            // make_qx_quants (rmse_type 1, weights x²), sub-blocks 8·g .. 8·g+7 in lanes.
            for (var g = 0; g < 2; g++)
            {
                var o = 8 * g;
                Vector256<float> amax = zero, max = zero;
                for (var i = 0; i < 16; i++)
                {
                    var xi = Load(ref xr, 16 * i + o);
                    var ax = Vector256.Abs(xi);
                    var larger = Vector256.GreaterThan(ax, amax);
                    amax = Vector256.ConditionalSelect(larger, ax, amax);
                    max = Vector256.ConditionalSelect(larger, xi, max);
                }
                var flat = Vector256.LessThan(amax, Vector256.Create(GroupMaxEps));
                var iscale = Vector256.Create((float)-nmax) / max;
                Vector256<float> sumlx = zero, suml2 = zero;
                for (var i = 0; i < 16; i++)
                {
                    var xi = Load(ref xr, 16 * i + o);
                    var q = Vector256.ConvertToSingle(Vector256.Max(lo, Vector256.Min(hi, NearestIntLanes(iscale * xi))));
                    var w = xi * xi;
                    sumlx += w * xi * q;
                    suml2 += w * q * q;
                }
                var scale = Vector256.ConditionalSelect(Vector256.Equals(suml2, zero), zero, sumlx / suml2);
                var best = scale * sumlx;
                var bestIscale = iscale;
                for (var step = -9; step <= 9; step++)
                {
                    if (step == 0) continue;
                    iscale = Vector256.Create(-(nmax + 0.1f * step)) / max;
                    sumlx = suml2 = zero;
                    for (var i = 0; i < 16; i++)
                    {
                        var xi = Load(ref xr, 16 * i + o);
                        var q = Vector256.ConvertToSingle(Vector256.Max(lo, Vector256.Min(hi, NearestIntLanes(iscale * xi))));
                        var w = xi * xi;
                        sumlx += w * xi * q;
                        suml2 += w * q * q;
                    }
                    var better = Vector256.GreaterThan(suml2, zero) & Vector256.GreaterThan(sumlx * sumlx, best * suml2);
                    var newScale = sumlx / suml2;
                    scale = Vector256.ConditionalSelect(better, newScale, scale);
                    best = Vector256.ConditionalSelect(better, newScale * sumlx, best);
                    bestIscale = Vector256.ConditionalSelect(better, iscale, bestIscale);
                }
                Vector256.ConditionalSelect(flat, zero, scale).CopyTo(scales[o..]);
                bestIscale.CopyTo(levelIscale[o..]);
                flat.AsInt32().CopyTo(flatLanes[o..]);
            }

            float maxScale = 0, maxAbsScale = 0;
            for (var ib = 0; ib < 16; ib++)
            {
                var a = Math.Abs(scales[ib]);
                if (a > maxAbsScale) { maxAbsScale = a; maxScale = scales[ib]; }
            }
            if (maxAbsScale < GroupMaxEps) continue; // all-zero block: every byte 0 (d = +0)
            var iscaleAll = -128f / maxScale;
            WriteHalf(yb, 208, 1 / iscaleAll);
            var scOut = yb.Slice(192, 16);
            for (var ib = 0; ib < 16; ib++) scOut[ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscaleAll * scales[ib]));
            var dAll = HalfRoundTrip(1 / iscaleAll);
            ref var xbr = ref MemoryMarshal.GetReference(xb);
            var lo6 = Vector256.Create(-32);
            var hi6 = Vector256.Create(31);
            var offset = Vector256.Create(32);
            for (var j = 0; j < 16; j++)
            {
                var d = dAll * (sbyte)scOut[j];
                var lj = l.Slice(16 * j, 16);
                if (d == 0)
                {
                    // The stored scale is 0: the reference keeps the search's levels.
                    if (flatLanes[j] != 0) lj.Clear();
                    else
                        for (var i = 0; i < 16; i++)
                            lj[i] = nmax + Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(levelIscale[j] * xb[16 * j + i])));
                    continue;
                }
                var dv = Vector256.Create(d);
                for (var i = 0; i < 16; i += 8)
                {
                    var q = NearestIntLanes(Load(ref xbr, 16 * j + i) / dv);
                    (Vector256.Max(lo6, Vector256.Min(hi6, q)) + offset).CopyTo(lj.Slice(i, 8));
                }
            }
            PackQ6Levels(yb, (ReadOnlySpan<int>)l);
        }
    }
}
