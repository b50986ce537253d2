using NUnit.Framework;
using SlothSharp.Data;
using SlothSharp.Losses;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// Packing must not change what is learned: four documents of different lengths packed into one row (positions
/// restarting, block-diagonal attention through sequence ids, labels −100 at document starts) give the same summed
/// loss, the same target count and the same LoRA gradients as the four documents run unpacked (one per row,
/// right-padded). float32 on the CPU, tiny checkpoints of every family (tests/data/hf-tiny-llama and
/// hf-tiny-families: Llama; Qwen 2; Qwen 3 and Gemma 3 with Q/K norms; Mistral, Gemma 2 and Gemma 3 with sliding
/// windows of 7–9 tokens, shorter than the longer documents; Phi-3's fused QKV), NF4 decoder + LoRA, through both the
/// reference ops and the fused kernels.
/// </summary>
public class PackedLossTests
{
    public static readonly string[] Models = ["llama", .. FamilyGolden.Families];

    private static string DenseDir(string family) => family == "llama" ? LlamaGolden.DenseDir : FamilyGolden.Dense(family);

    /// <summary>Plain texts (all trained) and prompt/completion pairs (the prompt masked), 6 to ~40 tokens each.</summary>
    private static readonly TrainingExample[] Documents =
    [
        TrainingExample.FromText("The sloth hangs from the branch and sleeps through most of the warm afternoon, waking only to eat.", "doc 0"),
        TrainingExample.FromPromptCompletion("Q: two plus two?\nA:", " four", "doc 1"),
        TrainingExample.FromText("Moss grows on its fur.", "doc 2"),
        TrainingExample.FromPromptCompletion("Translate to French: good morning\n", "bonjour, et bonne journée à vous tous", "doc 3"),
    ];

    private static CausalLM Model(string family)
    {
        var model = CausalLM.FromPretrained(DenseDir(family), new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 });
        model.AddLora(new LoraConfig(Rank: 4, Alpha: 8), seed: 3);
        using (no_grad())
        {
            using var gen = new Generator(11);
            foreach (var (_, p) in model.LoraParameters()) p.copy_(normal(0, 0.05, p.shape, generator: gen));  // B = 0 would hide the adapters
        }
        model.train();
        return model;
    }

    /// <summary>The summed loss over a batch, its target count, and the LoRA gradients of that sum.</summary>
    private static (double Sum, long Targets, Tensor[] Grads) SummedLoss(CausalLM model, TrainingBatch batch, bool packed)
    {
        foreach (var (_, p) in model.LoraParameters()) p.grad = null;
        using var scope = NewDisposeScope();
        var hidden = packed ? model.Forward(batch.InputIds, batch.AttentionMask, null, batch.PositionIds, batch.SequenceIds)
                            : model.Forward(batch.InputIds, batch.AttentionMask);
        var loss = CausalLmLoss.Compute(model, hidden, batch.Labels, new CrossEntropyOptions { Reduction = LossReduction.Sum });
        loss.backward();
        var grads = model.LoraParameters().Select(kv => kv.Value.grad!.detach().clone().MoveToOuterDisposeScope()).ToArray();
        return (loss.item<float>(), CausalLmLoss.Targets(batch.Labels), grads);
    }

    [TestCaseSource(nameof(Cases))]
    public void PackedRowLossEqualsUnpackedRows(string family, bool fused)
    {
        var tokenizer = HfTokenizer.FromDirectory(DenseDir(family));
        var packed = TrainingData.FromExamples(Documents, tokenizer, null, new TrainingDataOptions { SequenceLength = 256, Packing = true });
        var unpacked = TrainingData.FromExamples(Documents, tokenizer, null, new TrainingDataOptions { SequenceLength = 256, Packing = false });
        Assert.That(packed.Rows, Has.Count.EqualTo(1), "the four documents fit one packed row");
        Assert.That(unpacked.Rows, Has.Count.EqualTo(Documents.Length));
        var lengths = unpacked.Rows.Select(r => r.Length).ToArray();
        Assert.That(lengths.Distinct().Count(), Is.EqualTo(lengths.Length), "documents of different lengths");
        Assert.That(lengths.Max(), Is.GreaterThan(12), "longer than the sliding windows (7–9 tokens)");
        Assert.That(packed.RowTargets.Sum(), Is.EqualTo(unpacked.RowTargets.Sum()), "packing trains the same targets");

        using var model = Model(family);
        model.UseFusedKernels = fused;
        using var packedBatch = packed.CollateBatch([0], CPU);
        using var paddedBatch = unpacked.CollateBatch(Enumerable.Range(0, unpacked.Rows.Count).ToArray(), CPU);
        Assert.That(packedBatch.MultiDocument, Is.True);
        // RoPE scores depend on i − j only, so with block-diagonal attention the restart of the positions barely moves
        // the loss (rounding): it is checked on the batch itself.
        Assert.That(packedBatch.PositionIds.eq(0).sum().item<long>(), Is.EqualTo(Documents.Length), "positions restart at every document");
        Assert.That(paddedBatch.AttentionMask, Is.Not.Null, "the unpacked rows are padded");

        var p = SummedLoss(model, packedBatch, packed: true);
        var u = SummedLoss(model, paddedBatch, packed: false);
        Assert.That(p.Targets, Is.EqualTo(u.Targets));
        Assert.That(p.Targets, Is.EqualTo(packed.RowTargets.Sum()));
        Assert.That(p.Sum / p.Targets, Is.EqualTo(u.Sum / u.Targets).Within(1e-5), "mean loss per target");
        Assert.That(p.Sum, Is.EqualTo(u.Sum).Within(1e-5 * u.Targets), "summed loss");
        var names = model.LoraParameters().Select(kv => kv.Key).ToArray();
        for (var i = 0; i < names.Length; i++) TestEnv.AssertClose(p.Grads[i], u.Grads[i], 1e-4, $"{family}: gradient of {names[i]}");

        // Without the sequence ids the documents would see each other: the check above is not vacuous.
        foreach (var (_, param) in model.LoraParameters()) param.grad = null;
        using (no_grad())
        using (NewDisposeScope())
        {
            var leaky = model.Forward(packedBatch.InputIds, null, null, packedBatch.PositionIds);
            var leakyLoss = CausalLmLoss.Compute(model, leaky, packedBatch.Labels, new CrossEntropyOptions { Reduction = LossReduction.Sum }).item<float>();
            Assert.That(Math.Abs(leakyLoss - u.Sum), Is.GreaterThan(1e-3), "attention across documents changes the loss");
        }
        foreach (var g in p.Grads.Concat(u.Grads)) g.Dispose();
    }

    private static IEnumerable<TestCaseData> Cases() =>
        Models.SelectMany(f => new[] { false, true }.Select(fused => new TestCaseData(f, fused).SetName($"{f}, {(fused ? "fused kernels" : "reference ops")}")));
}
