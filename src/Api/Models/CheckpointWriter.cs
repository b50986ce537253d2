using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>
/// Writes Hugging Face-format checkpoints of any supported family: config.json, model.safetensors (or model-0000i-of-0000N shards with
/// model.safetensors.index.json above <see cref="ShardBytes"/>), generation_config.json and, when given, the tokenizer
/// files. The directory appears complete or not at all (written under a temporary name, then renamed).
/// </summary>
public static class CheckpointWriter
{
    /// <summary>Largest shard (bytes of tensor data); bigger checkpoints are sharded, as save_pretrained does.</summary>
    public const long ShardBytes = 2_000_000_000;

    /// <summary>
    /// Random weights as transformers initializes them (linears and embeddings N(0, 0.02²), norms at identity), drawn on the
    /// CPU from <paramref name="seed"/>, stored in bfloat16. <paramref name="bnb4bit"/>: the decoder projections as
    /// bitsandbytes NF4 (blocksize 64, double quantization) with the layout and quantization_config of a Hub
    /// "-bnb-4bit" checkpoint. <paramref name="tokenizerJsonSource"/>: a tokenizer.json (or its directory);
    /// tokenizer.json and tokenizer_config.json are copied from its directory. <paramref name="dir"/> must not exist or
    /// be empty.
    /// </summary>
    public static void WriteRandom(string dir, ModelConfig config, long seed, bool bnb4bit, string? tokenizerJsonSource = null) =>
        WriteRandom(dir, config, seed, bnb4bit, tokenizerJsonSource, ShardBytes);

    /// <summary><see cref="WriteRandom(string, ModelConfig, long, bool, string?)"/> with a given shard size (tests
    /// exercise sharding on tiny models).</summary>
    internal static void WriteRandom(string dir, ModelConfig config, long seed, bool bnb4bit, string? tokenizerJsonSource, long shardBytes)
    {
        ArgumentNullException.ThrowIfNull(dir);
        ArgumentNullException.ThrowIfNull(config);
        dir = Path.GetFullPath(dir.TrimEnd(Path.DirectorySeparatorChar));
        if (Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
            throw new IOException($"{dir}: exists and is not empty");
        string? tokenizerDir = null;
        if (tokenizerJsonSource is not null)
        {
            tokenizerDir = Directory.Exists(tokenizerJsonSource) ? tokenizerJsonSource : Path.GetDirectoryName(Path.GetFullPath(tokenizerJsonSource));
            if (tokenizerDir is null || !File.Exists(Path.Combine(tokenizerDir, "tokenizer.json")))
                throw new FileNotFoundException($"{tokenizerJsonSource}: no tokenizer.json there");
            config = WithTokenizerSpecialTokens(config, tokenizerDir);
        }
        using var staging = SlothSharp.IO.StagingDirectory.Beside(dir);
        var tmp = staging.Path;
        WriteWeights(tmp, config, seed, bnb4bit, shardBytes);
        WriteJson(Path.Combine(tmp, "config.json"), ConfigJson(config, bnb4bit));
        var gen = new JsonObject
        {
            ["_from_model_config"] = true,
            ["bos_token_id"] = config.BosTokenId,
            ["eos_token_id"] = ModelConfig.EosJson(config.EosTokenIds),
            ["transformers_version"] = "5.17.0",
        };
        if (config.PadTokenId is { } pad) gen["pad_token_id"] = pad;
        WriteJson(Path.Combine(tmp, "generation_config.json"), gen);
        if (tokenizerDir is not null)
            foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" })
                if (File.Exists(Path.Combine(tokenizerDir, name)))
                    File.Copy(Path.Combine(tokenizerDir, name), Path.Combine(tmp, name));
        if (Directory.Exists(dir)) Directory.Delete(dir);  // empty (checked above)
        staging.MoveTo(dir);
    }

    /// <summary>The config with bos/eos/pad token ids taken from the tokenizer that goes into the checkpoint, so that
    /// config.json and tokenizer_config.json name the same tokens (a mismatch makes transformers' generation and any
    /// "BOS from config.json" evaluation differ from the tokenizer's BOS). Ids outside the vocabulary are an error.</summary>
    private static ModelConfig WithTokenizerSpecialTokens(ModelConfig config, string tokenizerDir)
    {
        var tok = SlothSharp.Tokenization.HfTokenizer.FromDirectory(tokenizerDir);
        foreach (var (name, id) in new[] { ("bos", tok.BosTokenId), ("eos", tok.EosTokenId), ("pad", tok.PadTokenId) })
            if (id is { } v && (v < 0 || v >= config.VocabSize))
                throw new ArgumentException($"{tokenizerDir}: the tokenizer's {name} token id {v} is outside the model's vocabulary ({config.VocabSize})");
        var bos = tok.BosTokenId ?? config.BosTokenId;
        var eos = tok.EosTokenId is { } e ? new[] { e } : config.EosTokenIds;
        var pad = tok.PadTokenId ?? config.PadTokenId;
        return config with { BosTokenId = bos, EosTokenIds = eos, PadTokenId = pad };
    }

    /// <summary>config.json for <paramref name="config"/> (<see cref="ModelConfig.ToJson"/>, with the quantization_config
    /// transformers writes for a bnb-4bit model, or without one).</summary>
    public static JsonObject ConfigJson(ModelConfig config, bool bnb4bit)
    {
        var json = config.ToJson();
        json["dtype"] = "bfloat16";
        if (bnb4bit)
        {
            json["quantization_config"] = new JsonObject
            {
                ["_load_in_4bit"] = true,
                ["_load_in_8bit"] = false,
                ["bnb_4bit_compute_dtype"] = "bfloat16",
                ["bnb_4bit_quant_storage"] = "uint8",
                ["bnb_4bit_quant_type"] = "nf4",
                ["bnb_4bit_use_double_quant"] = true,
                ["llm_int8_enable_fp32_cpu_offload"] = false,
                ["llm_int8_has_fp16_weight"] = false,
                ["llm_int8_skip_modules"] = null,
                ["llm_int8_threshold"] = 6.0,
                ["load_in_4bit"] = true,
                ["load_in_8bit"] = false,
                ["quant_method"] = "bitsandbytes",
            };
        }
        return json;
    }

    private static void WriteJson(string path, JsonObject json) =>
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

    private static void WriteWeights(string dir, ModelConfig config, long seed, bool bnb4bit, long shardBytes)
    {
        using var gen = new Generator((ulong)seed);
        var shards = new List<List<string>>();
        var pending = new List<KeyValuePair<string, Tensor>>();
        long pendingBytes = 0, totalBytes = 0;
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };

        void Flush()
        {
            if (pending.Count == 0) return;
            var path = Path.Combine(dir, $"shard-{shards.Count}.tmp");
            SafetensorsWriter.Save(path, pending, metadata);
            shards.Add(pending.Select(p => p.Key).ToList());
            foreach (var (_, t) in pending) t.Dispose();
            pending.Clear();
            pendingBytes = 0;
        }

        void Add(string name, Tensor t)
        {
            var bytes = t.numel() * t.element_size();
            if (pendingBytes > 0 && pendingBytes + bytes > shardBytes) Flush();
            pending.Add(new(name, t));
            pendingBytes += bytes;
            totalBytes += bytes;
        }

        try
        {
            foreach (var (name, shape, role) in DecoderLayout.Tensors(config))
            {
                using var scope = NewDisposeScope();
                Tensor dense = role switch
                {
                    TensorRole.Norm => full(shape, RandomInit.NormInit(config), ScalarType.BFloat16),
                    TensorRole.Bias => zeros(shape, ScalarType.BFloat16),
                    _ => (randn(shape, ScalarType.Float32, generator: gen) * RandomInit.InitStd).to(ScalarType.BFloat16),
                };
                if (bnb4bit && role == TensorRole.Projection)
                {
                    using var q = Nf4Weight.Quantize(dense);
                    foreach (var (key, t) in q.ToSafetensorsEntries(name))
                        Add(key, t.clone().DetachFromDisposeScope());
                }
                else Add(name, dense.DetachFromDisposeScope());
            }
            Flush();
        }
        finally
        {
            foreach (var (_, t) in pending) t.Dispose();
        }

        if (shards.Count == 1)
        {
            File.Move(Path.Combine(dir, "shard-0.tmp"), Path.Combine(dir, "model.safetensors"));
            return;
        }
        var weightMap = new JsonObject();
        for (var i = 0; i < shards.Count; i++)
        {
            var file = string.Create(CultureInfo.InvariantCulture, $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors");
            File.Move(Path.Combine(dir, $"shard-{i}.tmp"), Path.Combine(dir, file));
            foreach (var name in shards[i]) weightMap[name] = file;
        }
        var sorted = new JsonObject();
        foreach (var (k, v) in weightMap.OrderBy(kv => kv.Key, StringComparer.Ordinal)) sorted[k] = v!.DeepClone();
        WriteJson(Path.Combine(dir, "model.safetensors.index.json"),
            new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = totalBytes }, ["weight_map"] = sorted });
    }
}
