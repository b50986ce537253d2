using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Models;
using SlothSharp.Peft;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>PEFT adapter files: the golden adapter written by PEFT 0.21 loads, saves with exactly PEFT's keys, round
/// trips bit-exactly, and adapters that do not fit the base fail with the file and key named.</summary>
public class PeftAdapterTests() : TempDirFixture("llama")
{
    [Test]
    public void SavedAdapterHasExactlyPeftsKeysAndConfig()
    {
        using var model = LlamaGolden.LoadBase();
        PeftAdapter.Load(model, LlamaGolden.AdapterDir);
        Assert.That(model.Lora!.Rank, Is.EqualTo(4));
        Assert.That(model.Lora.Alpha, Is.EqualTo(8));
        var saved = Path.Combine(Dir, "adapter");
        PeftAdapter.Save(model, saved, "../dense");

        using var theirs = new SafetensorsReader(Path.Combine(LlamaGolden.AdapterDir, PeftAdapter.WeightsFile));
        using var mine = new SafetensorsReader(Path.Combine(saved, PeftAdapter.WeightsFile));
        Assert.That(mine.Entries.Keys.Order(), Is.EqualTo(theirs.Entries.Keys.Order()), "tensor names");
        foreach (var (key, e) in theirs.Entries)
        {
            Assert.That(mine.Entries[key].Dtype, Is.EqualTo("F32"), key);
            Assert.That(mine.Entries[key].Shape, Is.EqualTo(e.Shape), key);
            using var a = mine.Read(key);
            using var b = theirs.Read(key);
            Assert.That(TestEnv.BitEqual(a, b), Is.True, $"{key}: values survive load + save unchanged");
        }

        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(saved, PeftAdapter.ConfigFile)))!.AsObject();
        Assert.That(cfg["peft_type"]!.GetValue<string>(), Is.EqualTo("LORA"));
        Assert.That(cfg["task_type"]!.GetValue<string>(), Is.EqualTo("CAUSAL_LM"));
        Assert.That(cfg["r"]!.GetValue<int>(), Is.EqualTo(4));
        Assert.That(cfg["lora_alpha"]!.GetValue<double>(), Is.EqualTo(8));
        Assert.That(cfg["bias"]!.GetValue<string>(), Is.EqualTo("none"));
        Assert.That(cfg["base_model_name_or_path"]!.GetValue<string>(), Is.EqualTo("../dense"));
        Assert.That(cfg["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order(),
            Is.EqualTo(new[] { "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj" }));
        // Every field we write is one PEFT 0.21 itself writes (the golden config), so PEFT's LoraConfig accepts it.
        var peftFields = JsonNode.Parse(File.ReadAllText(Path.Combine(LlamaGolden.AdapterDir, PeftAdapter.ConfigFile)))!.AsObject()
            .Select(kv => kv.Key).ToHashSet();
        Assert.That(cfg.Select(kv => kv.Key).Where(k => !peftFields.Contains(k)), Is.Empty, "fields PEFT does not know");
        Assert.That(Directory.GetDirectories(Dir).Where(d => Path.GetFileName(d).StartsWith('.')), Is.Empty, "no temporary directory left");
    }

    [Test]
    public void SaveThenLoadIsExact()
    {
        using var trained = LlamaGolden.LoadBase();
        trained.AddLora(new LoraConfig(Rank: 3, Alpha: 5, TargetModules: ["q_proj", "v_proj", "down_proj"], UseRslora: true), seed: 11);
        using (no_grad())
            foreach (var (_, p) in trained.LoraParameters()) p.copy_(randn_like(p));  // B is zero after init: make it count
        PeftAdapter.Save(trained, Dir);

        using var fresh = LlamaGolden.LoadBase();
        PeftAdapter.Load(fresh, Dir);
        Assert.That(fresh.Lora!.UseRslora, Is.True);
        Assert.That(fresh.Lora.ResolveTargets(fresh.Config), Is.EqualTo(trained.Lora!.ResolveTargets(trained.Config)));
        var a = trained.LoraParameters();
        var b = fresh.LoraParameters();
        Assert.That(b.Select(p => p.Key), Is.EqualTo(a.Select(p => p.Key)));
        foreach (var (x, y) in a.Zip(b)) Assert.That(TestEnv.BitEqual(x.Value, y.Value), Is.True, x.Key);

        // Saving again over an existing adapter replaces it (two files renamed into place).
        PeftAdapter.Save(fresh, Dir);
        Assert.That(Directory.GetFiles(Dir).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { PeftAdapter.ConfigFile, PeftAdapter.WeightsFile }));
    }

    [Test]
    public void LoadingIntoAModelWithOtherLoraSettingsFails()
    {
        using var model = LlamaGolden.LoadBase();
        model.AddLora(new LoraConfig(Rank: 8, Alpha: 16), seed: 1);
        var e = Assert.Throws<InvalidDataException>(() => PeftAdapter.Load(model, LlamaGolden.AdapterDir))!;
        Assert.That(e.Message, Does.Contain(PeftAdapter.ConfigFile).And.Contain("r 4"));
    }

    [TestCase(1, 64, "layers")]
    [TestCase(2, 128, "hidden size")]
    public void AnAdapterForAnotherBaseFailsNamingFileAndKey(int layers, int hidden, string what)
    {
        var other = Path.Combine(Dir, "other-base");
        var cfg = ModelPresets.Tiny with { HiddenSize = hidden, NumHiddenLayers = layers, HeadDim = hidden / 4, Rope = RopeSpec.Default(500_000) };
        CheckpointWriter.WriteRandom(other, cfg, seed: 3, bnb4bit: true);
        using var model = LlamaGolden.LoadBase(other);
        var e = Assert.Throws<InvalidDataException>(() => PeftAdapter.Load(model, LlamaGolden.AdapterDir))!;
        Assert.That(e.Message, Does.Contain(PeftAdapter.WeightsFile).And.Contain("base_model.model.model.layers.").And.Contain(what));
        Assert.That(model.Lora, Is.Null, "a rejected adapter leaves the model unchanged");
    }

    [TestCase("use_dora", "true", "DoRA")]
    [TestCase("bias", "\"all\"", "bias")]
    [TestCase("modules_to_save", "[\"lm_head\"]", "modules_to_save")]
    [TestCase("peft_type", "\"IA3\"", "peft_type")]
    [TestCase("target_modules", "\".*proj\"", "target_modules")]
    [TestCase("target_modules", "[\"embed_tokens\"]", "target_modules")]
    public void UnsupportedConfigFieldsAreClearErrors(string field, string json, string expected)
    {
        foreach (var f in Directory.GetFiles(LlamaGolden.AdapterDir)) File.Copy(f, Path.Combine(Dir, Path.GetFileName(f)));
        var path = Path.Combine(Dir, PeftAdapter.ConfigFile);
        var cfg = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        cfg[field] = JsonNode.Parse(json);
        File.WriteAllText(path, cfg.ToJsonString());
        using var model = LlamaGolden.LoadBase();
        var e = Assert.Throws<InvalidDataException>(() => PeftAdapter.Load(model, Dir))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain(field).And.Contain(expected));
    }

    [Test]
    public void MissingAndExtraTensorsAreNamed()
    {
        foreach (var f in Directory.GetFiles(LlamaGolden.AdapterDir)) File.Copy(f, Path.Combine(Dir, Path.GetFileName(f)));
        var weights = Path.Combine(Dir, PeftAdapter.WeightsFile);
        List<KeyValuePair<string, Tensor>> tensors;
        using (var r = new SafetensorsReader(weights))
            tensors = r.Entries.Keys.Order().Select(k => new KeyValuePair<string, Tensor>(k, r.Read(k))).ToList();
        var dropped = tensors[0].Key;
        tensors.RemoveAt(0);
        tensors.Add(new("base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight", zeros(4, 4)));
        SafetensorsWriter.Save(weights, tensors);
        using var model = LlamaGolden.LoadBase();
        var e = Assert.Throws<InvalidDataException>(() => PeftAdapter.Load(model, Dir))!;
        Assert.That(e.Message, Does.Contain(weights).And.Contain(dropped).And.Contain("lora_C"));
    }

    [Test]
    public void AMissingAdapterDirectoryIsAClearError()
    {
        using var model = LlamaGolden.LoadBase();
        var e = Assert.Throws<FileNotFoundException>(() => PeftAdapter.Load(model, Path.Combine(Dir, "nope")))!;
        Assert.That(e.Message, Does.Contain(PeftAdapter.ConfigFile));
    }
}
