using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Bad model directories and inputs: each a clear error naming the file and the field or tensor.</summary>
public class LlamaValidationTests
{
    private string _dir = "";

    [TearDown]
    public void Cleanup()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, true);
    }

    private ModelFormatException LoadFails(string source, Action<JsonObject>? edit = null, Action<string>? breakFiles = null,
                                           bool quantize = true)
    {
        _dir = LlamaGolden.CopyToTemp(source);
        if (edit is not null) LlamaGolden.EditConfig(_dir, edit);
        breakFiles?.Invoke(_dir);
        var e = Assert.Throws<ModelFormatException>(() =>
            CausalLM.FromPretrained(_dir, new LoadOptions { Quantize = quantize }).Dispose())!;
        TestContext.Out.WriteLine(e.Message);
        return e;
    }

    private static void AssertNames(ModelFormatException e, string file, string field)
    {
        Assert.That(e.File, Does.EndWith(file));
        Assert.That(e.Field, Is.EqualTo(field));
        Assert.That(e.Message, Does.Contain(file).And.Contain(field));
    }

    [Test]
    public void UnsupportedModelType() =>
        AssertNames(LoadFails(LlamaGolden.DenseDir, j => j["model_type"] = "gpt_neox"), "config.json", "model_type");

    [Test]
    public void UnknownRopeType() =>
        AssertNames(LoadFails(LlamaGolden.DenseDir, j => j["rope_parameters"]!["rope_type"] = "dynamic"), "config.json", "rope_parameters.rope_type");

    [Test]
    public void UnknownOldStyleRopeScaling() =>
        AssertNames(LoadFails(LlamaGolden.DenseDir, j =>
        {
            j.Remove("rope_parameters");
            j["rope_theta"] = 10000.0;
            j["rope_scaling"] = new JsonObject { ["type"] = "dynamic", ["factor"] = 2.0 };
        }), "config.json", "rope_scaling.rope_type");

    [Test]
    public void OtherActivation() =>
        AssertNames(LoadFails(LlamaGolden.DenseDir, j => j["hidden_act"] = "gelu"), "config.json", "hidden_act");

    [Test]
    public void MissingAndMistypedFields()
    {
        AssertNames(LoadFails(LlamaGolden.DenseDir, j => j.Remove("hidden_size")), "config.json", "hidden_size");
        Cleanup();
        AssertNames(LoadFails(LlamaGolden.DenseDir, j => j["num_hidden_layers"] = "2"), "config.json", "num_hidden_layers");
        Cleanup();
        AssertNames(LoadFails(LlamaGolden.DenseDir, j => j["tie_word_embeddings"] = 1), "config.json", "tie_word_embeddings");
        Cleanup();
        AssertNames(LoadFails(LlamaGolden.DenseDir, j => j["num_key_value_heads"] = 3), "config.json", "num_key_value_heads");
    }

    [Test]
    public void Fp4And8BitAndOtherStorage()
    {
        AssertNames(LoadFails(LlamaGolden.Nf4Dir, j => j["quantization_config"]!["bnb_4bit_quant_type"] = "fp4"),
            "config.json", "quantization_config.bnb_4bit_quant_type");
        Cleanup();
        AssertNames(LoadFails(LlamaGolden.Nf4Dir, j => j["quantization_config"]!["bnb_4bit_quant_storage"] = "bfloat16"),
            "config.json", "quantization_config.bnb_4bit_quant_storage");
        Cleanup();
        AssertNames(LoadFails(LlamaGolden.Nf4Dir, j => j["quantization_config"]!["load_in_8bit"] = true),
            "config.json", "quantization_config.load_in_8bit");
        Cleanup();
        AssertNames(LoadFails(LlamaGolden.Nf4Dir, j => j["quantization_config"]!["quant_method"] = "gptq"),
            "config.json", "quantization_config.quant_method");
    }

    [Test]
    public void WrongShapeForTheConfig()
    {
        var e = LoadFails(LlamaGolden.DenseDir, j => j["intermediate_size"] = 128);
        AssertNames(e, "model.safetensors", "model.layers.0.mlp.gate_proj.weight");
        Assert.That(e.Message, Does.Contain("[160, 64]").And.Contain("[128, 64]"));
        Cleanup();
        AssertNames(LoadFails(LlamaGolden.Nf4Dir, j => j["intermediate_size"] = 128), "model.safetensors", "model.layers.0.mlp.gate_proj.weight");
    }

    [Test]
    public void MissingTensor()
    {
        var e = LoadFails(LlamaGolden.DenseDir, breakFiles: dir =>
        {
            var path = Path.Combine(dir, "model.safetensors");
            List<KeyValuePair<string, Tensor>> kept;
            using (var r = new SafetensorsReader(path))
                kept = r.Entries.Keys.Where(k => k != "model.layers.1.self_attn.v_proj.weight")
                    .Select(k => new KeyValuePair<string, Tensor>(k, r.Read(k))).ToList();
            SafetensorsWriter.Save(path, kept);
        });
        AssertNames(e, "model.safetensors", "model.layers.1.self_attn.v_proj.weight");
    }

    [Test]
    public void UnreadableOrMissingFiles()
    {
        var e = LoadFails(LlamaGolden.DenseDir, breakFiles: dir => File.WriteAllText(Path.Combine(dir, "model.safetensors"), "garbage"));
        Assert.That(e.File, Does.EndWith("model.safetensors"));
        Cleanup();
        e = LoadFails(LlamaGolden.DenseDir, breakFiles: dir => File.Delete(Path.Combine(dir, "model.safetensors")));
        Assert.That(e.Field, Is.EqualTo("model.safetensors"));
        Cleanup();
        e = LoadFails(LlamaGolden.DenseDir, breakFiles: dir => File.Delete(Path.Combine(dir, "config.json")));
        Assert.That(e.File, Does.EndWith("config.json"));
        Cleanup();
        e = LoadFails(LlamaGolden.DenseDir, breakFiles: dir => File.WriteAllText(Path.Combine(dir, "config.json"), "{ not json"));
        Assert.That(e.File, Does.EndWith("config.json"));
        Assert.Throws<ModelFormatException>(() => CausalLM.FromPretrained("/nonexistent/model"));
    }

    [Test]
    public void SequenceLongerThanMaxPositions()
    {
        _dir = LlamaGolden.CopyToTemp(LlamaGolden.DenseDir);
        LlamaGolden.EditConfig(_dir, j => j["max_position_embeddings"] = 16);
        using var model = CausalLM.FromPretrained(_dir);
        using var noGrad = no_grad();
        using var ids = zeros([1, 17], ScalarType.Int64);
        var e = Assert.Throws<ArgumentException>(() => model.Forward(ids))!;
        Assert.That(e.Message, Does.Contain("max_position_embeddings").And.Contain("config.json"));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.NewKvCache(1, 17));
        using var cache = model.NewKvCache(1, 16);
        using var first = zeros([1, 10], ScalarType.Int64);
        model.Forward(first, null, cache).Dispose();
        using var more = zeros([1, 7], ScalarType.Int64);
        Assert.Throws<ArgumentException>(() => model.Forward(more, null, cache));
        using var bad = full([1, 3], 420L, ScalarType.Int64);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(bad));
    }

    [Test]
    public void ConfigFormats()
    {
        var path = Path.Combine(Path.GetTempPath(), $"sloth-config-{Guid.NewGuid():N}.json");
        try
        {
            var j = ModelPresets.Tiny.ToJson();
            j.Remove("rope_parameters");
            j["rope_theta"] = 10000.0;
            j["rope_scaling"] = new JsonObject { ["type"] = "linear", ["factor"] = 4.0 };
            j["eos_token_id"] = new JsonArray(1, 5);
            j.Remove("head_dim");
            File.WriteAllText(path, j.ToJsonString());
            var c = ModelConfig.Load(path);
            Assert.That(c.Rope, Is.EqualTo(new RopeSpec("linear", 10000, Factor: 4)));
            Assert.That(c.EosTokenIds, Is.EqualTo(new[] { 1, 5 }));
            Assert.That(c.HeadDim, Is.EqualTo(16));
            Assert.That(c.Raw["rope_scaling"], Is.Not.Null);

            j["rope_scaling"] = null;
            File.WriteAllText(path, j.ToJsonString());
            Assert.That(ModelConfig.Load(path).Rope, Is.EqualTo(RopeSpec.Default(10000)));

            var golden = ModelConfig.Load(Path.Combine(LlamaGolden.Nf4Dir, "config.json"));
            Assert.That(golden.Rope, Is.EqualTo(new RopeSpec("llama3", 500_000, Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64)));
            Assert.That(golden.ToJson().ToJsonString(), Is.EqualTo(ModelPresets.Tiny.ToJson().ToJsonString()), "Tiny is the golden shape");
            Assert.That(ModelPresets.Llama32_1B.ToString(), Does.Contain("16 layers"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void LoraMisuse()
    {
        using var model = CausalLM.FromPretrained(LlamaGolden.Nf4Dir);
        Assert.Throws<ArgumentException>(() => model.AddLora(new LoraConfig(TargetModules: ["qkv"]), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.AddLora(new LoraConfig(Rank: 0), 0));
        model.AddLora(new LoraConfig(Rank: 2, TargetModules: ["q_proj", "v_proj"], UseRslora: true), 0);
        Assert.That(model.LoraParameters().Select(kv => kv.Key).Take(4), Is.EqualTo(new[]
        {
            "model.layers.0.self_attn.q_proj.lora_A.weight", "model.layers.0.self_attn.q_proj.lora_B.weight",
            "model.layers.0.self_attn.v_proj.lora_A.weight", "model.layers.0.self_attn.v_proj.lora_B.weight",
        }));
        Assert.That(model.LoraParameters(), Has.Count.EqualTo(8));
        Assert.That(model.Lora!.Scale, Is.EqualTo(32 / Math.Sqrt(2)).Within(1e-12));
        var a = model.LoraParameters()[0].Value;
        Assert.That(a.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(a.abs().max().item<float>(), Is.LessThanOrEqualTo(1 / Math.Sqrt(64)), "PEFT's kaiming_uniform_(a=√5) bound");
        Assert.That(model.LoraParameters()[1].Value.abs().max().item<float>(), Is.EqualTo(0f), "B starts at zero");
        Assert.Throws<InvalidOperationException>(() => model.AddLora(new LoraConfig(), 0));
    }
}
