using SlothSharp.Interop;
using SlothSharp.Models;
using SlothSharp.Ops;
using static TorchSharp.torch;
using C = SlothSharp.Interop.SlothConstants;

namespace SlothSharp.Inference;

/// <summary>
/// Fast token-by-token decoding: one whole decode step of a <see cref="CausalLM"/> (embedding, every layer, final norm,
/// LM head) run natively by libslothsharp's decoder object (sloth_decoder_*), instead of hundreds of TorchSharp ops.
/// On CUDA the step runs on the library's own stream (blocking: ordered with TorchSharp's default stream without
/// events) and, from the second step of a batch size on, as a replayed CUDA graph (<see cref="GraphCaptures"/> counts
/// the captures: one per batch size). On the CPU the same step runs with the CPU kernels (the tested reference).
/// <para>The engine reads the model's weights in place (NF4 or dense projections, biases, norms) and writes into the
/// <see cref="KvCache"/>'s own buffers, so a prompt prefilled by <see cref="CausalLM.Forward"/> into the same cache
/// continues here: each <see cref="Step"/> starts at the cache's current <see cref="KvCache.Length"/> and advances it by
/// one. LoRA adapters are copied once, cast to the compute dtype, at creation: create a new engine after changing them.
/// The rotary tables ([MaxLength, rotary_dim] per kind of layer, in the compute dtype) are made once with the model's
/// <see cref="RotaryEmbedding"/>.</para>
/// </summary>
public sealed class DecodeEngine : IDisposable
{
    private readonly DecoderHandle _handle;
    private readonly KvCache _cache;
    private readonly List<Tensor> _owned;   // buffers and copies the engine made
    private readonly List<Tensor> _kept;    // the model's tensors whose addresses the decoder holds
    private readonly Tensor _ids, _positions, _length, _logits;
    private long _deviceLength = -1;        // the value last written to _length (-1: unknown)
    private bool _disposed;

    private DecodeEngine(DecoderHandle handle, KvCache cache, List<Tensor> owned, List<Tensor> kept, Tensor ids,
                         Tensor positions, Tensor length, Tensor logits, Device device)
    {
        (_handle, _cache, _owned, _kept) = (handle, cache, owned, kept);
        (_ids, _positions, _length, _logits) = (ids, positions, length, logits);
        Device = device;
    }

    public Device Device { get; }

    /// <summary>CUDA graphs captured so far (0 on the CPU): one per batch size stepped twice or more.</summary>
    public int GraphCaptures => ReadCount(Native.DecoderGraphCaptures);

    /// <summary>Kernel launches the last step issued (0 before the first; a CUDA graph replays the captured step's
    /// launches). On the CPU, the launches the same step would issue on CUDA (below 9 rows). For checking the decode
    /// step's launch count, which bounds its speed at batch 1: 9 per NF4 layer + 4 without adapters or biases (6 + 4
    /// with every <see cref="DecodeFusions"/> on).</summary>
    public int KernelLaunches => ReadCount(Native.DecoderKernelLaunches);

    /// <summary>One of the decoder's int64 counters, read through <paramref name="read"/>(decoder, &amp;count).</summary>
    private unsafe int ReadCount(Action<nint, nint> read)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long n = 0;
        read(_handle.DangerousGetHandle(), (nint)(&n));
        return (int)n;
    }

    /// <summary>Bytes of the device (or host) memory the engine allocated for itself: per-step inputs, the float32
    /// logits [max batch, vocab], the kernels' workspace, rotary tables and any weight copies (MergeLora, DequantizeWeights, dtype casts).
    /// With the model's weights and the KV cache, this is all a decode holds.</summary>
    public long OwnedBytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _owned.Sum(t => t.numel() * t.element_size());
        }
    }

    /// <summary>Whether <see cref="DecodeFusions.Persistent"/> runs this engine's batch-1 steps as one persistent kernel
    /// (CUDA and a shape that kernel covers, see there); false on the CPU.</summary>
    public bool PersistentAvailable
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int available = 0;
            unsafe { Native.DecoderPersistentAvailable(_handle.DangerousGetHandle(), (nint)(&available)); }
            return available != 0;
        }
    }

    /// <summary>The kernel fusions in force (<see cref="DecodeEngineOptions.Fusions"/>).</summary>
    public DecodeFusions Fusions { get; private set; }

    /// <summary>Sets the kernel fusions (see <see cref="DecodeFusions"/>); as for the launch mode, the captured graphs
    /// are dropped and the next step of each batch size captures again. The output bits do not change.</summary>
    public void SetFusions(DecodeFusions fusions)
    {
        SetFlags(fusions, DecodeFusions.All, nameof(fusions), Native.DecoderSetFusions);
        Fusions = fusions;
    }

    /// <summary>The kernel classes left out of every step (<see cref="SetOmittedParts"/>); None for a real step.</summary>
    public DecodeStepParts OmittedParts { get; private set; }

    /// <summary>Diagnostics, for timing only: leaves the given kernel classes out of every later step, which then
    /// computes garbage (see <see cref="DecodeStepParts"/>); None restores the real step. The captured graphs are
    /// dropped, as for <see cref="SetFusions"/>.</summary>
    public void SetOmittedParts(DecodeStepParts parts)
    {
        SetFlags(parts, DecodeStepParts.All, nameof(parts), Native.DecoderSetOmitted);
        OmittedParts = parts;
    }

    /// <summary>One of the decoder's flag switches through <paramref name="set"/>(decoder, flags): unknown bits are
    /// refused here, with the flag names to combine.</summary>
    private void SetFlags<TFlags>(TFlags flags, TFlags all, string paramName, Action<nint, int> set) where TFlags : struct, Enum
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var bits = Convert.ToInt32(flags);
        if ((bits & ~Convert.ToInt32(all)) != 0)
            throw new ArgumentOutOfRangeException(paramName, flags, $"unknown {typeof(TFlags).Name} flags; combine {string.Join(", ", Enum.GetNames<TFlags>())}");
        set(_handle.DangerousGetHandle(), bits);
    }

    /// <summary>Whether the step's kernels are launched with programmatic dependent launch (see
    /// <see cref="DecodeEngineOptions.ProgrammaticLaunch"/>): the option, where this GPU and library build support it.</summary>
    public bool ProgrammaticLaunch { get; private set; }

    /// <summary>Turns programmatic dependent launch on (where supported) or off; the captured graphs are dropped and the
    /// next step of each batch size captures again. Returns the mode now in force.</summary>
    public bool SetProgrammaticLaunch(bool enable)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int on = 0;
        unsafe { Native.DecoderSetProgrammaticLaunch(_handle.DangerousGetHandle(), enable ? 1 : 0, (nint)(&on)); }
        ProgrammaticLaunch = on != 0;
        return ProgrammaticLaunch;
    }

    /// <summary>Whether the step's NF4 matrix-vector products run on tensor cores where their shape allows (see
    /// <see cref="DecodeEngineOptions.TensorCoreGemv"/>); always false on the CPU.</summary>
    public bool TensorCoreGemv { get; private set; }

    /// <summary>Turns the tensor-core NF4 matrix-vector products on (CUDA) or off; the captured graphs are dropped and the
    /// next step of each batch size captures again. Returns the setting now in force.</summary>
    public bool SetTensorCoreGemv(bool enable)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int on = 0;
        unsafe { Native.DecoderSetTensorCoreGemv(_handle.DangerousGetHandle(), enable ? 1 : 0, (nint)(&on)); }
        TensorCoreGemv = on != 0;
        return TensorCoreGemv;
    }

    /// <summary>How the step's cuBLASLt GEMMs (past 8 rows, CUDA) choose their algorithm (see
    /// <see cref="DecodeEngineOptions.GemmTuning"/>).</summary>
    public GemmTuning GemmTuning { get; private set; } = GemmTuning.None;

    /// <summary>Sets <see cref="GemmTuning"/>; the captured graphs are dropped, and the next step of each batch size runs
    /// eagerly again (tuning its GEMM shapes not tuned yet) before the one after captures.</summary>
    public void SetGemmTuning(GemmTuning tuning)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!Enum.IsDefined(tuning)) throw new ArgumentOutOfRangeException(nameof(tuning), tuning, "not a GemmTuning value");
        Native.DecoderSetGemmTuning(_handle.DangerousGetHandle(), (int)tuning);
        GemmTuning = tuning;
    }

    /// <summary>
    /// An engine for <paramref name="model"/> decoding into <paramref name="cache"/> (made by the model's
    /// <see cref="CausalLM.NewKvCache"/>), or null with <paramref name="whyNot"/> saying why this model or cache cannot
    /// be run natively (e.g. longrope whose factors would switch within the cache's length, a head_dim over 256, a
    /// sharded model). Both must outlive the engine.
    /// </summary>
    public static DecodeEngine? TryCreate(CausalLM model, KvCache cache, out string? whyNot, DecodeEngineOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(cache);
        whyNot = DecoderDescription.WhyUnsupported(model, cache);
        if (whyNot is not null) return null;
        options ??= new DecodeEngineOptions();
        var desc = new DecoderDescription(model, cache, options);
        try
        {
            whyNot = desc.Gather();
            if (whyNot is not null)
            {
                desc.DisposeOwned();
                return null;
            }
            var handle = new DecoderHandle();
            nint raw = 0;
            unsafe
            {
                fixed (long* ints = desc.Ints)
                fixed (float* floats = desc.Floats)
                fixed (nint* ptrs = desc.Pointers)
                    Native.DecoderCreate((nint)ints, desc.Ints.Length, (nint)floats, desc.Floats.Length, (nint)ptrs,
                        desc.Pointers.Length, desc.DeviceSelector, (nint)(&raw));
            }
            handle.Adopt(raw);
            var engine = new DecodeEngine(handle, cache, desc.Owned, desc.Kept, desc.Ids, desc.Positions, desc.Length, desc.Logits, model.Device);
            engine.SetProgrammaticLaunch(options.ProgrammaticLaunch);
            engine.SetFusions(options.Fusions);
            engine.SetGemmTuning(options.GemmTuning);
            engine.SetTensorCoreGemv(options.TensorCoreGemv);
            return engine;
        }
        catch
        {
            desc.DisposeOwned();
            throw;
        }
    }

    /// <summary>
    /// One decode step: <paramref name="ids"/> int64 [B] (the new token of each sequence, 1 ≤ B ≤ the cache's batch,
    /// rows 0..B-1 of the cache) at <paramref name="positions"/> int64 [B] (their rotary positions, each below the
    /// cache's MaxLength; CausalLM.Forward uses the cache index, i.e. <see cref="KvCache.Length"/>), both on the
    /// model's device. Writes their keys and values at cache index Length, marks them valid, and advances the cache
    /// by one. Returns float32 logits [B, V] with the final soft-cap applied (as <see cref="CausalLM.Logits"/>): a view
    /// of an engine-owned buffer, valid until the next step (clone it to keep it). On CUDA the step is enqueued, not
    /// waited for. Ids and positions are not range-checked on the device (that would need a sync): out-of-range
    /// values are clamped.
    /// </summary>
    public Tensor Step(Tensor ids, Tensor positions)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ObjectDisposedException.ThrowIf(_cache.IsDisposed, _cache);
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(positions);
        if (ids.ndim != 1 || ids.dtype != ScalarType.Int64 || ids.shape[0] < 1 || ids.shape[0] > _cache.Batch)
            throw new ArgumentException($"ids must be int64 [B] with 1 <= B <= {_cache.Batch} (the cache's batch); got {ids.dtype} [{string.Join(", ", ids.shape)}]", nameof(ids));
        var b = ids.shape[0];
        if (positions.ndim != 1 || positions.dtype != ScalarType.Int64 || positions.shape[0] != b)
            throw new ArgumentException($"positions must be int64 [{b}] like ids; got {positions.dtype} [{string.Join(", ", positions.shape)}]", nameof(positions));
        TensorInterop.RequireSameDevice(_ids, "the model", ids, nameof(ids));
        TensorInterop.RequireSameDevice(_ids, "the model", positions, nameof(positions));
        if (_cache.Length >= _cache.MaxLength)
            throw new InvalidOperationException($"the KV cache is full ({_cache.Length} of {_cache.MaxLength} tokens)");
        using (no_grad())
        {
            // The device-side length follows the cache (a prefill by CausalLM.Forward, a Reset) with one tiny fill only
            // when they differ; each step's own increment runs inside the (captured) step.
            if (_deviceLength != _cache.Length)
            {
                _length.fill_(_cache.Length);
                _deviceLength = _cache.Length;
            }
            _ids.narrow(0, 0, b).copy_(ids);
            _positions.narrow(0, 0, b).copy_(positions);
        }
        Native.DecoderStep(_handle.DangerousGetHandle(), b);
        _cache.Advance(1);
        _deviceLength++;
        return _logits.narrow(0, 0, b);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _handle.Dispose();  // waits for the decoder's stream before anything it reads is freed
        foreach (var t in _owned) t.Dispose();
        _kept.Clear();
    }
}
