using System.Numerics;
using System.Runtime.Intrinsics;
using static SlothSharp.Gguf.GgmlQuantizer;

namespace SlothSharp.Gguf;

/// <summary>
/// ggml's 256-element super-block formats Q4_K, Q5_K and Q6_K, bit-compatible with ggml's reference quantizers
/// (no importance matrix). Q4_K/Q5_K: eight 32-element sub-blocks, each with an asymmetric (scale, min) pair fitted by
/// a small weighted least-squares search; the pairs are stored as 6-bit multiples of two f16 super-block scales.
/// Q6_K: sixteen 16-element sub-blocks with symmetric scales (weighted search around the max), stored as int8
/// multiples of one f16 scale. The float expressions keep the reference's evaluation order in single precision.
/// </summary>
internal static partial class KQuants
{
    private const int QkK = 256;
    private const float GroupMaxEps = 1e-15f;

    /// <summary>Q4_K rows: the lane-parallel path (KQuants.Lanes.cs) where 256-bit vectors are accelerated,
    /// else the scalar one; both give the same bytes.</summary>
    public static void Q4_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (Vector256.IsHardwareAccelerated) Q45KLanes(x, y, nmax: 15, blockBytes: 144, rmin: -1f, rdelta: 0.1f, nstep: 20);
        else Q4_KScalar(x, y);
    }

    /// <summary>Q5_K rows (vector path where accelerated, as <see cref="Q4_K"/>).</summary>
    public static void Q5_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (Vector256.IsHardwareAccelerated) Q45KLanes(x, y, nmax: 31, blockBytes: 176, rmin: -0.5f, rdelta: 0.1f, nstep: 15);
        else Q5_KScalar(x, y);
    }

    /// <summary>Q6_K rows (vector path where accelerated, as <see cref="Q4_K"/>).</summary>
    public static void Q6_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        if (Vector256.IsHardwareAccelerated) Q6KLanes(x, y);
        else Q6_KScalar(x, y);
    }

    /// <summary>The scalar Q4_K path: a line-by-line port of ggml's reference, kept as the portable fallback and as
    /// the oracle the lane-parallel path is tested against.</summary>
    internal static void Q4_KScalar(ReadOnlySpan<float> x, Span<byte> y) => Q45K(x, y, nmax: 15, blockBytes: 144, rmin: -1f, rdelta: 0.1f, nstep: 20);

    /// <summary>The scalar Q5_K path (see <see cref="Q4_KScalar"/>).</summary>
    internal static void Q5_KScalar(ReadOnlySpan<float> x, Span<byte> y) => Q45K(x, y, nmax: 31, blockBytes: 176, rmin: -0.5f, rdelta: 0.1f, nstep: 15);

    private static void Q45K(ReadOnlySpan<float> x, Span<byte> y, int nmax, int blockBytes, float rmin, float rdelta, int nstep)
    {
        Span<byte> l = stackalloc byte[QkK];
        Span<byte> laux = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        for (int b = 0, nb = x.Length / QkK; b < nb; b++)
        {
            var xb = x.Slice(b * QkK, QkK);
            var yb = y.Slice(b * blockBytes, blockBytes);
            yb.Clear();
            float maxScale = 0, maxMin = 0;
            for (var j = 0; j < 8; j++)
            {
                var xs = xb.Slice(32 * j, 32);
                var sumX2 = 0f;
                for (var i = 0; i < 32; i++) sumX2 += xs[i] * xs[i];
                var avX = MathF.Sqrt(sumX2 / 32);
                for (var i = 0; i < 32; i++) weights[i] = avX + Math.Abs(xs[i]);
                scales[j] = MakeQkx2Quants(32, nmax, xs, weights, l.Slice(32 * j, 32), out mins[j], laux, rmin, rdelta, nstep);
                if (scales[j] > maxScale) maxScale = scales[j];
                if (mins[j] > maxMin) maxMin = mins[j];
            }
            var (dAll, mAll) = PackScalesMins(yb, scales, mins, maxScale, maxMin);
            var sc = yb.Slice(4, 12);
            for (var j = 0; j < 8; j++)
            {
                ScaleMin(j, sc, out var s, out var m);
                var d = dAll * s;
                if (d == 0) continue;
                var dm = mAll * m;
                for (var i = 0; i < 32; i++)
                {
                    var q = NearestInt((xb[32 * j + i] + dm) / d);
                    l[32 * j + i] = (byte)Math.Max(0, Math.Min(nmax, q));
                }
            }
            PackLevels(yb, (ReadOnlySpan<byte>)l, nmax);
        }
    }

    /// <summary>Q6_K: the 256 levels (0..63) into the block's first 192 bytes: the low nibbles two a byte in ql (levels
    /// j and j + 64 of each 128-level half, and j + 32 with j + 96), the high two bits four a byte in qh. Shared by the
    /// scalar (sbyte levels) and lane-parallel (int) paths.</summary>
    private static void PackQ6Levels<T>(Span<byte> yb, ReadOnlySpan<T> l) where T : IBinaryInteger<T>
    {
        var ql = yb[..128];
        var qh = yb.Slice(128, 64);
        for (int j = 0, ol = 0, oh = 0; j < QkK; j += 128, ol += 64, oh += 32)
        {
            for (var i = 0; i < 32; i++)
            {
                int l1 = int.CreateTruncating(l[j + i]), l2 = int.CreateTruncating(l[j + i + 32]);
                int l3 = int.CreateTruncating(l[j + i + 64]), l4 = int.CreateTruncating(l[j + i + 96]);
                ql[ol + i] = (byte)((l1 & 0xF) | ((l3 & 0xF) << 4));
                ql[ol + i + 32] = (byte)((l2 & 0xF) | ((l4 & 0xF) << 4));
                qh[oh + i] = (byte)((l1 >> 4) | ((l2 >> 4) << 2) | ((l3 >> 4) << 4) | ((l4 >> 4) << 6));
            }
        }
    }

    /// <summary>Q4_K/Q5_K: the 256 levels into the block's bytes from 16 on (yb cleared before): Q4_K two 4-bit levels
    /// a byte (l[j] low, l[j + 32] high nibble per 64-level group); Q5_K the same low nibbles from byte 48 and each
    /// level's fifth bit in the 32-byte qh field. Shared by the scalar (byte levels) and lane-parallel (int) paths.</summary>
    private static void PackLevels<T>(Span<byte> yb, ReadOnlySpan<T> l, int nmax) where T : IBinaryInteger<T>
    {
        if (nmax == 15)
        {
            var qs = yb.Slice(16, 128);
            for (int j = 0, o = 0; j < QkK; j += 64, o += 32)
                for (var i = 0; i < 32; i++) qs[o + i] = (byte)(int.CreateTruncating(l[j + i]) | (int.CreateTruncating(l[j + i + 32]) << 4));
        }
        else
        {
            var qh = yb.Slice(16, 32);
            var ql = yb.Slice(48, 128);
            byte m1 = 1, m2 = 2;
            for (int n = 0, o = 0; n < QkK; n += 64, o += 32)
            {
                for (var j = 0; j < 32; j++)
                {
                    int l1 = int.CreateTruncating(l[n + j]), l2 = int.CreateTruncating(l[n + j + 32]);
                    if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                    if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                    ql[o + j] = (byte)(l1 | (l2 << 4));
                }
                m1 <<= 2;
                m2 <<= 2;
            }
        }
    }

    /// <summary>Q4_K/Q5_K: the 8 sub-blocks' scales and mins as 6-bit multiples of two f16 super-block factors
    /// (maxScale / 63, maxMin / 63), written into the block's bytes 0–15 (yb cleared before); returns the factors as
    /// stored, which the requantization divides by. Shared by the scalar and the lane-parallel paths.</summary>
    private static (float DAll, float MAll) PackScalesMins(Span<byte> yb, ReadOnlySpan<float> scales, ReadOnlySpan<float> mins,
                                                          float maxScale, float maxMin)
    {
        var invScale = maxScale > 0 ? 63f / maxScale : 0f;
        var invMin = maxMin > 0 ? 63f / maxMin : 0f;
        var sc = yb.Slice(4, 12);
        for (var j = 0; j < 8; j++)
        {
            var ls = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j]));
            var lm = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
            if (j < 4)
            {
                sc[j] = ls;
                sc[j + 4] = lm;
            }
            else
            {
                sc[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                sc[j - 4] |= (byte)((ls >> 4) << 6);
                sc[j] |= (byte)((lm >> 4) << 6);
            }
        }
        WriteHalf(yb, 0, maxScale / 63f);
        WriteHalf(yb, 2, maxMin / 63f);
        return (HalfRoundTrip(maxScale / 63f), HalfRoundTrip(maxMin / 63f));
    }

    /// <summary>Unpacks sub-block <paramref name="j"/>'s 6-bit scale and min from the 12-byte K-quant scale field.</summary>
    private static void ScaleMin(int j, ReadOnlySpan<byte> q, out byte d, out byte m)
    {
        if (j < 4)
        {
            d = (byte)(q[j] & 63);
            m = (byte)(q[j + 4] & 63);
        }
        else
        {
            d = (byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            m = (byte)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
    }

    /// <summary>
    /// Asymmetric fit of x ≈ scale·L + min (L in 0..nmax, min ≤ 0) minimizing the weighted squared error: start from
    /// the min/max grid, then try nstep+1 grid stretches and keep a closed-form least-squares (scale, min) when it
    /// lowers the error. Returns scale; <paramref name="theMin"/> gets -min (the stored, non-negative offset).
    /// </summary>
    private static float MakeQkx2Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> l,
        out float theMin, Span<byte> laux, float rmin, float rdelta, int nstep)
    {
        var min = x[0];
        var max = x[0];
        var sumW = weights[0];
        var sumX = sumW * x[0];
        for (var i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            var w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            l[..n].Clear();
            theMin = -min;
            return 0f;
        }
        var iscale = nmax / (max - min);
        var scale = 1 / iscale;
        var bestError = 0f;
        for (var i = 0; i < n; i++)
        {
            var q = NearestInt(iscale * (x[i] - min));
            l[i] = (byte)Math.Max(0, Math.Min(nmax, q));
            var diff = scale * l[i] + min - x[i];
            diff *= diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }
        for (var step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXl = 0;
            for (var i = 0; i < n; i++)
            {
                var q = NearestInt(iscale * (x[i] - min));
                q = Math.Max(0, Math.Min(nmax, q));
                laux[i] = (byte)q;
                var w = weights[i];
                sumL += w * q;
                sumL2 += w * q * q;
                sumXl += w * q * x[i];
            }
            var det = sumW * sumL2 - sumL * sumL;
            if (det > 0)
            {
                var thisScale = (sumW * sumXl - sumX * sumL) / det;
                var thisMin = (sumL2 * sumX - sumL * sumXl) / det;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXl / sumL2;
                }
                var curError = 0f;
                for (var i = 0; i < n; i++)
                {
                    var diff = thisScale * laux[i] + thisMin - x[i];
                    diff *= diff;
                    curError += weights[i] * diff;
                }
                if (curError < bestError)
                {
                    laux[..n].CopyTo(l);
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>The scalar Q6_K path (see <see cref="Q4_KScalar"/>).</summary>
    internal static void Q6_KScalar(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<sbyte> l = stackalloc sbyte[QkK];
        Span<float> scales = stackalloc float[16];
        for (int b = 0, nb = x.Length / QkK; b < nb; b++)
        {
            var xb = x.Slice(b * QkK, QkK);
            var yb = y.Slice(b * 210, 210);
            yb.Clear();
            float maxScale = 0, maxAbsScale = 0;
            for (var ib = 0; ib < 16; ib++)
            {
                var s = MakeQxQuants(16, 32, xb.Slice(16 * ib, 16), l.Slice(16 * ib, 16));
                scales[ib] = s;
                var a = Math.Abs(s);
                if (a > maxAbsScale) { maxAbsScale = a; maxScale = s; }
            }
            if (maxAbsScale < GroupMaxEps) continue; // all-zero block: every byte 0 (d = +0)
            var iscale = -128f / maxScale;
            WriteHalf(yb, 208, 1 / iscale);
            var scOut = yb.Slice(192, 16);
            for (var ib = 0; ib < 16; ib++) scOut[ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));
            var dAll = HalfRoundTrip(1 / iscale);
            for (var j = 0; j < 16; j++)
            {
                var d = dAll * (sbyte)scOut[j];
                if (d == 0) continue;
                for (var i = 0; i < 16; i++)
                {
                    var q = NearestInt(xb[16 * j + i] / d);
                    l[16 * j + i] = (sbyte)(Math.Max(-32, Math.Min(31, q)) + 32);
                }
            }
            PackQ6Levels(yb, (ReadOnlySpan<sbyte>)l);
        }
    }

    /// <summary>
    /// Symmetric fit x ≈ scale·(L - nmax), L in 0..2·nmax-1, weights x² (ggml's rmse_type 1, no importance matrix):
    /// start from the grid through the value of largest magnitude, try 18 neighbouring grids and keep the one with the
    /// best weighted least-squares fit. Returns the scale; <paramref name="l"/> gets L.
    /// </summary>
    private static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> l)
    {
        float max = 0, amax = 0;
        for (var i = 0; i < n; i++)
        {
            var ax = Math.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            l[..n].Clear();
            return 0f;
        }
        var iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (var i = 0; i < n; i++)
        {
            var q = NearestInt(iscale * x[i]);
            q = Math.Max(-nmax, Math.Min(nmax - 1, q));
            l[i] = (sbyte)(q + nmax);
            var w = x[i] * x[i];
            sumlx += w * x[i] * q;
            suml2 += w * q * q;
        }
        var scale = suml2 != 0 ? sumlx / suml2 : 0f;
        var best = scale * sumlx;
        for (var step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (var i = 0; i < n; i++)
            {
                var q = NearestInt(iscale * x[i]);
                q = Math.Max(-nmax, Math.Min(nmax - 1, q));
                var w = x[i] * x[i];
                sumlx += w * x[i] * q;
                suml2 += w * q * q;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (var i = 0; i < n; i++)
                {
                    var q = NearestInt(iscale * x[i]);
                    l[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, q)));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }
}
