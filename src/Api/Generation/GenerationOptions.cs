namespace SlothSharp.Generation;

/// <summary>
/// How <see cref="TextGenerator"/> and <see cref="BatchGenerator"/> pick tokens. First, as transformers'
/// RepetitionPenaltyLogitsProcessor, the logits of tokens already in the sequence (prompt included) are divided by
/// RepetitionPenalty when positive and multiplied by it when negative (1 = off; it applies to greedy too). Temperature
/// 0: greedy (argmax; the lowest id on ties). Otherwise, as transformers' sampling warpers in this order: logits /
/// Temperature, keep the TopK largest (0 = all; ties with the k-th are kept), keep the smallest set of most likely
/// tokens whose probability reaches TopP (1 = all; at least one), then draw from the softmax (one uniform per row from a
/// CPU generator seeded by Seed: the same seed, prompts and batch give the same tokens).
/// Generation stops after MaxNewTokens or at a token in StopTokenIds (null: the model config's EOS ids; the stop token
/// is still yielded). NativeDecoding (default on): after the prompt's forward pass, each new token runs through the
/// native decoding engine (<see cref="SlothSharp.Inference.DecodeEngine"/>: one native step, a replayed CUDA graph on
/// a GPU) where it supports the model, else through the model's own forward; off: always the model's forward (the
/// reference path). MergeLoraWhenDecoding: the engine runs each adapted projection as one dense W + scale·B·A copy
/// instead of its base plus two adapter products (<see cref="SlothSharp.Inference.DecodeEngineOptions"/>).
/// DenseWeightsWhenDecoding: the engine decodes from a dense copy of every NF4 projection, made once (the same values;
/// 2 bytes a weight of device memory besides the 0.5 of NF4, while the generation lasts); faster for batches past 8
/// rows, where each step would otherwise dequantize every weight again (Qwen3-1.7B at batch 64 on an H100: 13,699 →
/// 20,683 tokens/s in round 17, with the copies stacked), slower at batch 1 (<see cref="SlothSharp.Inference.DecodeEngineOptions.DequantizeWeights"/>).
/// </summary>
public sealed record GenerationOptions(int MaxNewTokens = 64, double Temperature = 0, double TopP = 1, int TopK = 0, long Seed = 0,
                                       IReadOnlyList<int>? StopTokenIds = null, double RepetitionPenalty = 1,
                                       bool NativeDecoding = true, bool MergeLoraWhenDecoding = false,
                                       bool DenseWeightsWhenDecoding = false)
{
    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "must be >= 0");
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "must be finite and >= 0 (0 = greedy)");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "must be in (0, 1]");
        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty)) throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "must be finite and > 0 (1 = off)");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "must be >= 0 (0 = off)");
    }
}
