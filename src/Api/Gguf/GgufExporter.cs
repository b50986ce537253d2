using System.Diagnostics;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Gguf;

/// <summary>
/// Writes a Hugging Face causal LM as a GGUF file that llama.cpp (and Ollama, LM Studio, LLamaSharp) runs: llama.cpp's
/// tensor names and layouts, its per-architecture metadata, the tokenizer, and the tensor types of the chosen output
/// type (quantized bit-identically to llama.cpp's reference quantizers). The input is decoupled from SlothSharp's
/// model classes: config.json as JSON, the dense tensors under their Hugging Face names, and the model directory for
/// the tokenizer files.
/// </summary>
public static class GgufExporter
{
    /// <summary>
    /// Exports a model. Tensors are consumed one at a time (each converted, quantized and appended to a temporary data
    /// file beside the output), so peak memory is about one tensor in float32 plus its quantized bytes.
    /// </summary>
    /// <param name="config">config.json of the model.</param>
    /// <param name="tensors">Dense CPU tensors (float32, bf16 or f16) under Hugging Face names, e.g.
    /// "model.layers.0.self_attn.q_proj.weight" ([out, in]); the caller keeps ownership.</param>
    /// <param name="modelDir">Directory with tokenizer.json (and tokenizer_config.json, generation_config.json).</param>
    /// <param name="outPath">The .gguf file to write (replaced atomically).</param>
    /// <param name="options">Output type, name, progress.</param>
    public static GgufExportResult Export(JsonObject config, IEnumerable<KeyValuePair<string, Tensor>> tensors, string modelDir,
        string outPath, GgufExportOptions? options = null) =>
        Export(config, FromTensors(tensors), modelDir, outPath, options);

    private static IEnumerable<InputTensor> FromTensors(IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        foreach (var (name, tensor) in tensors)
            yield return new InputTensor(name, tensor.shape, dst => ToFloats(tensor, name, dst));
    }

    /// <summary>A tensor to export: its Hugging Face name and shape, and how to write its values as float32 (row-major,
    /// exactly the shape's element count) into the exporter's buffer.</summary>
    private readonly record struct InputTensor(string Name, long[] Shape, FillFloats Fill);

    private delegate void FillFloats(Span<float> destination);

    private static GgufExportResult Export(JsonObject config, IEnumerable<InputTensor> tensors, string modelDir,
        string outPath, GgufExportOptions? options)
    {
        options ??= new GgufExportOptions();
        var progress = options.Progress;
        var configFile = Path.Combine(modelDir, "config.json");
        var cfg = new HfModelConfig(config, configFile);
        var arch = GgufArchitecture.For(cfg);
        var tokenizer = GgufTokenizerMetadata.FromDirectory(modelDir, config);
        foreach (var w in tokenizer.Warnings) progress?.Report("warning: " + w);

        var full = Path.GetFullPath(outPath);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"output directory {dir} does not exist");
        var dataPath = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.data");
        var sw = Stopwatch.StartNew();
        try
        {
            var planner = new GgufTensorTypePlan.Planner(options.Type, cfg.NumLayers, cfg.NumLayers, arch.TiedEmbeddings);
            var written = new List<(string Name, long[] Dims, GgmlType Type, long Offset, long Bytes)>();
            var times = new Dictionary<GgmlType, (long Weights, TimeSpan Time)>();
            TimeSpan sourceTime = TimeSpan.Zero, toFloatTime = TimeSpan.Zero, writeTime = TimeSpan.Zero;
            using (var data = new FileStream(dataPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                // One float32 buffer and one quantized-bytes buffer, grown to the largest tensor and reused: fresh
                // gigabyte arrays per tensor cost more in page faults and zeroing than the conversion itself.
                var floats = Array.Empty<float>();
                var quantized = Array.Empty<byte>();
                void Append(string name, long[] dims, ReadOnlySpan<float> values)
                {
                    var type = planner.Next(name, dims);
                    var offset = data.Position;
                    // In slices of rows, so a tensor whose quantized bytes exceed one array (an 8B model's f32
                    // embedding) streams through. On a GPU, larger slices: one launch then has enough blocks to fill it.
                    var rowLength = dims[0];
                    var native = options.QuantizeDevice is not null && NativeGgmlQuantizer.Supports(type);
                    var rowsPerSlice = Math.Max(1, (int)((native ? 1L << 26 : 1L << 24) / rowLength));
                    var quantizeTime = TimeSpan.Zero;
                    for (long row = 0, rows = values.Length / rowLength; row < rows; row += rowsPerSlice)
                    {
                        var n = Math.Min(rowsPerSlice, rows - row);
                        var byteCount = checked((int)(n * GgmlTypeInfo.RowBytes(type, rowLength)));
                        if (quantized.Length < byteCount) quantized = GC.AllocateUninitializedArray<byte>(byteCount);
                        var t0 = Stopwatch.GetTimestamp();
                        var slice = values.Slice((int)(row * rowLength), (int)(n * rowLength));
                        if (native) NativeGgmlQuantizer.Quantize(slice, rowLength, type, quantized.AsSpan(0, byteCount), options.QuantizeDevice!);
                        else GgmlQuantizer.Quantize(slice, rowLength, type, quantized.AsSpan(0, byteCount));
                        quantizeTime += Stopwatch.GetElapsedTime(t0);
                        var w0 = Stopwatch.GetTimestamp();
                        data.Write(quantized, 0, byteCount);
                        writeTime += Stopwatch.GetElapsedTime(w0);
                    }
                    times.TryGetValue(type, out var sofar);
                    times[type] = (sofar.Weights + values.Length, sofar.Time + quantizeTime);
                    written.Add((name, dims, type, offset, data.Position - offset));
                    progress?.Report($"[{written.Count}] {name,-32} {type,-5} [{string.Join(", ", dims)}]");
                }

                if (arch.RopeFrequencyFactors() is { } ropeFactors) Append("rope_freqs.weight", [ropeFactors.Length], ropeFactors);
                if (arch.LongRopeFactors() is var (longFactors, shortFactors))
                {
                    Append("rope_factors_long.weight", [longFactors.Length], longFactors);
                    Append("rope_factors_short.weight", [shortFactors.Length], shortFactors);
                }
                using var source = tensors.GetEnumerator();
                while (true)
                {
                    // The input's own time (dequantizing NF4, merging LoRA; reading a tensor given to Export) apart.
                    var s0 = Stopwatch.GetTimestamp();
                    var more = source.MoveNext();
                    sourceTime += Stopwatch.GetElapsedTime(s0);
                    if (!more) break;
                    var (hfName, shape, fill) = source.Current;
                    var name = arch.TensorName(hfName);
                    if (name is null) continue;
                    if (written.Any(t => t.Name == name)) throw new InvalidDataException($"tensor '{hfName}' maps to '{name}', which was already written");
                    if (shape.Length is < 1 or > 2) throw new InvalidDataException($"tensor '{hfName}' has shape [{string.Join(", ", shape)}]; 1-D or 2-D expected");
                    var f0 = Stopwatch.GetTimestamp();
                    var count = shape.Aggregate(1L, (a, b) => a * b);
                    if (count > Array.MaxLength) throw new InvalidDataException($"tensor '{hfName}' has {count} elements; the exporter takes at most {Array.MaxLength}");
                    if (floats.Length < count) floats = GC.AllocateUninitializedArray<float>((int)count);
                    var values = floats.AsSpan(0, (int)count);
                    fill(values);
                    if (!options.AllowNonFinite) RequireFinite(hfName, shape, values);
                    arch.Transform(name, values, shape);
                    toFloatTime += Stopwatch.GetElapsedTime(f0);
                    Append(name, shape.Reverse().ToArray(), values);
                }
            }
            Validate(written.Select(t => t.Name).ToHashSet(), arch, cfg);

            var writer = new GgufWriter();
            writer.Add("general.architecture", GgufValue.Str(arch.Name));
            writer.Add("general.type", GgufValue.Str("model"));
            writer.Add("general.name", GgufValue.Str(options.Name ?? new DirectoryInfo(modelDir).Name));
            writer.Add("general.file_type", GgufValue.U32(options.Type.FileType()));
            if (options.Type.IsQuantized()) writer.Add("general.quantization_version", GgufValue.U32(2));
            arch.AddHyperParameters(writer);
            tokenizer.AddTo(writer);
            foreach (var t in written)
                writer.AddTensor(t.Name, t.Dims, t.Type, (Action<Stream>)(s => CopySegment(dataPath, t.Offset, t.Bytes, s)));
            var a0 = Stopwatch.GetTimestamp();
            writer.Write(full);
            var assembleTime = Stopwatch.GetElapsedTime(a0);
            var counts = written.GroupBy(t => t.Type).ToDictionary(g => g.Key, g => g.Count());
            var size = new FileInfo(full).Length;
            progress?.Report($"wrote {full}: {arch.Name}, {options.Type.Name()}, {written.Count} tensors ({string.Join(", ", counts.Select(kv => $"{kv.Value} {kv.Key}"))}), {size / 1048576.0:F1} MiB in {sw.Elapsed.TotalSeconds:F1} s");
            // Conversion speed per type, in MB of float32 input per second (what the quantizers are compared on).
            progress?.Report("conversion: " + string.Join(", ", times.OrderBy(kv => kv.Key).Select(kv =>
                $"{kv.Key} {kv.Value.Weights * 4 / 1e6:F0} MB in {kv.Value.Time.TotalSeconds:F1} s ({kv.Value.Weights * 4 / 1e6 / Math.Max(kv.Value.Time.TotalSeconds, 1e-9):F0} MB/s)")));
            var stages = new GgufExportStages(sourceTime, toFloatTime, new TimeSpan(times.Values.Sum(t => t.Time.Ticks)), writeTime, assembleTime);
            progress?.Report($"stages: input {stages.Input.TotalSeconds:F1} s, to float32 {stages.ToFloat32.TotalSeconds:F1} s, quantize {stages.Quantize.TotalSeconds:F1} s, " +
                             $"write {stages.Write.TotalSeconds:F1} s, assemble {stages.Assemble.TotalSeconds:F1} s");
            return new GgufExportResult(full, arch.Name, options.Type, written.Count, size, counts, tokenizer.Warnings)
            {
                ConversionTimes = times,
                Stages = stages,
                Elapsed = sw.Elapsed,
            };
        }
        finally
        {
            try { File.Delete(dataPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Exports the model directory's own safetensors (no SlothSharp model involved): the plain path for a
    /// dense or merged checkpoint on disk.</summary>
    public static GgufExportResult ExportDirectory(string modelDir, string outPath, GgufExportOptions? options = null)
    {
        var configPath = Path.Combine(modelDir, "config.json");
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{configPath} not found", configPath);
        var config = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? throw new InvalidDataException($"{configPath}: not a JSON object");
        if (config["quantization_config"] is not null)
            throw new NotSupportedException($"{configPath}: the checkpoint is quantized (quantization_config); export a dense checkpoint or use `sloth export`, which dequantizes");
        using var ckpt = SafetensorsCheckpoint.Open(modelDir);
        return Export(config, Read(ckpt), modelDir, outPath, options);

        static IEnumerable<InputTensor> Read(SafetensorsCheckpoint c)
        {
            // Layer order (embedding, layers 0, 1, ..., 10, then the rest), not the files' lexicographic order, so the
            // q4_k_m layer choices follow layer numbers.
            var ordered = c.Keys.Select((k, i) => (Key: k, Index: i)).OrderBy(e => SortKey(e.Key)).ThenBy(e => e.Index).Select(e => e.Key);
            // Values go from the memory-mapped shard straight into the exporter's float32 buffer (no tensor between).
            foreach (var key in ordered)
                yield return new InputTensor(key, c.Entry(key).Shape, dst => c.ReadFloat32(key, dst));
        }
    }

    private static (int Group, int Layer) SortKey(string name)
    {
        if (name.Contains("embed_tokens", StringComparison.Ordinal)) return (0, 0);
        var i = name.IndexOf(".layers.", StringComparison.Ordinal);
        if (i < 0) return (2, 0);
        var j = i + 8;
        var k = j;
        while (k < name.Length && char.IsAsciiDigit(name[k])) k++;
        return int.TryParse(name.AsSpan(j, k - j), out var layer) ? (1, layer) : (2, 0);
    }

    private static void Validate(HashSet<string> names, GgufArchitecture arch, HfModelConfig cfg)
    {
        if (!names.Contains("token_embd.weight")) throw new InvalidDataException("model.embed_tokens.weight is missing");
        if (!names.Contains("output_norm.weight")) throw new InvalidDataException("model.norm.weight is missing");
        if (!arch.TiedEmbeddings && !names.Contains("output.weight"))
            throw new InvalidDataException($"lm_head.weight is missing but {cfg.File} does not tie the embeddings (tie_word_embeddings false)");
        for (var i = 0; i < cfg.NumLayers; i++)
            if (!names.Contains($"blk.{i}.attn_norm.weight"))
                throw new InvalidDataException($"layer {i} is missing (model.layers.{i}.input_layernorm.weight not given; config has {cfg.NumLayers} layers)");
    }

    /// <summary>Stops the export at a tensor holding NaN or ±infinity (see <see cref="GgufExportOptions.AllowNonFinite"/>),
    /// naming the first one's row and column in the checkpoint's layout (before any permutation for llama.cpp).</summary>
    internal static void RequireFinite(string hfName, long[] shape, ReadOnlySpan<float> values)
    {
        var (count, first) = NonFiniteValues.Find(values);
        if (count == 0) return;
        var columns = shape.Length == 2 ? shape[1] : values.Length;
        var value = values[(int)first];
        var where = shape.Length == 2 ? $"row {first / columns}, column {first % columns}" : $"index {first}";
        throw new InvalidDataException(
            $"tensor '{hfName}' [{string.Join(", ", shape)}] holds {count} non-finite value{(count == 1 ? "" : "s")} (NaN or infinity), " +
            $"the first ({value.ToString(System.Globalization.CultureInfo.InvariantCulture)}) at {where}: the checkpoint is broken (a diverged fine-tune, a bad merge?) " +
            "and nothing was written. To export it as it is: GgufExportOptions.AllowNonFinite (sloth export --allow-non-finite).");
    }

    internal static float[] ToFloats(Tensor t, string name)
    {
        var values = new float[checked((int)t.numel())];
        ToFloats(t, name, values);
        return values;
    }

    /// <summary>
    /// Converts a CPU tensor (float32, bfloat16 or float16; any strides) to float32 into <paramref name="destination"/>
    /// (exactly numel long), row-major. Widening is exact (bf16: the 16 bits moved up; f16: IEEE half to single), so
    /// this is the same as torch's <c>to(float32)</c>, without the intermediate tensor and managed copy; it runs in
    /// parallel over chunks.
    /// </summary>
    internal static void ToFloats(Tensor t, string name, Span<float> destination)
    {
        if (t.device_type != DeviceType.CPU) throw new ArgumentException($"tensor '{name}' is on {t.device}; the exporter takes CPU tensors");
        if (t.dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"tensor '{name}' has dtype {t.dtype}; float32, bfloat16 or float16 expected");
        if (destination.Length != t.numel()) throw new ArgumentException($"tensor '{name}' has {t.numel()} elements; the destination holds {destination.Length}", nameof(destination));
        if (destination.Length == 0) return;
        using var c = t.contiguous();
        Float32Widening.Convert(TensorInterop.DataPtr(c), c.dtype switch
        {
            ScalarType.Float32 => Float32Widening.Source.F32,
            ScalarType.BFloat16 => Float32Widening.Source.BF16,
            _ => Float32Widening.Source.F16,
        }, destination);
        GC.KeepAlive(c);
    }

    private static void CopySegment(string path, long offset, long count, Stream destination)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        fs.Position = offset;
        var buffer = new byte[1 << 20];
        while (count > 0)
        {
            var n = fs.Read(buffer, 0, (int)Math.Min(buffer.Length, count));
            if (n == 0) throw new EndOfStreamException($"{path}: temporary tensor data ended early");
            destination.Write(buffer, 0, n);
            count -= n;
        }
    }
}
