using SlothSharp.Generation;
using SlothSharp.Losses;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Evaluation;

/// <summary>Token-weighted mean cross-entropy (nats per predicted token) and the number of predicted tokens.</summary>
public sealed record EvalResult(double Loss, long Tokens);

/// <summary>
/// Language-model evaluation: each document is BOS (when the tokenizer has one) followed by its tokens; every token
/// after the first is predicted from the ones before it, and the loss is the sum of their cross-entropies over all
/// documents divided by their count (so long documents weigh more, as in perplexity). Computed with the fused LM-head
/// loss (no [B, T, V] logits). A sequence longer than the window (maxLength, default max_position_embeddings) is
/// cut into windows of that length that overlap by one token: each token is still predicted exactly once, from the
/// tokens of its own window only (the context restarts at each window). Batches are padded on the right; causal
/// attention keeps padding out of every real token's context, and the loss ignores it.
/// </summary>
public static class Evaluator
{
    /// <summary>Evaluates <paramref name="docs"/> (see the class summary). <paramref name="progress"/> reports
    /// (sequences done, sequences in all) after each batch; a sequence is a document or one window of it.</summary>
    public static EvalResult Evaluate(CausalLM model, HfTokenizer tok, IReadOnlyList<string> docs, int batchSize = 8,
                                      int? maxLength = null, IProgress<(int done, int total)>? progress = null) =>
        Evaluate(new CausalLmAdapter(model), tok, docs, batchSize, maxLength, progress);

    internal static EvalResult Evaluate(ICausalLm model, HfTokenizer tok, IReadOnlyList<string> docs, int batchSize = 8,
                                        int? maxLength = null, IProgress<(int done, int total)>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tok);
        ArgumentNullException.ThrowIfNull(docs);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be >= 1");
        var window = maxLength ?? model.MaxPositionEmbeddings;
        if (window < 2) throw new ArgumentOutOfRangeException(nameof(maxLength), window, "must be >= 2 (a window predicts its tokens after the first)");
        if (window > model.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(maxLength), window, $"must be <= max_position_embeddings ({model.MaxPositionEmbeddings})");
        if (docs.Count == 0) throw new ArgumentException("no documents to evaluate", nameof(docs));

        var sequences = new List<int[]>();
        for (var d = 0; d < docs.Count; d++)
        {
            var ids = EncodeDocument(tok, docs[d] ?? throw new ArgumentException($"document {d} is null", nameof(docs)));
            foreach (var id in ids)
                if (id >= model.VocabSize)
                    throw new ArgumentException($"document {d}: token id {id} is outside the model's vocabulary ({model.VocabSize}): " +
                                                $"is {tok.SourcePath} the model's tokenizer?", nameof(tok));
            foreach (var w in Windows(ids, window)) sequences.Add(w);
        }
        // Similar lengths together: less padding. The sum does not depend on the order.
        sequences.Sort((a, b) => a.Length.CompareTo(b.Length));
        var predicted = sequences.Sum(s => (long)s.Length - 1);
        if (predicted == 0) throw new ArgumentException("the documents have no token to predict (each needs at least one token)", nameof(docs));

        // Padding is masked and ignored, so any id inside the vocabulary will do.
        var pad = tok.PadTokenId is { } p && p < model.VocabSize ? p : 0;
        double total = 0;
        var done = 0;
        progress?.Report((0, sequences.Count));
        using var noGrad = no_grad();
        for (var start = 0; start < sequences.Count; start += batchSize)
        {
            var batch = sequences.GetRange(start, Math.Min(batchSize, sequences.Count - start));
            total += BatchLossSum(model, batch, pad);
            done += batch.Count;
            progress?.Report((done, sequences.Count));
        }
        return new EvalResult(total / predicted, predicted);
    }

    /// <summary>A document as evaluation sees it: BOS (when the tokenizer has one) followed by its tokens.</summary>
    public static int[] EncodeDocument(HfTokenizer tok, string text)
    {
        ArgumentNullException.ThrowIfNull(tok);
        ArgumentNullException.ThrowIfNull(text);
        return tok.Encode(text, addBos: tok.BosTokenId is not null);
    }

    /// <summary>Windows of at most <paramref name="window"/> tokens, overlapping by one, covering every prediction once.</summary>
    internal static IEnumerable<int[]> Windows(int[] ids, int window)
    {
        if (ids.Length <= window) { if (ids.Length >= 2) yield return ids; yield break; }
        for (var s = 0; s + 1 < ids.Length; s += window - 1)
            yield return ids[s..Math.Min(ids.Length, s + window)];
    }

    private static double BatchLossSum(ICausalLm model, List<int[]> batch, int pad)
    {
        using var scope = NewDisposeScope();
        var b = batch.Count;
        var t = batch.Max(s => s.Length);
        var ids = new long[b * t];
        var labels = new long[b * t];
        for (var r = 0; r < b; r++)
            for (var c = 0; c < t; c++)
            {
                var inside = c < batch[r].Length;
                ids[r * t + c] = inside ? batch[r][c] : pad;
                labels[r * t + c] = inside ? batch[r][c] : -100;
            }
        var device = model.Device;
        var input = tensor(ids, ScalarType.Int64).reshape(b, t).to(device);
        // No attention mask: padding is on the right and attention is causal, so a real token never sees padding, and
        // padding positions carry label −100. Without a mask the forward keeps the causal fast path (flash attention
        // on CUDA) instead of building and reading a [B, 1, T, T] mask per window kind.
        var target = tensor(labels, ScalarType.Int64).reshape(b, t).to(device);
        var hidden = model.Forward(input, null, null);
        // Detached: the fused loss computes gradients during forward for inputs that require them (a trainable LM
        // head would), which evaluation must not pay for.
        var loss = CausalLmLoss.Compute(hidden.detach(), model.LmHeadWeight.detach(), model.FinalLogitSoftcap, target,
            new CrossEntropyOptions { Reduction = LossReduction.Sum });
        return loss.to(ScalarType.Float64).item<double>();
    }
}
