namespace SlothSharp.Gguf;

/// <summary>
/// ggml's 32-element block formats (Q8_0, Q4_0, Q5_0, Q5_1), written from the block layouts and rounding rules of
/// ggml's reference quantizers. Every float operation keeps the reference's order and single precision, so the
/// bytes match llama.cpp's.
/// </summary>
internal static class LegacyQuants
{
    private const int Qk = 32;

    /// <summary>Block: f16 d = amax/127, then 32 int8 round-half-away(x/d).</summary>
    public static void Q8_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        for (int b = 0, nb = x.Length / Qk; b < nb; b++)
        {
            var xb = x.Slice(b * Qk, Qk);
            var yb = y.Slice(b * 34, 34);
            var amax = 0f;
            foreach (var v in xb) amax = Math.Max(amax, Math.Abs(v));
            var d = amax / 127f;
            var id = d != 0 ? 1f / d : 0f;
            GgmlQuantizer.WriteHalf(yb, 0, d);
            for (var j = 0; j < Qk; j++) yb[2 + j] = (byte)(sbyte)MathF.Round(xb[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>Block: f16 d = (value of largest magnitude)/-8; nibbles min(15, trunc(x/d + 8.5)); element j in the
    /// low nibble of byte j, element j+16 in its high nibble.</summary>
    public static void Q4_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        for (int b = 0, nb = x.Length / Qk; b < nb; b++)
        {
            var xb = x.Slice(b * Qk, Qk);
            var yb = y.Slice(b * 18, 18);
            float amax = 0, max = 0;
            foreach (var v in xb)
                if (amax < Math.Abs(v)) { amax = Math.Abs(v); max = v; }
            var d = max / -8f;
            var id = d != 0 ? 1f / d : 0f;
            GgmlQuantizer.WriteHalf(yb, 0, d);
            for (var j = 0; j < Qk / 2; j++)
            {
                var q0 = Math.Min(15, (int)(sbyte)(int)(xb[j] * id + 8.5f));
                var q1 = Math.Min(15, (int)(sbyte)(int)(xb[j + Qk / 2] * id + 8.5f));
                yb[2 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    /// <summary>Block: f16 d = (value of largest magnitude)/-16, 4 bytes holding each element's fifth bit, 16 bytes of
    /// low nibbles (as Q4_0).</summary>
    public static void Q5_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        for (int b = 0, nb = x.Length / Qk; b < nb; b++)
        {
            var xb = x.Slice(b * Qk, Qk);
            var yb = y.Slice(b * 22, 22);
            float amax = 0, max = 0;
            foreach (var v in xb)
                if (amax < Math.Abs(v)) { amax = Math.Abs(v); max = v; }
            var d = max / -16f;
            var id = d != 0 ? 1f / d : 0f;
            GgmlQuantizer.WriteHalf(yb, 0, d);
            uint qh = 0;
            for (var j = 0; j < Qk / 2; j++)
            {
                var q0 = Math.Min(31, (int)(sbyte)(int)(xb[j] * id + 16.5f));
                var q1 = Math.Min(31, (int)(sbyte)(int)(xb[j + Qk / 2] * id + 16.5f));
                yb[6 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 & 0x10) >> 4) << j;
                qh |= (uint)((q1 & 0x10) >> 4) << (j + Qk / 2);
            }
            BitConverter.TryWriteBytes(yb[2..], qh);
        }
    }

    /// <summary>Block: f16 d = (max-min)/31, f16 m = min, fifth bits, nibbles of trunc((x-min)/d + 0.5).</summary>
    public static void Q5_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        for (int b = 0, nb = x.Length / Qk; b < nb; b++)
        {
            var xb = x.Slice(b * Qk, Qk);
            var yb = y.Slice(b * 24, 24);
            float min = float.MaxValue, max = -float.MaxValue;
            foreach (var v in xb)
            {
                if (v < min) min = v;
                if (v > max) max = v;
            }
            var d = (max - min) / 31f;
            var id = d != 0 ? 1f / d : 0f;
            GgmlQuantizer.WriteHalf(yb, 0, d);
            GgmlQuantizer.WriteHalf(yb, 2, min);
            uint qh = 0;
            for (var j = 0; j < Qk / 2; j++)
            {
                var q0 = (int)(byte)(int)((xb[j] - min) * id + 0.5f);
                var q1 = (int)(byte)(int)((xb[j + Qk / 2] - min) * id + 0.5f);
                yb[8 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 & 0x10) >> 4) << j;
                qh |= (uint)((q1 & 0x10) >> 4) << (j + Qk / 2);
            }
            BitConverter.TryWriteBytes(yb[4..], qh);
        }
    }
}
