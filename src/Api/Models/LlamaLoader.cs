using TorchSharp;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>
/// The tensors of a Hugging Face checkpoint: a single model.safetensors, or the shards that
/// model.safetensors.index.json's weight_map names. Files are opened on first use and read one tensor at a time.
/// </summary>
internal sealed class CheckpointFiles : IDisposable
{
    private readonly string _dir;
    private readonly Dictionary<string, string> _fileOf = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SafetensorsReader> _readers = new(StringComparer.Ordinal);

    public CheckpointFiles(string dir)
    {
        _dir = dir;
        var index = Path.Combine(dir, "model.safetensors.index.json");
        var single = Path.Combine(dir, "model.safetensors");
        if (File.Exists(index))
        {
            Description = index;
            JsonObject map;
            try
            {
                map = (JsonNode.Parse(File.ReadAllText(index)) as JsonObject)?["weight_map"] as JsonObject
                      ?? throw new ModelFormatException(index, "weight_map", "is missing or not an object");
            }
            catch (JsonException e)
            {
                throw new ModelFormatException(index, null, $"not valid JSON ({e.Message})", e);
            }
            foreach (var (name, file) in map)
            {
                if (file is not JsonValue v || v.GetValueKind() != JsonValueKind.String)
                    throw new ModelFormatException(index, $"weight_map.{name}", "must be a file name");
                var f = v.GetValue<string>();
                if (f.Contains('/') || f.Contains('\\') || f.Contains(".."))
                    throw new ModelFormatException(index, $"weight_map.{name}", $"'{f}' is not a file name in the model directory");
                _fileOf[name] = f;
            }
        }
        else if (File.Exists(single))
        {
            Description = single;
            foreach (var name in Open("model.safetensors").Entries.Keys) _fileOf[name] = "model.safetensors";
        }
        else
        {
            throw new ModelFormatException(dir, "model.safetensors", "neither model.safetensors nor model.safetensors.index.json exists");
        }
    }

    /// <summary>The file that lists the tensors (for error messages).</summary>
    public string Description { get; }

    public bool Contains(string name) => _fileOf.ContainsKey(name);

    /// <summary>The reader of the file holding <paramref name="name"/>; a missing tensor is an error naming it.</summary>
    public SafetensorsReader ReaderFor(string name)
    {
        if (!_fileOf.TryGetValue(name, out var file))
            throw new ModelFormatException(Description, name, "tensor missing from the checkpoint");
        var reader = Open(file);
        if (!reader.Entries.ContainsKey(name))
            throw new ModelFormatException(reader.Path, name, "tensor missing (the index lists it in this file)");
        return reader;
    }

    /// <summary>Reads a tensor (CPU, stored dtype) and checks its shape.</summary>
    public Tensor Read(string name, params long[] shape)
    {
        var reader = ReaderFor(name);
        var entry = reader.Entries[name];
        if (!entry.Shape.SequenceEqual(shape))
            throw new ModelFormatException(reader.Path, name,
                $"shape [{string.Join(", ", entry.Shape)}] does not match config.json, which implies [{string.Join(", ", shape)}]");
        try
        {
            return reader.Read(name);
        }
        catch (Exception e) when (e is IOException or InvalidDataException && e is not ModelFormatException)
        {
            throw new ModelFormatException(reader.Path, name, $"cannot be read ({e.Message})", e);
        }
    }

    private SafetensorsReader Open(string file)
    {
        if (_readers.TryGetValue(file, out var r)) return r;
        var path = Path.Combine(_dir, file);
        try
        {
            r = new SafetensorsReader(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or JsonException
                                      or InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new ModelFormatException(path, null, $"cannot be read as safetensors ({e.Message})", e);
        }
        _readers[file] = r;
        return r;
    }

    public void Dispose()
    {
        foreach (var r in _readers.Values) r.Dispose();
        _readers.Clear();
    }
}

/// <summary>Builds a <see cref="LlamaForCausalLM"/> from a Hugging Face model directory, one tensor at a time.</summary>
internal static class LlamaLoader
{
    public static LlamaForCausalLM Load(string dir, LoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(dir);
        if (!Directory.Exists(dir)) throw new ModelFormatException(dir, null, "model directory not found");
        dir = Path.GetFullPath(dir);
        var configPath = Path.Combine(dir, "config.json");
        if (!File.Exists(configPath)) throw new ModelFormatException(configPath, null, "not found (a Hugging Face model directory has config.json)");
        var cfg = LlamaConfig.Load(configPath);
        var bnb = ReadQuantizationConfig(cfg.Raw, configPath);
        var device = options.Device ?? CPU;
        var dtype = options.ComputeDtype ?? (device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32);
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"ComputeDtype must be float32, bfloat16 or float16; got {dtype}", nameof(options));
        var progress = options.Progress;
        progress?.Report($"{configPath}: {cfg}{(bnb ? ", bitsandbytes 4-bit" : "")}");

        using var files = new CheckpointFiles(dir);
        progress?.Report($"reading {files.Description}");
        var (v, h, inter) = ((long)cfg.VocabSize, (long)cfg.HiddenSize, (long)cfg.IntermediateSize);
        var (qOut, kvOut) = ((long)cfg.NumAttentionHeads * cfg.HeadDim, (long)cfg.NumKeyValueHeads * cfg.HeadDim);
        var built = new List<IDisposable>();
        try
        {
            Tensor Dense(string key, params long[] shape)
            {
                using var t = files.Read(key, shape);
                var r = t.to(dtype).to(device).DetachFromDisposeScope();
                built.Add(r);
                return r;
            }

            LlamaLinear Proj(string prefix, string name, long outF, long inF, bool bias)
            {
                var key = $"{prefix}.{name}.weight";
                var b = bias ? Dense($"{prefix}.{name}.bias", outF) : null;
                LlamaLinear layer;
                if (files.Contains(key + ".quant_state.bitsandbytes__nf4") || files.Contains(key + ".quant_state.bitsandbytes__fp4"))
                {
                    var reader = files.ReaderFor(key);
                    Nf4Weight cpuWeight;
                    try
                    {
                        cpuWeight = Nf4Weight.FromSafetensors(reader, key);
                    }
                    catch (Exception e) when (e is InvalidDataException or KeyNotFoundException or ArgumentException
                                                  or InvalidOperationException or FormatException or NullReferenceException
                                                  && e is not ModelFormatException)
                    {
                        throw new ModelFormatException(reader.Path, key, e.Message, e);
                    }
                    using (cpuWeight)
                    {
                        if (!cpuWeight.Shape.SequenceEqual([outF, inF]))
                            throw new ModelFormatException(reader.Path, key,
                                $"shape [{string.Join(", ", cpuWeight.Shape)}] (quant_state) does not match config.json, which implies [{outF}, {inF}]");
                        var onDevice = options.Quantize && options.PlaceNf4 is { } place ? place(key, cpuWeight, device) : cpuWeight.To(device);
                        onDevice.DetachFromDisposeScope();
                        if (options.Quantize) layer = LlamaLinear.Quantized(name, onDevice, b);
                        else
                        {
                            using (onDevice) layer = LlamaLinear.Dense(name, onDevice.Dequantize(dtype).DetachFromDisposeScope(), b);
                        }
                    }
                }
                else
                {
                    using var t = files.Read(key, outF, inF);
                    using var w = t.to(device).to(dtype);
                    if (options.Quantize)
                    {
                        // Quantized from the compute dtype, as transformers + bitsandbytes do when loading a dense
                        // checkpoint with load_in_4bit (on CUDA the quantization runs on the GPU).
                        var q = Nf4Weight.Quantize(w);
                        q.DetachFromDisposeScope();
                        layer = LlamaLinear.Quantized(name, q, b);
                    }
                    else layer = LlamaLinear.Dense(name, w.clone().DetachFromDisposeScope(), b);
                }
                built.Add(layer);
                return layer;
            }

            var embed = new WeightOnly("embed_tokens", Dense("model.embed_tokens.weight", v, h));
            var layers = new List<LlamaDecoderLayer>();
            for (var i = 0; i < cfg.NumHiddenLayers; i++)
            {
                progress?.Report($"layer {i + 1}/{cfg.NumHiddenLayers}{(options.Quantize && !bnb ? " (quantizing to NF4)" : "")}");
                var p = $"model.layers.{i}";
                var a = $"{p}.self_attn";
                var m = $"{p}.mlp";
                var attn = new LlamaAttention(cfg,
                    Proj(a, "q_proj", qOut, h, cfg.AttentionBias), Proj(a, "k_proj", kvOut, h, cfg.AttentionBias),
                    Proj(a, "v_proj", kvOut, h, cfg.AttentionBias), Proj(a, "o_proj", h, qOut, cfg.AttentionBias));
                var mlp = new LlamaMlp(Proj(m, "gate_proj", inter, h, cfg.MlpBias), Proj(m, "up_proj", inter, h, cfg.MlpBias),
                    Proj(m, "down_proj", h, inter, cfg.MlpBias));
                layers.Add(new LlamaDecoderLayer(i.ToString(System.Globalization.CultureInfo.InvariantCulture), attn, mlp,
                    new LlamaRmsNorm("input_layernorm", Dense($"{p}.input_layernorm.weight", h), cfg.RmsNormEps),
                    new LlamaRmsNorm("post_attention_layernorm", Dense($"{p}.post_attention_layernorm.weight", h), cfg.RmsNormEps)));
            }
            var norm = new LlamaRmsNorm("norm", Dense("model.norm.weight", h), cfg.RmsNormEps);
            var lmHead = cfg.TieWordEmbeddings ? null : new WeightOnly("lm_head", Dense("lm_head.weight", v, h));
            var model = new LlamaModel(embed, layers, norm);
            progress?.Report("loaded");
            return new LlamaForCausalLM(cfg, dir, device, dtype, options.Quantize, model, lmHead);
        }
        catch
        {
            foreach (var d in built) d.Dispose();
            throw;
        }
    }

    /// <summary>False for a dense checkpoint; true for a bitsandbytes 4-bit NF4 one; anything else is an error naming
    /// config.json and the field.</summary>
    internal static bool ReadQuantizationConfig(JsonObject raw, string configPath)
    {
        if (raw["quantization_config"] is null) return false;
        var q = new JsonFields(raw, configPath).Object("quantization_config");
        var method = q.String("quant_method", required: true);
        if (method != "bitsandbytes")
            throw new ModelFormatException(configPath, "quantization_config.quant_method", $"'{method}' is not supported (dense or bitsandbytes 4-bit NF4 only)");
        if ((q.Bool("load_in_8bit") ?? q.Bool("_load_in_8bit")) == true)
            throw new ModelFormatException(configPath, "quantization_config.load_in_8bit", "8-bit bitsandbytes checkpoints are not supported (4-bit NF4 only)");
        if ((q.Bool("load_in_4bit") ?? q.Bool("_load_in_4bit")) != true)
            throw new ModelFormatException(configPath, "quantization_config.load_in_4bit", "must be true (SlothSharp reads bitsandbytes 4-bit NF4)");
        var type = q.String("bnb_4bit_quant_type") ?? "fp4";  // bitsandbytes' default
        if (type != "nf4")
            throw new ModelFormatException(configPath, "quantization_config.bnb_4bit_quant_type", $"'{type}' is not supported (nf4 only)");
        var storage = q.String("bnb_4bit_quant_storage") ?? "uint8";
        if (storage != "uint8")
            throw new ModelFormatException(configPath, "quantization_config.bnb_4bit_quant_storage", $"'{storage}' is not supported (uint8 only)");
        if (q.Bool("bnb_4bit_use_double_quant") == false)
            throw new ModelFormatException(configPath, "quantization_config.bnb_4bit_use_double_quant", "false is not supported (SlothSharp reads double-quantized NF4)");
        return true;
    }
}
