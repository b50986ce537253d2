using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SlothSharp.Gguf;

/// <summary>
/// Writes a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) as a GGUF LoRA file that llama.cpp
/// applies on top of the base model's GGUF (<c>--lora</c>, LLamaSharp's LoRA API, Ollama's ADAPTER): metadata
/// <c>general.type = adapter</c>, <c>adapter.type = lora</c>, <c>adapter.lora.alpha</c>; tensors
/// <c>&lt;gguf weight name&gt;.lora_a</c> (ggml dims [in, r]) and <c>.lora_b</c> ([r, out]). llama.cpp scales by
/// alpha / r, as PEFT does; rsLoRA's alpha/√r is written as an equivalent alpha. For Llama-arch models the rows of
/// B of q/k projections are permuted as the base weights are (W = B·A, so permuting W's rows permutes B's).
/// </summary>
public static class GgufLoraExporter
{
    /// <param name="baseConfig">config.json of the base model (architecture, heads for the permutation).</param>
    /// <param name="adapterDir">PEFT adapter directory.</param>
    /// <param name="outPath">The .gguf file to write.</param>
    /// <param name="type">F32, F16, BF16 or Q8_0 (the types llama.cpp accepts for LoRA tensors).</param>
    /// <param name="progress">One line per tensor.</param>
    /// <param name="allowNonFinite">Write A and B matrices holding NaN or infinity as they are; by default such a matrix stops the export (see <see cref="GgufExportOptions.AllowNonFinite"/>).</param>
    public static GgufExportResult Export(JsonObject baseConfig, string adapterDir, string outPath,
        GgufOutputType type = GgufOutputType.F16, IProgress<string>? progress = null, bool allowNonFinite = false)
    {
        if (type is not (GgufOutputType.F32 or GgufOutputType.F16 or GgufOutputType.BF16 or GgufOutputType.Q8_0))
            throw new ArgumentException($"LoRA adapters are written as f32, f16, bf16 or q8_0, not {type.Name()}", nameof(type));
        var configPath = Path.Combine(adapterDir, "adapter_config.json");
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{configPath} not found: not a PEFT adapter directory", configPath);
        var ac = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? throw new InvalidDataException($"{configPath}: not a JSON object");
        var arch = GgufArchitecture.For(new HfModelConfig(baseConfig, "config.json"));
        var (alpha, rank) = ReadAlpha(ac, configPath);

        var weightsPath = Path.Combine(adapterDir, "adapter_model.safetensors");
        if (!File.Exists(weightsPath))
            throw new FileNotFoundException($"{weightsPath} not found (adapter_model.bin is not supported: save the adapter with safetensors)", weightsPath);
        using var reader = new SafetensorsReader(weightsPath);
        var pairs = new SortedDictionary<string, (string? A, string? B)>(new LayerOrder());
        foreach (var key in reader.Keys)
        {
            var name = key.StartsWith("base_model.model.", StringComparison.Ordinal) ? key["base_model.model.".Length..] : key;
            string module;
            bool isA;
            if (name.EndsWith(".lora_A.weight", StringComparison.Ordinal)) { module = name[..^".lora_A.weight".Length]; isA = true; }
            else if (name.EndsWith(".lora_B.weight", StringComparison.Ordinal)) { module = name[..^".lora_B.weight".Length]; isA = false; }
            else throw new NotSupportedException($"{weightsPath}: tensor '{key}' is not a LoRA A/B matrix (embedding adapters, DoRA magnitudes, biases and modules_to_save cannot go into a GGUF LoRA)");
            pairs.TryGetValue(module, out var p);
            pairs[module] = isA ? (key, p.B) : (p.A, key);
        }
        if (pairs.Count == 0) throw new InvalidDataException($"{weightsPath}: no LoRA tensors");

        var writer = new GgufWriter();
        writer.Add("general.architecture", GgufValue.Str(arch.Name));
        writer.Add("general.type", GgufValue.Str("adapter"));
        writer.Add("general.name", GgufValue.Str(new DirectoryInfo(adapterDir).Name));
        writer.Add("adapter.type", GgufValue.Str("lora"));
        writer.Add("adapter.lora.alpha", GgufValue.F32((float)alpha));
        var tensorType = type.DefaultTensorType();
        var counts = new Dictionary<GgmlType, int>();
        foreach (var (module, (aKey, bKey)) in pairs)
        {
            if (aKey is null || bKey is null) throw new InvalidDataException($"{weightsPath}: module '{module}' has only one of lora_A / lora_B");
            var gguf = arch.TensorName(module + ".weight")
                ?? throw new NotSupportedException($"{weightsPath}: module '{module}' has no GGUF tensor in {arch.Name}");
            using var a = reader.Read(aKey);
            using var b = reader.Read(bKey);
            if (a.shape.Length != 2 || b.shape.Length != 2 || a.shape[0] != b.shape[1])
                throw new InvalidDataException($"{weightsPath}: '{module}' has A [{string.Join(", ", a.shape)}] and B [{string.Join(", ", b.shape)}]; expected [r, in] and [out, r]");
            if (a.shape[0] != rank && !(ac["rank_pattern"] is JsonObject rp && rp.Count > 0))
                throw new InvalidDataException($"{weightsPath}: '{module}' has rank {a.shape[0]} but adapter_config.json says r = {rank}");
            var aValues = GgufExporter.ToFloats(a, aKey);
            var bValues = GgufExporter.ToFloats(b, bKey);
            if (!allowNonFinite)
            {
                GgufExporter.RequireFinite(aKey, a.shape, aValues);
                GgufExporter.RequireFinite(bKey, b.shape, bValues);
            }
            if (arch.PermutesQk && gguf.EndsWith("attn_q.weight", StringComparison.Ordinal))
                GgufArchitecture.PermuteForRope(bValues, b.shape, arch.Config.NumHeads);
            else if (arch.PermutesQk && gguf.EndsWith("attn_k.weight", StringComparison.Ordinal))
                GgufArchitecture.PermuteForRope(bValues, b.shape, arch.Config.NumKvHeads);
            foreach (var (suffix, values, shape) in new[] { (".lora_a", aValues, a.shape), (".lora_b", bValues, b.shape) })
            {
                long[] dims = [shape[1], shape[0]];
                var t = GgufTensorTypePlan.Fallback(tensorType, dims[0]);
                var bytes = GgmlQuantizer.Quantize(values, dims[0], t);
                writer.AddTensor(gguf + suffix, dims, t, bytes);
                counts[t] = counts.GetValueOrDefault(t) + 1;
                progress?.Report($"{gguf + suffix,-40} {t,-5} [{dims[0]}, {dims[1]}]");
            }
        }
        writer.Write(outPath);
        var size = new FileInfo(outPath).Length;
        progress?.Report($"wrote LoRA adapter {Path.GetFullPath(outPath)}: {arch.Name}, {writer.TensorCount} tensors, alpha {alpha}, r {rank}, {size / 1024.0:F1} KiB");
        return new GgufExportResult(Path.GetFullPath(outPath), arch.Name, type, writer.TensorCount, size, counts, []);
    }

    private static (double Alpha, int Rank) ReadAlpha(JsonObject ac, string file)
    {
        if (ac["peft_type"]?.GetValue<string>() is { } pt && pt != "LORA")
            throw new NotSupportedException($"{file}: peft_type '{pt}' is not LoRA");
        if (ac["use_dora"] is JsonValue d && d.GetValue<bool>())
            throw new NotSupportedException($"{file}: DoRA adapters cannot be written as GGUF LoRA; merge them (`sloth export --model M --adapter A`)");
        if (ac["alpha_pattern"] is JsonObject ap && ap.Count > 0 || ac["rank_pattern"] is JsonObject rp && rp.Count > 0)
            throw new NotSupportedException($"{file}: per-module rank_pattern/alpha_pattern cannot be written as one GGUF LoRA alpha; merge the adapter instead");
        if (ac["modules_to_save"] is JsonArray m && m.Count > 0)
            throw new NotSupportedException($"{file}: modules_to_save ({m.ToJsonString()}) are full weights, not LoRA; merge the adapter instead");
        var rank = ac["r"]?.GetValue<int>() ?? throw new InvalidDataException($"{file}: 'r' missing");
        var alpha = ac["lora_alpha"]?.GetValue<double>() ?? throw new InvalidDataException($"{file}: 'lora_alpha' missing");
        // llama.cpp scales by alpha / r; rsLoRA scales by alpha / sqrt(r), which is alpha·sqrt(r) / r.
        if (ac["use_rslora"] is JsonValue rs && rs.GetValue<bool>()) alpha *= Math.Sqrt(rank);
        return (alpha, rank);
    }

    /// <summary>Orders module names by layer number, then name, so the file lists layers 0, 1, 2, ..., 10.</summary>
    private sealed class LayerOrder : IComparer<string>
    {
        public int Compare(string? x, string? y)
        {
            var lx = Layer(x!);
            var ly = Layer(y!);
            return lx != ly ? lx.CompareTo(ly) : string.CompareOrdinal(x, y);
        }

        private static int Layer(string s)
        {
            var i = s.IndexOf("layers.", StringComparison.Ordinal);
            if (i < 0) return -1;
            var j = i + 7;
            var k = j;
            while (k < s.Length && char.IsAsciiDigit(s[k])) k++;
            return int.TryParse(s.AsSpan(j, k - j), out var n) ? n : -1;
        }
    }
}
