using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SlothSharp.Gguf;

internal static partial class KQuants
{
    /// <summary>
    /// The float lanes a scale search runs in (one sub-block a lane): 8 in a <see cref="Vector256{T}"/> or 16 in a
    /// <see cref="Vector512{T}"/>. <see cref="SearchQkx2{TLanes}"/> is written once over this; each member is the
    /// vector operation its name says, the same one the search used when it was written per width, so the bytes do not
    /// depend on which width runs. Masks are float lanes with every bit set or clear.
    /// </summary>
    private interface ILanes<TSelf> where TSelf : struct, ILanes<TSelf>
    {
        static abstract int Count { get; }
        static abstract TSelf Zero { get; }
        static abstract TSelf Splat(float value);
        static abstract TSelf Load(ref float origin, int offset);
        void Store(ref float origin, int offset);
        void CopyTo(Span<float> destination);
        /// <summary>The lanes' mask bits as int32 (-1 or 0 each).</summary>
        void CopyMaskTo(Span<int> destination);
        /// <summary>Whether any lane's mask is set.</summary>
        bool Any { get; }

        static abstract TSelf operator +(TSelf a, TSelf b);
        static abstract TSelf operator -(TSelf a, TSelf b);
        static abstract TSelf operator *(TSelf a, TSelf b);
        static abstract TSelf operator /(TSelf a, TSelf b);
        static abstract TSelf operator -(TSelf a);
        static abstract TSelf operator &(TSelf a, TSelf b);
        static abstract TSelf Sqrt(TSelf a);
        static abstract TSelf Abs(TSelf a);
        static abstract TSelf Select(TSelf mask, TSelf whenSet, TSelf whenClear);
        static abstract TSelf Less(TSelf a, TSelf b);
        static abstract TSelf Greater(TSelf a, TSelf b);
        static abstract TSelf Equal(TSelf a, TSelf b);
        /// <summary>a and not b.</summary>
        static abstract TSelf AndNot(TSelf a, TSelf b);
        /// <summary>ggml's level of each lane: clamp(nearest_int(v), 0, nmax), as a float.</summary>
        static abstract TSelf Level(TSelf v, int nmax);
    }

    /// <summary>8 lanes: <see cref="Vector256{T}"/>.</summary>
    private readonly struct Lanes8(Vector256<float> v) : ILanes<Lanes8>
    {
        private readonly Vector256<float> v = v;

        public static int Count => 8;
        public static Lanes8 Zero => new(Vector256<float>.Zero);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 Splat(float value) => new(Vector256.Create(value));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 Load(ref float origin, int offset) => new(Vector256.LoadUnsafe(ref origin, (nuint)offset));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(ref float origin, int offset) => v.StoreUnsafe(ref origin, (nuint)offset);
        public void CopyTo(Span<float> destination) => v.CopyTo(destination);
        public void CopyMaskTo(Span<int> destination) => v.AsInt32().CopyTo(destination);
        public bool Any => v.ExtractMostSignificantBits() != 0;

        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 operator +(Lanes8 a, Lanes8 b) => new(a.v + b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 operator -(Lanes8 a, Lanes8 b) => new(a.v - b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 operator *(Lanes8 a, Lanes8 b) => new(a.v * b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 operator /(Lanes8 a, Lanes8 b) => new(a.v / b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 operator -(Lanes8 a) => new(-a.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 operator &(Lanes8 a, Lanes8 b) => new(a.v & b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 Sqrt(Lanes8 a) => new(Vector256.Sqrt(a.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 Abs(Lanes8 a) => new(Vector256.Abs(a.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 Select(Lanes8 mask, Lanes8 whenSet, Lanes8 whenClear) => new(Vector256.ConditionalSelect(mask.v, whenSet.v, whenClear.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 Less(Lanes8 a, Lanes8 b) => new(Vector256.LessThan(a.v, b.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 Greater(Lanes8 a, Lanes8 b) => new(Vector256.GreaterThan(a.v, b.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 Equal(Lanes8 a, Lanes8 b) => new(Vector256.Equals(a.v, b.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes8 AndNot(Lanes8 a, Lanes8 b) => new(Vector256.AndNot(a.v, b.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Lanes8 Level(Lanes8 x, int nmax) =>
            new(Vector256.ConvertToSingle(Vector256.Min(Vector256.Create(nmax), Vector256.Max(Vector256<int>.Zero, NearestIntLanes(x.v)))));
    }

    /// <summary>16 lanes: <see cref="Vector512{T}"/> (two super-blocks' sub-blocks where 512-bit vectors are
    /// accelerated).</summary>
    private readonly struct Lanes16(Vector512<float> v) : ILanes<Lanes16>
    {
        private readonly Vector512<float> v = v;

        public static int Count => 16;
        public static Lanes16 Zero => new(Vector512<float>.Zero);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 Splat(float value) => new(Vector512.Create(value));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 Load(ref float origin, int offset) => new(Vector512.LoadUnsafe(ref origin, (nuint)offset));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(ref float origin, int offset) => v.StoreUnsafe(ref origin, (nuint)offset);
        public void CopyTo(Span<float> destination) => v.CopyTo(destination);
        public void CopyMaskTo(Span<int> destination) => v.AsInt32().CopyTo(destination);
        public bool Any => v.ExtractMostSignificantBits() != 0;

        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 operator +(Lanes16 a, Lanes16 b) => new(a.v + b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 operator -(Lanes16 a, Lanes16 b) => new(a.v - b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 operator *(Lanes16 a, Lanes16 b) => new(a.v * b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 operator /(Lanes16 a, Lanes16 b) => new(a.v / b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 operator -(Lanes16 a) => new(-a.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 operator &(Lanes16 a, Lanes16 b) => new(a.v & b.v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 Sqrt(Lanes16 a) => new(Vector512.Sqrt(a.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 Abs(Lanes16 a) => new(Vector512.Abs(a.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 Select(Lanes16 mask, Lanes16 whenSet, Lanes16 whenClear) => new(Vector512.ConditionalSelect(mask.v, whenSet.v, whenClear.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 Less(Lanes16 a, Lanes16 b) => new(Vector512.LessThan(a.v, b.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 Greater(Lanes16 a, Lanes16 b) => new(Vector512.GreaterThan(a.v, b.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 Equal(Lanes16 a, Lanes16 b) => new(Vector512.Equals(a.v, b.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes16 AndNot(Lanes16 a, Lanes16 b) => new(Vector512.AndNot(a.v, b.v));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Lanes16 Level(Lanes16 x, int nmax) =>
            new(Vector512.ConvertToSingle(Vector512.Min(Vector512.Create(nmax), Vector512.Max(Vector512<int>.Zero, NearestIntLanes16(x.v)))));
    }
}
