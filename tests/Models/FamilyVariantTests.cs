using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Generation;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Configuration variants the public checkpoints do not cover (tests/data/hf-variants, README there): float32
/// logits of a padded batch and of a short row, and greedy ids, against transformers' eager computation.</summary>
[TestFixtureSource(nameof(Variants))]
public sealed class FamilyVariantTests(string variant)
{
    public static readonly string[] Variants =
        ["llama-bias-linear", "llama-yarn", "qwen2-sliding", "qwen3-yarn", "mistral-nohd", "gemma2-3l", "gemma3-6l", "phi3-partial-longrope", "phi3-075"];

    private string Dir => Path.Combine(TestEnv.DataDir, "hf-variants", variant);
    private JsonObject Expected => JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "expected.json")))!.AsObject();

    private CausalLM Load() => CausalLM.FromPretrained(Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32, Quantize = false });

    private static Tensor Ids(JsonNode n) => tensor(n.AsArray().Select(x => x!.GetValue<long>()).ToArray());

    private static double RelativeError(Tensor got, JsonArray expectedRows)
    {
        var want = tensor(expectedRows.SelectMany(r => r!.AsArray().Select(x => x!.GetValue<float>())).ToArray()).reshape(got.shape);
        return (got - want).abs().max().item<float>() / (want.abs().max().item<float>() + 1e-9);
    }

    [TestCase(true)]
    [TestCase(false)]
    public void PaddedBatchLogitsMatchTransformers(bool fused)
    {
        var e = Expected;
        using var model = Load();
        model.UseFusedKernels = fused;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var rows = e["input_ids"]!.AsArray();
        var lengths = e["lengths"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
        var ids = stack(rows.Select(r => Ids(r!)).ToArray());
        var mask = zeros_like(ids);
        for (var i = 0; i < lengths.Length; i++) mask[i].narrow(0, 0, lengths[i]).fill_(1);
        var logits = model.Logits(model.Forward(ids, mask));
        for (var i = 0; i < lengths.Length; i++)
            Assert.That(RelativeError(logits[i].narrow(0, 0, lengths[i]), e["logits"]![i]!.AsArray()), Is.LessThan(2e-5), $"row {i}");
    }

    [Test]
    public void ShortRowLogitsMatchTransformers()
    {
        var e = Expected;
        using var model = Load();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = model.Logits(model.Forward(Ids(e["short_ids"]!).unsqueeze(0)))[0];
        Assert.That(RelativeError(logits, e["short_logits"]!.AsArray()), Is.LessThan(2e-5));
    }

    [Test]
    public void GreedyContinuationMatchesTransformers()
    {
        var e = Expected;
        using var model = Load();
        var prompt = e["prompt_ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
        var want = e["generate_ids"]!.AsArray().Select(x => x!.GetValue<int>()).Skip(prompt.Length).ToArray();
        var margins = e["generate_top2_margins"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
        var got = TextGenerator.Generate(model, prompt, new GenerationOptions(MaxNewTokens: want.Length, StopTokenIds: [])).ToArray();
        // Compared up to the first step whose top-2 margin is within float32 noise (none is, in practice).
        var n = Array.FindIndex(margins, m => m < 1e-4);
        if (n < 0) n = want.Length;
        if (!model.Config.Rope.IsDynamic)
        {
            Assert.That(got.Take(n), Is.EqualTo(want.Take(n)));
            return;
        }
        // longrope: transformers 5.17's generate() stops being a reference once the sequence passes
        // original_max_position_embeddings (from then on it feeds each new token alone, without its context: see
        // LongRopeGoldenTests). Its ids are compared up to there; the whole continuation is compared with greedy
        // decoding by full forwards without a cache, whose long-factor logits PaddedBatchLogitsMatchTransformers ties
        // to transformers' own forward.
        var switchStep = model.Config.Rope.OriginalMaxPositionEmbeddings - prompt.Length + 1;
        Assert.That(switchStep, Is.InRange(1, want.Length - 1), "the golden's continuation should cross the switch");
        var k = Math.Min(n, switchStep);
        Assert.That(got.Take(k), Is.EqualTo(want.Take(k)), "before the switch");
        // Goldens remade by the current tools/hf/make_variant_goldens.py carry transformers' own full-forward ids.
        var reference = e["full_forward_ids"] is JsonArray f
            ? f.Select(x => x!.GetValue<int>()).Skip(prompt.Length).ToArray()
            : GreedyWithoutCache(model, prompt, want.Length);
        Assert.That(got, Is.EqualTo(reference), "the whole continuation");
    }

    /// <summary>Greedy ids by a full forward over the whole sequence at every step (no KV cache): the definition the
    /// cached generation must reproduce.</summary>
    private static int[] GreedyWithoutCache(CausalLM model, IReadOnlyList<int> prompt, int count)
    {
        using var noGrad = no_grad();
        var ids = prompt.Select(i => (long)i).ToList();
        var produced = new int[count];
        for (var i = 0; i < count; i++)
        {
            using var scope = NewDisposeScope();
            var logits = model.Logits(model.Forward(tensor(ids.ToArray()).reshape(1, -1)).select(1, -1))[0];
            produced[i] = (int)logits.argmax().item<long>();
            ids.Add(produced[i]);
        }
        return produced;
    }
}
