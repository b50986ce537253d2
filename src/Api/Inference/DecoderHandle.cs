using System.Runtime.InteropServices;
using SlothSharp.Interop;

namespace SlothSharp.Inference;

/// <summary>The native decoder object of a <see cref="DecodeEngine"/> (sloth_decoder_create): released with
/// sloth_decoder_destroy exactly once, even when the engine is finalized without Dispose.</summary>
internal sealed class DecoderHandle : SafeHandle
{
    public DecoderHandle() : base(0, ownsHandle: true) { }

    public override bool IsInvalid => handle == 0;

    internal void Adopt(nint value) => SetHandle(value);

    /// <summary>sloth_decoder_destroy waits for the decoder's stream, then frees it; a failure cannot be reported from
    /// a release, so its status is ignored (it only fails for a CUDA error that the next call would report).</summary>
    protected override bool ReleaseHandle() => Native.TryDecoderDestroy(handle) == SlothStatus.Ok;
}
