using System.Runtime.Intrinsics;
using NUnit.Framework;
using SlothSharp.Gguf;

namespace SlothSharp.Tests;

/// <summary>
/// The lane-parallel K-quants (used where 256-bit vectors are accelerated) against the scalar port of ggml's reference
/// quantizers, byte for byte, on rows built to reach every branch: constant and all-zero sub-blocks, all-positive and
/// all-negative rows (min clamped to 0, the least-squares min turning positive), outliers, subnormal and huge values,
/// values on the quantization grid (ties), and sub-blocks so much smaller than their neighbours that their stored scale
/// rounds to 0 (where the search's own levels are kept). The llama.cpp comparisons in
/// <see cref="GgufQuantizerCompatTests"/> check the lane path against llama.cpp itself on random models.
/// </summary>
public class GgufKQuantLanesTests
{
    private delegate void Quantizer(ReadOnlySpan<float> x, Span<byte> y);

    /// <summary>Every lane path: Q4_K/Q5_K search one super-block in 8 lanes, or two in 16 (where 512-bit vectors are
    /// accelerated; the dispatching entry point takes that one here); Q6_K as dispatched.</summary>
    private static readonly (string Name, Quantizer Lanes, Quantizer Scalar, int BlockBytes)[] Types =
    [
        ("Q4_K x8", (x, y) => KQuants.Q4_KLanes(x, y, 8), KQuants.Q4_KScalar, 144),
        ("Q4_K x16", (x, y) => KQuants.Q4_KLanes(x, y, 16), KQuants.Q4_KScalar, 144),
        ("Q4_K", KQuants.Q4_K, KQuants.Q4_KScalar, 144),
        ("Q5_K x8", (x, y) => KQuants.Q5_KLanes(x, y, 8), KQuants.Q5_KScalar, 176),
        ("Q5_K x16", (x, y) => KQuants.Q5_KLanes(x, y, 16), KQuants.Q5_KScalar, 176),
        ("Q5_K", KQuants.Q5_K, KQuants.Q5_KScalar, 176),
        ("Q6_K", KQuants.Q6_K, KQuants.Q6_KScalar, 210),
    ];

    private const int Kinds = 18;
    private const int RowLength = 2304;

    /// <summary>Row <paramref name="r"/> of the test set: 2,304 values (9 super-blocks: an odd count, so the 16-lane
    /// path also searches a lone last super-block) of kind r mod 18.</summary>
    internal static float[] EdgeCaseRow(int r, Random rng)
    {
        float Normal() => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        var row = new float[RowLength];
        for (var i = 0; i < row.Length; i++)
        {
            row[i] = (r % Kinds) switch
            {
                0 => 0f,
                1 => 0.5f,
                2 => -0.25f,
                3 => Math.Abs(Normal()) * 0.02f,
                4 => -Math.Abs(Normal()) * 0.02f,
                5 => (i % 97 == 0 ? 50f : 1f) * Normal() * 0.02f,
                6 => Normal() * 1e-20f,
                7 => Normal() * 1e-39f,                                        // subnormal
                8 => MathF.Round(Normal() * 8) / 16f,                          // on a grid: rounding ties
                9 => (i / 32) % 3 == 0 ? 0f : Normal(),                         // constant 32-sub-blocks
                10 => Normal() * 1000f,
                11 => (i / 16) % 2 == 0 ? 0f : Normal() * 0.01f,               // constant 16-sub-blocks
                12 => rng.Next(3) - 1,
                13 => MathF.Round(Normal() * 31) / 31f,
                14 => Normal() * MathF.Pow(10, -((i / 32) % 8)),               // stored scales that round to 0
                15 => Normal() * MathF.Pow(10, -((i / 16) % 6)) + ((i / 16) % 3 == 0 ? 0.5f : 0f),
                16 => Normal() * MathF.Pow(4, -((i / 16) % 10)) - 0.1f,
                _ => Normal() * 0.02f,
            };
        }
        return row;
    }

    [Test]
    public void LanePathMatchesScalarPathBytes()
    {
        if (!Vector256.IsHardwareAccelerated) Assert.Ignore("256-bit vectors are not accelerated here: the K-quants take the scalar path");
        var rng = new Random(20240924);
        var rows = Enumerable.Range(0, 20 * Kinds).Select(r => EdgeCaseRow(r, rng)).ToList();
        var failures = new List<string>();
        foreach (var (name, lanes, scalar, blockBytes) in Types)
        {
            var expected = new byte[RowLength / 256 * blockBytes];
            var actual = new byte[expected.Length];
            for (var r = 0; r < rows.Count; r++)
            {
                scalar(rows[r], expected);
                actual.AsSpan().Fill(0xA5);   // stale bytes must all be overwritten
                lanes(rows[r], actual);
                var same = expected.AsSpan().CommonPrefixLength(actual);
                if (same != expected.Length) failures.Add($"{name}: row {r} (kind {r % Kinds}) differs first at byte {same}");
            }
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
    }

    /// <summary>The test set reaches the branch it is built for: with the scalar path, some non-constant sub-blocks get
    /// a stored scale of 0 (Q4_K's 6-bit scale field), so the kept-levels branch is compared above.</summary>
    [Test]
    public void EdgeCasesReachZeroStoredScales()
    {
        var rng = new Random(5);
        var zeroScaled = 0;
        for (var r = 0; r < 2 * Kinds; r++)
        {
            var row = EdgeCaseRow(r, rng);
            var bytes = new byte[RowLength / 256 * 144];
            KQuants.Q4_KScalar(row, bytes);
            for (var b = 0; b < RowLength / 256; b++)
            {
                var sc = bytes.AsSpan(b * 144 + 4, 12);
                for (var j = 0; j < 4; j++)
                {
                    var sub = row.AsSpan(b * 256 + 32 * j, 32);
                    if ((sc[j] & 63) == 0 && sub.ToArray().Distinct().Count() > 1) zeroScaled++;
                }
            }
        }
        Assert.That(zeroScaled, Is.GreaterThan(0));
    }
}
