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

/// <summary>Builds a <see cref="CausalLM"/> from a Hugging Face model directory, one tensor at a time.</summary>
internal static class ModelLoader
{
    public static CausalLM Load(string dir, LoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(dir);
        if (!Directory.Exists(dir)) throw new ModelFormatException(dir, null, "model directory not found");
        dir = Path.GetFullPath(dir);
        var configPath = Path.Combine(dir, "config.json");
        if (!File.Exists(configPath)) throw new ModelFormatException(configPath, null, "not found (a Hugging Face model directory has config.json)");
        var cfg = ModelConfig.Load(configPath);
        var bnb = ReadQuantizationConfig(cfg.Raw, configPath);
        var (device, dtype) = options.Resolve();
        var progress = options.Progress;
        progress?.Report($"{configPath}: {cfg}{(bnb ? ", bitsandbytes 4-bit" : "")}");
        using var files = new CheckpointFiles(dir);
        progress?.Report($"reading {files.Description}");
        return DecoderBuilder.Build(cfg, dir, device, dtype, options.Quantize, new FileWeights(files, options, device, dtype),
            progress, options.Quantize && !bnb ? " (quantizing to NF4)" : "");
    }

    /// <summary>Weights read from the checkpoint files (dense, or bitsandbytes NF4 kept as NF4 or dequantized).</summary>
    private sealed class FileWeights(CheckpointFiles files, LoadOptions options, Device device, ScalarType dtype) : IWeightSource
    {
        public Tensor Dense(string name, long[] shape, TensorRole role)
        {
            using var t = files.Read(name, shape);
            return t.to(dtype).to(device).DetachFromDisposeScope();
        }

        public Projection Projection(string key, ProjectionSpec spec, Tensor? bias)
        {
            var (outF, inF) = (spec.Out, spec.In);
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
                    if (options.Quantize) return Models.Projection.Quantized(spec.Name, onDevice, bias);
                    using (onDevice) return Models.Projection.Dense(spec.Name, onDevice.Dequantize(dtype).DetachFromDisposeScope(), bias);
                }
            }
            using var t = files.Read(key, outF, inF);
            using var w = t.to(device).to(dtype);
            if (!options.Quantize) return Models.Projection.Dense(spec.Name, w.clone().DetachFromDisposeScope(), bias);
            // Quantized from the compute dtype, as transformers + bitsandbytes do when loading a dense checkpoint with
            // load_in_4bit (on CUDA the quantization runs on the GPU).
            var q = Nf4Weight.Quantize(w);
            q.DetachFromDisposeScope();
            return Models.Projection.Quantized(spec.Name, q, bias);
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
