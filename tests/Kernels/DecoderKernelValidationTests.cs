using NUnit.Framework;
using SlothSharp.Interop;

namespace SlothSharp.Tests;

/// <summary>The native validation of the decoder kernels' new arguments (RMSNorm's unit_offset, RoPE's rotary_dim, the
/// gate activation, the NF4 GEMV's sizes): each bad value is SLOTH_ERROR_INVALID_ARGUMENT with a message naming it,
/// returned before any pointer is read (the pointers here are never dereferenced).</summary>
public class DecoderKernelValidationTests
{
    private static readonly nint P = 64;  // a non-null address the checks never reach

    private static void ExpectInvalid(SlothStatus status, string messagePart)
    {
        Assert.That(status, Is.EqualTo(SlothStatus.ErrorInvalidArgument));
        Assert.That(Native.LastErrorMessage, Does.Contain(messagePart));
    }

    [SetUp]
    public void Load() => Native.EnsureLoaded();

    [Test]
    public void RmsNormUnitOffsetMustBeZeroOrOne()
    {
        ExpectInvalid(Native.TryRmsNormForward(P, P, SlothDtype.F32, 1, 4, 1e-6f, 2, P, P, -1, 0), "unit_offset = 2");
        ExpectInvalid(Native.TryRmsNormBackward(P, P, P, P, SlothDtype.F32, 1, 4, -1, P, P, -1, 0), "unit_offset = -1");
    }

    [TestCase(0)]
    [TestCase(3)]
    [TestCase(18)]
    public void RopeRotaryDimMustBeEvenAndWithinTheHead(long rotaryDim) =>
        ExpectInvalid(Native.TryRope(P, P, P, SlothDtype.F32, SlothRopeLayout.Bhtd, 1, 1, 1, 16, rotaryDim, 1, 0, P, -1, 0),
            $"rotary_dim = {rotaryDim}");

    [Test]
    public void GateActivationMustBeKnown()
    {
        ExpectInvalid(Native.TrySwigluForward(P, P, SlothDtype.F32, (SlothGateActivation)5, 4, P, -1, 0), "activation = 5");
        ExpectInvalid(Native.TrySwigluBackward(P, P, P, SlothDtype.F32, (SlothGateActivation)(-1), 4, P, P, -1, 0), "activation = -1");
    }

    [TestCase(0, 64, 8, 64, "batch = 0")]
    [TestCase(9, 64, 8, 64, "batch = 9")]
    [TestCase(1, 0, 8, 64, "k = 0")]
    [TestCase(1, 64, 0, 64, "m = 0")]
    [TestCase(1, 64, 8, 48, "blocksize = 48")]
    public void Nf4GemvSizes(long batch, long k, long m, int blocksize, string message) =>
        ExpectInvalid(Native.TryNf4Gemv(P, SlothDtype.Bf16, batch, k, m, P, P, P, P, P, P, blocksize, 256, P + (1 << 20), -1, 0), message);

    [Test]
    public void Nf4GemvOutputMustNotOverlapTheInput() =>
        ExpectInvalid(Native.TryNf4Gemv(P, SlothDtype.F32, 2, 64, 8, P, P, P, P, P, P, 64, 256, P + 100, -1, 0), "y overlaps x");

    [Test]
    public void Nf4GemvNullPointers()
    {
        ExpectInvalid(Native.TryNf4Gemv(0, SlothDtype.F32, 1, 64, 8, P, P, P, P, P, P, 64, 256, P + 4096, -1, 0), "x is NULL");
        ExpectInvalid(Native.TryNf4Gemv(P, SlothDtype.F32, 1, 64, 8, 0, P, P, P, P, P, 64, 256, P + 4096, -1, 0), "packed is NULL");
        ExpectInvalid(Native.TryNf4Gemv(P, SlothDtype.F32, 1, 64, 8, P, P, P, P, P, P, 64, 256, 0, -1, 0), "y is NULL");
    }
}
