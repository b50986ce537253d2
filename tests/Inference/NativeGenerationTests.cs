using NUnit.Framework;
using SlothSharp.Generation;
using SlothSharp.Models;
using SlothSharp.Peft;

namespace SlothSharp.Tests.Inference;

/// <summary>The generators with native decoding (the default) against the same generators on the model's forward:
/// every family golden with its adapter, one prompt (TextGenerator) and a left-padded batch with per-row stopping
/// (BatchGenerator); and that the engine really ran (the adapter reports no reason it could not).</summary>
public class NativeGenerationTests
{
    private static readonly int[] Prompt = [1, 5, 9, 13, 17, 21, 25];
    private static readonly int[][] Prompts = [[1, 5, 9, 13, 17, 21, 25], [1, 40, 41], [1, 7, 3, 99, 64], [1, 2]];

    private static IEnumerable<string> Models() => FamilyGolden.Families.Prepend("llama");

    private static CausalLM Load(string family)
    {
        if (family == "llama")
        {
            var llama = LlamaGolden.LoadBase(LlamaGolden.Nf4Dir);
            PeftAdapter.Load(llama, LlamaGolden.AdapterDir);
            return llama;
        }
        var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        return model;
    }

    [TestCaseSource(nameof(Models))]
    public void SinglePromptGreedyEqualsTheForwardPath(string family)
    {
        using var model = Load(family);
        var options = new GenerationOptions(MaxNewTokens: 24, StopTokenIds: []);
        var native = new CausalLmAdapter(model, nativeDecoding: true);
        var fast = TextGenerator.Generate(native, Prompt, options).ToArray();
        Assert.That(native.NativeDecodingUnavailable, Is.Null, "the engine should have run");
        var reference = TextGenerator.Generate(new CausalLmAdapter(model), Prompt, options).ToArray();
        Assert.That(fast, Is.EqualTo(reference));
    }

    [TestCase("llama")]
    [TestCase("phi3")]
    [TestCase("gemma2")]
    public void MergedAdapterGreedyEqualsTheForwardPath(string family)
    {
        using var model = Load(family);
        var options = new GenerationOptions(MaxNewTokens: 16, StopTokenIds: [], MergeLoraWhenDecoding: true);
        var native = new CausalLmAdapter(model, nativeDecoding: true, mergeLora: true);
        var fast = TextGenerator.Generate(native, Prompt, options).ToArray();
        Assert.That(native.NativeDecodingUnavailable, Is.Null, "the engine should have run");
        var reference = TextGenerator.Generate(new CausalLmAdapter(model), Prompt, options).ToArray();
        Assert.That(fast, Is.EqualTo(reference));
    }

    [TestCase("llama")]
    [TestCase("qwen3")]
    [TestCase("gemma2")]
    public void DenseWeightsBatchEqualsTheForwardPath(string family)
    {
        using var model = Load(family);
        var options = new GenerationOptions(MaxNewTokens: 12, StopTokenIds: [], DenseWeightsWhenDecoding: true);
        var native = CausalLmAdapter.For(model, options);
        var fast = BatchGenerator.Generate(native, Prompts, options, batchSize: 4);
        Assert.That(native.NativeDecodingUnavailable, Is.Null, "the engine should have run");
        var reference = BatchGenerator.Generate(model, Prompts, options with { NativeDecoding = false }, batchSize: 4);
        Assert.That(fast.Select(r => r.TokenIds), Is.EqualTo(reference.Select(r => r.TokenIds)));
    }

    [TestCaseSource(nameof(Models))]
    public void BatchWithStopsEqualsTheForwardPath(string family)
    {
        using var model = Load(family);
        // Stop at the token the reference makes third for prompt 1, so rows finish at different steps.
        var probe = BatchGenerator.Generate(model, Prompts, new GenerationOptions(MaxNewTokens: 3, StopTokenIds: [], NativeDecoding: false));
        var options = new GenerationOptions(MaxNewTokens: 20, StopTokenIds: [probe[1].TokenIds[^1]]);
        var fast = BatchGenerator.Generate(model, Prompts, options, batchSize: 4);
        var reference = BatchGenerator.Generate(model, Prompts, options with { NativeDecoding = false }, batchSize: 4);
        Assert.That(fast.Select(r => r.TokenIds), Is.EqualTo(reference.Select(r => r.TokenIds)));
        Assert.That(fast.Select(r => r.FinishReason), Is.EqualTo(reference.Select(r => r.FinishReason)));
    }
}
