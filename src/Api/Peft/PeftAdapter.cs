using System.Text.Json;
using System.Text.Json.Nodes;
using SlothSharp.IO;
using SlothSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Peft;

/// <summary>
/// LoRA adapters in Hugging Face PEFT's file format, so PEFT / transformers / vLLM load what SlothSharp trains and
/// SlothSharp loads what they write: a directory with <c>adapter_config.json</c> (PEFT's LoraConfig fields) and
/// <c>adapter_model.safetensors</c> (float32 tensors named <c>base_model.model.</c> + the model's LoRA parameter names,
/// e.g. <c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c>).
/// </summary>
public static class PeftAdapter
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    /// <summary>PEFT's prefix of every adapter tensor name (PeftModel → LoraModel → the transformers model).</summary>
    public const string KeyPrefix = "base_model.model.";

    /// <summary>Writes the model's LoRA adapters into <paramref name="dir"/> (created if missing; other files there are
    /// left alone). Both files are written to a temporary sibling first and renamed into place, weights before the
    /// config, so a reader never sees a half-written adapter.</summary>
    public static void Save(CausalLM model, string dir, string? baseModelNameOrPath = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var lora = model.Lora ?? throw new InvalidOperationException("the model has no LoRA adapters to save (AddLora or PeftAdapter.Load first)");
        var config = ConfigJson(lora, model.Config, baseModelNameOrPath ?? model.SourceDirectory);
        var full = Path.GetFullPath(dir);
        using var staging = StagingDirectory.Beside(full);
        var tmp = staging.Path;
        using (var scope = NewDisposeScope())
        {
            var tensors = model.LoraParameters()
                .Select(p => new KeyValuePair<string, Tensor>(KeyPrefix + p.Key, p.Value.detach().to(ScalarType.Float32).cpu().contiguous()))
                .ToList();
            SafetensorsWriter.Save(Path.Combine(tmp, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        }
        File.WriteAllText(Path.Combine(tmp, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        if (!Directory.Exists(full))
        {
            staging.MoveTo(full);
            return;
        }
        File.Move(Path.Combine(tmp, WeightsFile), Path.Combine(full, WeightsFile), overwrite: true);
        File.Move(Path.Combine(tmp, ConfigFile), Path.Combine(full, ConfigFile), overwrite: true);
    }

    /// <summary>PEFT's LoraConfig fields for these adapters (what PEFT 0.21 writes, minus the ones for other methods).</summary>
    internal static JsonObject ConfigJson(LoraConfig lora, ModelConfig model, string? baseModel) => new()
    {
        ["peft_type"] = "LORA",
        ["task_type"] = "CAUSAL_LM",
        ["base_model_name_or_path"] = baseModel,
        ["r"] = lora.Rank,
        ["lora_alpha"] = lora.Alpha,
        ["lora_dropout"] = lora.Dropout,
        ["target_modules"] = new JsonArray((lora.IsAllLinear ? lora.ResolveTargets(model) : lora.TargetModules!).Select(t => (JsonNode)t).ToArray()),
        ["bias"] = "none",
        ["use_rslora"] = lora.UseRslora,
        ["use_dora"] = false,
        ["fan_in_fan_out"] = false,
        ["inference_mode"] = true,
        ["init_lora_weights"] = true,
        ["lora_bias"] = false,
        ["modules_to_save"] = null,
        ["layers_to_transform"] = null,
        ["layers_pattern"] = null,
        ["rank_pattern"] = new JsonObject(),
        ["alpha_pattern"] = new JsonObject(),
        ["exclude_modules"] = null,
        ["revision"] = null,
    };

    /// <summary>Reads the LoRA configuration of an adapter directory, rejecting what SlothSharp cannot reproduce
    /// (DoRA, trained biases, modules_to_save, per-layer patterns, fan_in_fan_out).</summary>
    public static LoraConfig ReadConfig(string dir)
    {
        var path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no PEFT adapter config here (expected {ConfigFile} and {WeightsFile})", path);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new InvalidDataException($"{path}: empty JSON");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidDataException($"{path}: the top level must be a JSON object ({e.Message})", e);
        }
        InvalidDataException Bad(string field, string why) => new($"{path}: field '{field}': {why}");
        string? Str(string field) => root[field] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
        bool Flag(string field) => root[field] is JsonValue v && v.TryGetValue<bool>(out var b) && b;
        double Num(string field)
        {
            if (root[field] is JsonValue v && v.TryGetValue<double>(out var d) && double.IsFinite(d)) return d;
            throw Bad(field, root[field] is null ? "missing" : $"expected a number, got {root[field]!.ToJsonString()}");
        }

        var peftType = Str("peft_type");
        if (peftType != "LORA") throw Bad("peft_type", $"'{peftType ?? "(missing)"}' is not supported (only LORA)");
        if (Flag("use_dora")) throw Bad("use_dora", "DoRA adapters are not supported");
        var bias = Str("bias") ?? "none";
        if (bias != "none") throw Bad("bias", $"'{bias}' is not supported (only \"none\": SlothSharp trains no biases)");
        if (Flag("lora_bias")) throw Bad("lora_bias", "LoRA biases are not supported");
        if (Flag("fan_in_fan_out")) throw Bad("fan_in_fan_out", "true is for GPT-2-style Conv1D layers, which no supported family has");
        if (root["modules_to_save"] is JsonArray { Count: > 0 } mts)
            throw Bad("modules_to_save", $"fully trained modules ({mts.ToJsonString()}) are not supported");
        if (root["layers_to_transform"] is JsonNode ltt) throw Bad("layers_to_transform", $"per-layer selection ({ltt.ToJsonString()}) is not supported");
        foreach (var pattern in new[] { "rank_pattern", "alpha_pattern" })
            if (root[pattern] is JsonObject { Count: > 0 } p) throw Bad(pattern, $"per-module ranks/alphas ({p.ToJsonString()}) are not supported");
        var r = Num("r");
        if (r < 1 || r != Math.Floor(r)) throw Bad("r", $"{r} is not a positive integer");
        var alpha = Num("lora_alpha");
        var dropout = root["lora_dropout"] is null ? 0 : Num("lora_dropout");
        if (dropout is < 0 or >= 1) throw Bad("lora_dropout", $"{dropout} is outside [0, 1)");
        List<string> targets = root["target_modules"] switch
        {
            JsonArray a => a.Select(n => n is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Bad("target_modules", "expected module names")).ToList(),
            JsonValue v when v.TryGetValue<string>(out var s) && s == "all-linear" => ["all-linear"],
            JsonValue v when v.TryGetValue<string>(out var s) => throw Bad("target_modules", $"a regular expression ('{s}') is not supported; list the module names"),
            _ => throw Bad("target_modules", "missing"),
        };
        if (targets.Count == 0 || targets.Any(string.IsNullOrWhiteSpace)) throw Bad("target_modules", "expected module names");
        return new LoraConfig((int)r, alpha, dropout, targets, Flag("use_rslora"));
    }

    /// <summary>
    /// Loads the adapter in <paramref name="dir"/> into <paramref name="model"/>. A model without LoRA gets adapters with
    /// the file's configuration; a model with LoRA must have the same rank, alpha, rsLoRA flag and targets. Every tensor
    /// must be present with the right shape and none may be extra; an adapter made for another base (other hidden size,
    /// layer count or projection widths) fails with the file and key named.
    /// </summary>
    public static void Load(CausalLM model, string dir)
    {
        ArgumentNullException.ThrowIfNull(model);
        var config = ReadConfig(dir);
        var configPath = Path.Combine(dir, ConfigFile);
        var weightsPath = Path.Combine(dir, WeightsFile);
        if (!File.Exists(weightsPath)) throw new FileNotFoundException($"{weightsPath}: missing (the adapter's weights)", weightsPath);
        using var reader = new SafetensorsReader(weightsPath);

        // Check the file against the base before touching the model, so a wrong adapter leaves it unchanged.
        IReadOnlyList<string> targets;
        try
        {
            targets = config.ResolveTargets(model.Config);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{configPath}: field 'target_modules': {e.Message}", e);
        }
        CheckLayers(model, reader, weightsPath);
        if (model.Lora is null) model.AddLora(config, seed: 0);
        else
        {
            var have = model.Lora;
            if (have.Rank != config.Rank || have.Alpha != config.Alpha || have.UseRslora != config.UseRslora ||
                !have.ResolveTargets(model.Config).Order().SequenceEqual(targets.Order()))
                throw new InvalidDataException($"{configPath}: the adapter (r {config.Rank}, alpha {config.Alpha}, rslora {config.UseRslora}, targets " +
                    $"{string.Join(",", targets)}) differs from the model's LoRA (r {have.Rank}, alpha {have.Alpha}, " +
                    $"rslora {have.UseRslora}, targets {string.Join(",", have.ResolveTargets(model.Config))})");
        }

        var parameters = model.LoraParameters();
        var expected = parameters.Select(p => KeyPrefix + p.Key).ToHashSet(StringComparer.Ordinal);
        var missing = expected.Where(k => !reader.Entries.ContainsKey(k)).Order().ToList();
        var extra = reader.Entries.Keys.Where(k => !expected.Contains(k)).Order().ToList();
        if (missing.Count > 0 || extra.Count > 0)
            throw new InvalidDataException($"{weightsPath}: the adapter's tensors do not match this base model's LoRA layers" +
                (missing.Count > 0 ? $"; missing {missing.Count}: {Shorten(missing)}" : "") +
                (extra.Count > 0 ? $"; unexpected {extra.Count}: {Shorten(extra)}" : ""));
        foreach (var (name, p) in parameters)
        {
            var e = reader.Entries[KeyPrefix + name];
            if (!e.Shape.SequenceEqual(p.shape))
                throw new InvalidDataException($"{weightsPath}: tensor '{KeyPrefix + name}' has shape [{string.Join(", ", e.Shape)}], this base needs " +
                    $"[{string.Join(", ", p.shape)}] (an adapter for another base model?)");
        }
        using (no_grad())
        {
            foreach (var (name, p) in parameters)
            {
                using var t = reader.Read(KeyPrefix + name);
                if (!t.is_floating_point())
                    throw new InvalidDataException($"{weightsPath}: tensor '{KeyPrefix + name}' has dtype {t.dtype}, expected a float type");
                p.copy_(t);
            }
        }
    }

    /// <summary>Layer count and hidden size: a clearer message than a shape mismatch when the adapter is for another base.</summary>
    private static void CheckLayers(CausalLM model, SafetensorsReader reader, string path)
    {
        var cfg = model.Config;
        foreach (var (key, e) in reader.Entries)
        {
            const string marker = "model.layers.";
            var at = key.IndexOf(marker, StringComparison.Ordinal);
            if (at < 0) continue;
            var rest = key[(at + marker.Length)..];
            var dot = rest.IndexOf('.');
            if (dot > 0 && int.TryParse(rest[..dot], out var layer) && layer >= cfg.NumHiddenLayers)
                throw new InvalidDataException($"{path}: tensor '{key}' is for decoder layer {layer}, but this base model has " +
                    $"{cfg.NumHiddenLayers} layers (an adapter for another base model)");
            if (e.Shape.Length == 2 && key.EndsWith(".lora_A.weight", StringComparison.Ordinal) &&
                DecoderLayout.Projections(cfg).Any(p => p.In == cfg.HiddenSize && key.Contains($".{p.Name}.", StringComparison.Ordinal)) &&
                e.Shape[1] != cfg.HiddenSize)
                throw new InvalidDataException($"{path}: tensor '{key}' has {e.Shape[1]} input features, but this base model's hidden size is " +
                    $"{cfg.HiddenSize} (an adapter for another base model)");
        }
    }

    private static string Shorten(List<string> keys) =>
        string.Join(", ", keys.Take(4)) + (keys.Count > 4 ? $", … ({keys.Count - 4} more)" : "");
}
