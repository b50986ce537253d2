using SlothSharp.Interop;
using SlothSharp.Models;
using SlothSharp.Ops;
using static TorchSharp.torch;
using C = SlothSharp.Interop.SlothConstants;

namespace SlothSharp.Inference;

/// <summary>
/// The flat description sloth_decoder_create takes (ints, floats, pointers: see slothsharp.h's SLOTH_DECODER_*
/// layout), gathered from a <see cref="CausalLM"/>'s modules through <see cref="DecoderLayer"/> and a
/// <see cref="KvCache"/>, with every tensor checked (device, dtype, contiguity, shape) before its address is taken.
/// Holds the engine's own buffers (ids, positions, length, logits, workspace, rotary tables, LoRA casts) in
/// <see cref="Owned"/> and the model's tensors whose addresses it took in <see cref="Kept"/>.
/// </summary>
internal sealed class DecoderDescription
{
    private readonly CausalLM _model;
    private readonly KvCache _cache;
    private readonly ModelConfig _cfg;
    private readonly ScalarType _dtype;
    private readonly bool _mergeLora;
    private readonly bool _dequantize;

    public DecoderDescription(CausalLM model, KvCache cache, DecodeEngineOptions options)
    {
        (_model, _cache, _cfg, _dtype) = (model, cache, model.Config, model.ComputeDtype);
        _mergeLora = options.MergeLora;
        _dequantize = options.DequantizeWeights;
        var layers = _cfg.NumHiddenLayers;
        Ints = new long[C.DecoderIGlobalCount + layers * C.DecoderIlCount];
        Floats = new float[C.DecoderFGlobalCount + layers * C.DecoderFlCount];
        Pointers = new nint[C.DecoderPGlobalCount + layers * C.DecoderPlCount];
        DeviceSelector = model.Device.type == TorchSharp.DeviceType.CUDA ? Math.Max(model.Device.index, 0) : -1;
    }

    public long[] Ints { get; }
    public float[] Floats { get; }
    public nint[] Pointers { get; }
    public int DeviceSelector { get; }
    public List<Tensor> Owned { get; } = [];
    public List<Tensor> Kept { get; } = [];
    public Tensor Ids { get; private set; } = null!;
    public Tensor Positions { get; private set; } = null!;
    public Tensor Length { get; private set; } = null!;
    public Tensor Logits { get; private set; } = null!;

    /// <summary>What the native decoder cannot run for this model and cache (null: nothing), before anything is made.</summary>
    public static string? WhyUnsupported(CausalLM model, KvCache cache)
    {
        var cfg = model.Config;
        if (model.Device.type is not (TorchSharp.DeviceType.CPU or TorchSharp.DeviceType.CUDA))
            return $"the model is on {model.Device}; the decoding engine runs on the CPU or CUDA";
        if (!TensorInterop.IsFloating16Or32(model.ComputeDtype)) return $"compute dtype {model.ComputeDtype} is not float32, float16 or bfloat16";
        if (cache.IsDisposed) return "the KV cache is disposed";
        var k0 = cache.KeysOf(0);
        if (k0.dtype != model.ComputeDtype || !SameDevice(k0, model.Device) || k0.shape[1] != cfg.NumKeyValueHeads || k0.shape[3] != cfg.HeadDim)
            return "the KV cache was not made by this model (CausalLM.NewKvCache)";
        if (cfg.HeadDim > 256) return $"head_dim {cfg.HeadDim} exceeds the decoding kernels' 256";
        if (cfg.KvGroups > 16) return $"{cfg.KvGroups} query heads per key/value head exceed the decoding kernels' 16";
        foreach (var layer in model.Model.Layers)
        {
            if (layer.AroundCompute is not null) return "the model's layers are sharded (their weights are gathered per forward)";
            var spec = cfg.RopeOf(layer.Index);
            if (spec.IsDynamic && cache.MaxLength > spec.OriginalMaxPositionEmbeddings)
                return $"longrope switches to its long factors past {spec.OriginalMaxPositionEmbeddings} tokens, within the cache's {cache.MaxLength}: " +
                       "one set of rotary tables cannot follow transformers there (use a cache of at most that length)";
        }
        return null;
    }

    private static bool SameDevice(Tensor t, Device d) =>
        t.device_type == d.type && (d.type != TorchSharp.DeviceType.CUDA || t.device_index == Math.Max(d.index, 0));

    public void DisposeOwned()
    {
        foreach (var t in Owned) t.Dispose();
        Owned.Clear();
    }

    private Tensor Own(Tensor t)
    {
        t.DetachFromDisposeScope();
        Owned.Add(t);
        return t;
    }

    /// <summary>The address of a model tensor after checking it; the tensor is kept alive with the engine.</summary>
    private string? Take(Tensor t, string what, ScalarType dtype, long? numel, out nint ptr)
    {
        ptr = 0;
        if (!SameDevice(t, _model.Device)) return $"{what} is on {t.device}; the model is on {_model.Device}";
        if (t.dtype != dtype) return $"{what} is {t.dtype}; the decoding engine needs {dtype}";
        if (!t.is_contiguous()) return $"{what} is not contiguous";
        if (numel is { } n && t.numel() != n) return $"{what} has {t.numel()} elements; expected {n}";
        Kept.Add(t);
        ptr = TensorInterop.DataPtr(t);
        return null;
    }

    /// <summary>Fills the arrays; returns why the model cannot be described (null: done).</summary>
    public string? Gather()
    {
        using var noGrad = no_grad();
        var cfg = _cfg;
        var dev = _model.Device;
        var (h, hd, nh, nkv, inter, vocab) = ((long)cfg.HiddenSize, (long)cfg.HeadDim, (long)cfg.NumAttentionHeads,
            (long)cfg.NumKeyValueHeads, (long)cfg.IntermediateSize, (long)cfg.VocabSize);
        var layers = _model.Model.Layers;
        var maxRank = layers.SelectMany(l => l.Projections).Select(p => p.Lora is { } lo ? lo.A.weight!.shape[0] : 0).DefaultIfEmpty(0).Max();

        Ints[C.DecoderILayers] = layers.Length;
        Ints[C.DecoderIHidden] = h;
        Ints[C.DecoderIHeads] = nh;
        Ints[C.DecoderIKvHeads] = nkv;
        Ints[C.DecoderIHeadDim] = hd;
        Ints[C.DecoderIIntermediate] = inter;
        Ints[C.DecoderIVocab] = vocab;
        Ints[C.DecoderIDtype] = (long)TensorInterop.ToSloth(_dtype, "compute dtype");
        Ints[C.DecoderIMaxBatch] = _cache.Batch;
        Ints[C.DecoderIMaxLength] = _cache.MaxLength;
        Ints[C.DecoderIUnitOffsetNorms] = cfg.UnitOffsetNorms ? 1 : 0;
        Ints[C.DecoderISandwichNorms] = cfg.SandwichNorms ? 1 : 0;
        Ints[C.DecoderIQkNorm] = cfg.QkNorm ? 1 : 0;
        Ints[C.DecoderIActivation] = cfg.Activation == GateActivation.Silu ? (long)SlothGateActivation.Silu : (long)SlothGateActivation.GeluTanh;
        // Copies the engine makes anyway (DequantizeWeights, MergeLora) are made stacked where they can be, q/k/v one
        // under the other and gate over up, and described as the fused projections Phi-3 has: one product each past
        // 8 rows instead of three and two (see CanStack).
        var stackQkv = !cfg.FusedQkv && layers.All(l => CanStack(l.Attention.Projections.Take(3)));
        var stackGateUp = !cfg.FusedGateUp && layers.All(l => CanStack(l.Mlp.Projections.Take(2)));
        Ints[C.DecoderIFusedQkv] = cfg.FusedQkv || stackQkv ? 1 : 0;
        Ints[C.DecoderIFusedGateUp] = cfg.FusedGateUp || stackGateUp ? 1 : 0;
        Ints[C.DecoderIMaxLoraRank] = maxRank;
        long bytes = 0;
        unsafe
        {
            fixed (long* ints = Ints) Native.DecoderWorkspaceBytes((nint)ints, Ints.Length, (nint)(&bytes));
        }
        Ints[C.DecoderIWorkspaceBytes] = bytes;

        Floats[C.DecoderFEps] = (float)cfg.RmsNormEps;
        Floats[C.DecoderFAttentionScale] = (float)cfg.AttentionScale;
        Floats[C.DecoderFAttentionSoftcap] = (float)(cfg.AttentionSoftcap ?? 0);
        Floats[C.DecoderFFinalSoftcap] = (float)(cfg.FinalLogitSoftcap ?? 0);
        // Gemma: √hidden rounded to the compute dtype first, as CausalLM.Forward multiplies by it.
        using (var scale = tensor(Math.Sqrt(cfg.HiddenSize), _dtype).to(ScalarType.Float32))
            Floats[C.DecoderFEmbedScale] = cfg.ScaleEmbeddings ? scale.item<float>() : 1f;

        // The engine's buffers: per-step inputs, the length, the logits, the workspace (+256 for alignment).
        Ids = Own(zeros([_cache.Batch], ScalarType.Int64, dev));
        Positions = Own(zeros([_cache.Batch], ScalarType.Int64, dev));
        Length = Own(zeros([1], ScalarType.Int64, dev));
        Logits = Own(zeros([_cache.Batch, vocab], ScalarType.Float32, dev));
        var work = Own(empty([bytes + 256], ScalarType.Byte, dev));
        var workPtr = TensorInterop.DataPtr(work);
        workPtr += (nint)((256 - (long)workPtr % 256) % 256);

        string? why;
        if ((why = Take(_model.Model.Embed.Weight, "model.embed_tokens.weight", _dtype, vocab * h, out var embed)) is not null) return why;
        if ((why = Take(_model.Model.Norm.Weight, "model.norm.weight", _dtype, h, out var finalNorm)) is not null) return why;
        if ((why = Take(_model.LmHeadWeight, "lm_head.weight", _dtype, vocab * h, out var lmHead)) is not null) return why;
        Pointers[C.DecoderPEmbed] = embed;
        Pointers[C.DecoderPFinalNorm] = finalNorm;
        Pointers[C.DecoderPLmHead] = lmHead;
        Pointers[C.DecoderPIds] = TensorInterop.DataPtr(Ids);
        Pointers[C.DecoderPPositions] = TensorInterop.DataPtr(Positions);
        Pointers[C.DecoderPLength] = TensorInterop.DataPtr(Length);
        var valid = _cache.ValidMask;
        if ((why = Take(valid, "the cache's valid mask", ScalarType.Bool, (long)_cache.Batch * _cache.MaxLength, out var validPtr)) is not null) return why;
        Pointers[C.DecoderPValid] = validPtr;
        Pointers[C.DecoderPLogits] = TensorInterop.DataPtr(Logits);
        Pointers[C.DecoderPWorkspace] = workPtr;

        // Rotary tables per kind of RoPE: [MaxLength, rotary_dim] for positions 0..MaxLength-1, as CausalLM.Forward makes them.
        var tables = new Dictionary<RopeSpec, (nint Cos, nint Sin)>();
        foreach (var spec in Enumerable.Range(0, layers.Length).Select(cfg.RopeOf).Distinct())
        {
            using var rope = new RotaryEmbedding(spec, cfg.HeadDim, dev);
            using var pos = arange(0, _cache.MaxLength, 1, ScalarType.Int64, dev);
            var (cos, sin) = rope.Tables(pos, _cache.MaxLength, _dtype);
            Own(cos);
            Own(sin);
            tables[spec] = (TensorInterop.DataPtr(cos), TensorInterop.DataPtr(sin));
        }

        var cacheElems = (long)_cache.Batch * nkv * _cache.MaxLength * hd;
        foreach (var layer in layers)
        {
            var li = C.DecoderIGlobalCount + layer.Index * C.DecoderIlCount;
            var lf = C.DecoderFGlobalCount + layer.Index * C.DecoderFlCount;
            var lp = C.DecoderPGlobalCount + layer.Index * C.DecoderPlCount;
            var prefix = DecoderLayout.LayerPrefix(layer.Index);
            Ints[li + C.DecoderIlWindow] = cfg.WindowOf(layer.Index) ?? 0;
            var spec = cfg.RopeOf(layer.Index);
            Ints[li + C.DecoderIlRotaryDim] = spec.RotaryDim(cfg.HeadDim);
            (Pointers[lp + C.DecoderPlCos], Pointers[lp + C.DecoderPlSin]) = tables[spec];

            var norms = new (RmsNormModule? Norm, int Slot)[]
            {
                (layer.InputNorm, C.DecoderPlInputNorm), (layer.PostAttentionNorm, C.DecoderPlPostAttentionNorm),
                (layer.PreMlpNorm, C.DecoderPlPreMlpNorm), (layer.PostMlpNorm, C.DecoderPlPostMlpNorm),
                (layer.Attention.QNorm, C.DecoderPlQNorm), (layer.Attention.KNorm, C.DecoderPlKNorm),
            };
            foreach (var (norm, slot) in norms)
            {
                if (norm is null) continue;
                if ((why = Take(norm.Weight, $"{prefix}{norm.GetName()}.weight", _dtype, null, out var p)) is not null) return why;
                Pointers[lp + slot] = p;
            }
            if ((why = Take(_cache.KeysOf(layer.Index), $"the cache's keys of layer {layer.Index}", _dtype, cacheElems, out var kc)) is not null) return why;
            if ((why = Take(_cache.ValuesOf(layer.Index), $"the cache's values of layer {layer.Index}", _dtype, cacheElems, out var vc)) is not null) return why;
            Pointers[lp + C.DecoderPlKCache] = kc;
            Pointers[lp + C.DecoderPlVCache] = vc;

            // Projection slots in module order: q, k, v (or qkv), o, then gate, up (or gate_up), down.
            var attn = layer.Attention.Projections;
            var mlp = layer.Mlp.Projections;
            var slots = new List<(Projection[] P, int Slot)>();
            if (attn.Count == 2) slots.AddRange([([attn[0]], C.DecoderProjQ), ([attn[1]], C.DecoderProjO)]);
            else if (stackQkv) slots.AddRange([([attn[0], attn[1], attn[2]], C.DecoderProjQ), ([attn[3]], C.DecoderProjO)]);
            else slots.AddRange([([attn[0]], C.DecoderProjQ), ([attn[1]], C.DecoderProjK), ([attn[2]], C.DecoderProjV), ([attn[3]], C.DecoderProjO)]);
            if (mlp.Count == 2) slots.AddRange([([mlp[0]], C.DecoderProjGate), ([mlp[1]], C.DecoderProjDown)]);
            else if (stackGateUp) slots.AddRange([([mlp[0], mlp[1]], C.DecoderProjGate), ([mlp[2]], C.DecoderProjDown)]);
            else slots.AddRange([([mlp[0]], C.DecoderProjGate), ([mlp[1]], C.DecoderProjUp), ([mlp[2]], C.DecoderProjDown)]);
            foreach (var (ps, slot) in slots)
            {
                var (i, f, ptr) = (li + C.DecoderIlProj + slot * C.DecoderIlProjStride, lf + slot, lp + C.DecoderPlProj + slot * C.DecoderPlProjStride);
                why = ps.Length == 1
                    ? Describe(ps[0], $"{prefix}{ps[0].GetName()}", i, f, ptr)
                    : DescribeStacked(ps, $"{prefix}{string.Join('+', ps.Select(p => p.GetName()))}", i, ptr);
                if (why is not null) return why;
            }
        }
        return null;
    }

    private string? Describe(Projection p, string name, int i, int f, int ptr)
    {
        string? why;
        var n = p.OutFeatures * p.InFeatures;
        var mergeAdapter = _mergeLora && p.Lora is not null;
        if (p.Nf4 is { } w && !mergeAdapter && !_dequantize)
        {
            Ints[i + C.DecoderIlKind] = (long)SlothWeightKind.Nf4;
            Ints[i + C.DecoderIlBlocksize] = w.Blocksize;
            Ints[i + C.DecoderIlNestedBlocksize] = w.NestedBlocksize;
            if (w.Shape.Length != 2 || w.Shape[0] * w.Shape[1] != n) return $"{name}: the NF4 weight's shape does not match [{p.OutFeatures}, {p.InFeatures}]";
            var parts = new (Tensor T, string What, ScalarType Dtype, int Slot)[]
            {
                (w.Packed, "weight (packed)", ScalarType.Byte, C.DecoderPlWeight),
                (w.AbsmaxCodes, "weight.absmax", ScalarType.Byte, C.DecoderPlAbsmaxCodes),
                (w.NestedCodeMap, "weight.nested_quant_map", ScalarType.Float32, C.DecoderPlNestedCodeMap),
                (w.NestedAbsmax, "weight.nested_absmax", ScalarType.Float32, C.DecoderPlNestedAbsmax),
                (w.NestedOffset, "weight's nested offset", ScalarType.Float32, C.DecoderPlNestedOffset),
                (w.CodeTable, "weight.quant_map", ScalarType.Float32, C.DecoderPlCodeTable),
            };
            foreach (var (t, what, dtype, slot) in parts)
            {
                if ((why = Take(t, $"{name}.{what}", dtype, null, out var ptrValue)) is not null) return why;
                Pointers[ptr + slot] = ptrValue;
            }
        }
        else
        {
            Ints[i + C.DecoderIlKind] = (long)SlothWeightKind.Dense;
            var weight = mergeAdapter || p.Nf4 is not null ? Own(DenseCopy(p)) : p.DenseBase!;
            var what = mergeAdapter ? " (merged with its adapter)" : p.Nf4 is not null ? " (dequantized)" : "";
            if ((why = Take(weight, $"{name}.weight{what}", _dtype, n, out var wp)) is not null) return why;
            Pointers[ptr + C.DecoderPlWeight] = wp;
        }
        if (p.Bias is { } bias)
        {
            if ((why = Take(bias, $"{name}.bias", _dtype, p.OutFeatures, out var bp)) is not null) return why;
            Pointers[ptr + C.DecoderPlBias] = bp;
        }
        if (!mergeAdapter && p.Lora is { } lora)
        {
            // The adapter in the compute dtype, as the reference forward casts it (a snapshot: see DecodeEngine).
            var a = Own(lora.A.weight!.detach().to(_dtype).contiguous().clone());
            var b = Own(lora.B.weight!.detach().to(_dtype).contiguous().clone());
            Ints[i + C.DecoderIlLoraRank] = a.shape[0];
            Floats[f] = (float)lora.Scale;
            Pointers[ptr + C.DecoderPlLoraA] = TensorInterop.DataPtr(a);
            Pointers[ptr + C.DecoderPlLoraB] = TensorInterop.DataPtr(b);
        }
        return null;
    }

    /// <summary>Whether projections (q, k, v or gate, up) can run as one stacked dense weight: each is a copy the engine
    /// makes anyway (an NF4 base under DequantizeWeights, or an adapted one under MergeLora) with no adapter left
    /// unmerged, so stacking costs no memory beyond the copies and needs no per-member adapter launches. A dense base
    /// used in place is not copied just to be stacked.</summary>
    private bool CanStack(IEnumerable<Projection> ps) =>
        ps.All(p => p.Lora is { } ? _mergeLora : _dequantize && p.Nf4 is not null);

    /// <summary>The dense copy of p the engine runs (a new tensor in the caller's dispose scope, not owned): W + scale·B·A
    /// where its adapter is merged (MergeLora), else its NF4 base dequantized to the compute dtype (DequantizeWeights;
    /// the values the engine's own dequantization gives).</summary>
    private Tensor DenseCopy(Projection p) => _mergeLora && p.Lora is not null ? MergedRows(p) : p.Nf4!.Dequantize(_dtype);

    /// <summary>Projections of one input stacked into one dense weight [Σ out, in] (and, where any has a bias, one bias
    /// with zeros for those without: y + 0 is y), owned by the engine: each member's rows are the copy
    /// <see cref="Describe"/> would have made (merged or dequantized), so every output is the same dot product.</summary>
    private string? DescribeStacked(Projection[] ps, string name, int i, int ptr)
    {
        string? why;
        Ints[i + C.DecoderIlKind] = (long)SlothWeightKind.Dense;
        using (var scope = NewDisposeScope())
        {
            var rows = ps.Select(DenseCopy).ToArray();
            var weight = Own(cat(rows, 0).MoveToOuterDisposeScope());
            if ((why = Take(weight, $"{name}.weight (stacked)", _dtype, ps.Sum(p => p.OutFeatures * p.InFeatures), out var wp)) is not null) return why;
            Pointers[ptr + C.DecoderPlWeight] = wp;
            if (ps.Any(p => p.Bias is not null))
            {
                var parts = ps.Select(p => p.Bias is { } b ? b.detach().to(_dtype) : zeros([p.OutFeatures], _dtype, weight.device)).ToArray();
                var bias = Own(cat(parts, 0).MoveToOuterDisposeScope());
                if ((why = Take(bias, $"{name}.bias (stacked)", _dtype, ps.Sum(p => p.OutFeatures), out var bp)) is not null) return why;
                Pointers[ptr + C.DecoderPlBias] = bp;
            }
        }
        return null;
    }

    /// <summary>W + scale·B·A computed in float32 from the base as the reference path sees it (NF4 dequantized to the
    /// compute dtype, as its forward does), rounded once to the compute dtype; a new tensor in the caller's dispose
    /// scope.</summary>
    private Tensor MergedRows(Projection p)
    {
        using var scope = NewDisposeScope();
        var lora = p.Lora!;
        var baseW = (p.Nf4 is { } nf4 ? nf4.Dequantize(_dtype) : p.DenseBase!.detach()).to(ScalarType.Float32);
        var delta = lora.B.weight!.detach().to(ScalarType.Float32).matmul(lora.A.weight!.detach().to(ScalarType.Float32)) * lora.Scale;
        return (baseW + delta).to(_dtype).contiguous().MoveToOuterDisposeScope();
    }
}
