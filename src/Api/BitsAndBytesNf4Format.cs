using System.Globalization;
using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>
/// How bitsandbytes (and so transformers, for every <c>*-bnb-4bit</c> checkpoint) stores an NF4 weight with double
/// quantization under a key <c>K</c> (e.g. <c>model.layers.0.self_attn.q_proj.weight</c>):
/// <list type="table">
/// <item><term><c>K</c></term><description>uint8 [ceil(n/2), 1]: the packed codes</description></item>
/// <item><term><c>K.absmax</c></term><description>uint8 [blocks]: each block's absmax, 8-bit coded</description></item>
/// <item><term><c>K.quant_map</c></term><description>float32 [16]: the NF4 code table</description></item>
/// <item><term><c>K.nested_absmax</c></term><description>float32 [ceil(blocks/nested_blocksize)]</description></item>
/// <item><term><c>K.nested_quant_map</c></term><description>float32 [256]: the dynamic map of the absmax codes</description></item>
/// <item><term><c>K.quant_state.bitsandbytes__nf4</c></term><description>uint8 [bytes]: UTF-8 JSON (Python's
/// <c>json.dumps</c> of quant_type, blocksize, dtype, shape, nested_blocksize, nested_dtype, nested_offset)</description></item>
/// </list>
/// Read and written here byte for byte as bitsandbytes writes them, so files SlothSharp writes load in transformers.
/// </summary>
public static class BitsAndBytesNf4Format
{
    /// <summary>The key suffix of the JSON quant state.</summary>
    public const string QuantStateSuffix = ".quant_state.bitsandbytes__nf4";
    private const string Fp4StateSuffix = ".quant_state.bitsandbytes__fp4";

    /// <summary>The checkpoint key of a tensor of the weight stored at <paramref name="key"/>.</summary>
    public static string KeyOf(string key, Nf4TensorSpec spec) =>
        spec.KeySuffix is { } suffix ? key + suffix : throw new ArgumentException($"{spec.Name} is not stored as a tensor (it is in the quant_state JSON)");

    /// <summary>Every checkpoint key of the weight at <paramref name="key"/>, in bitsandbytes' order (the five tensors,
    /// then the quant state).</summary>
    public static IReadOnlyList<string> Keys(string key) =>
        [.. Nf4TensorSpec.All.Where(s => s.KeySuffix is not null).Select(s => key + s.KeySuffix), key + QuantStateSuffix];

    /// <summary>Whether <paramref name="source"/> holds a bitsandbytes NF4 weight at <paramref name="key"/>.</summary>
    public static bool IsNf4(ITensorSource source, string key) => source.Contains(key + QuantStateSuffix);

    /// <summary>The keys K of all NF4 weights in a source (those with a <c>K.quant_state.bitsandbytes__nf4</c>), sorted.</summary>
    public static List<string> WeightKeys(ITensorSource source) =>
        source.Keys.Where(k => k.EndsWith(QuantStateSuffix, StringComparison.Ordinal))
            .Select(k => k[..^QuantStateSuffix.Length]).Order(StringComparer.Ordinal).ToList();

    /// <summary>
    /// Reads the NF4 weight stored at <paramref name="key"/> onto <paramref name="device"/> (default CPU). Errors
    /// (<see cref="InvalidDataException"/>, naming the source and the key): no quant state (not 4-bit, or FP4), a
    /// missing tensor, JSON that is not bitsandbytes' NF4 double-quant state, tensors whose dtype or size disagree with it.
    /// </summary>
    public static Nf4Weight Read(ITensorSource source, string key, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(key);
        var stateKey = key + QuantStateSuffix;
        if (!source.Contains(stateKey))
        {
            throw new InvalidDataException(source.Contains(key + Fp4StateSuffix)
                ? $"{source.Path}: '{key}' is FP4-quantized; SlothSharp reads NF4 only"
                : $"{source.Path}: no '{stateKey}': '{key}' is not a bitsandbytes 4-bit weight with double quantization");
        }
        Nf4QuantState state;
        using (var json = source.Read(stateKey))
        {
            if (json.dtype != ScalarType.Byte)
                throw new InvalidDataException($"{source.Path}: '{stateKey}' is {json.dtype}, expected uint8 UTF-8 bytes");
            state = ParseQuantState(json.bytes, $"{source.Path}: '{stateKey}'");
        }
        using var scope = NewDisposeScope();
        var parts = new Dictionary<Nf4TensorSpec, Tensor>();
        foreach (var spec in Nf4TensorSpec.All.Where(s => s.KeySuffix is not null))
        {
            var k = key + spec.KeySuffix;
            if (!source.Contains(k))
                throw new InvalidDataException($"{source.Path}: '{k}' is missing: '{key}' has a quant state but not all its tensors");
            var t = source.Read(k, device);
            if (t.dtype != spec.Dtype || t.numel() != spec.Numel(state))
                throw new InvalidDataException(
                    $"{source.Path}: '{k}' is {t.dtype} [{string.Join(", ", t.shape)}]; the quant state ({state}) needs {spec.Dtype} with {spec.Numel(state)} elements");
            parts[spec] = t;
        }
        var result = Nf4Weight.FromState(state, parts[Nf4TensorSpec.Packed], parts[Nf4TensorSpec.Absmax],
            parts[Nf4TensorSpec.CodeTable], parts[Nf4TensorSpec.NestedAbsmax], parts[Nf4TensorSpec.NestedCodeMap]);
        result.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>The weight's tensors under bitsandbytes' keys and shapes (views of the weight's tensors, plus a new
    /// uint8 tensor of the JSON, on the CPU), ready for <see cref="SafetensorsWriter"/> or a state dict.</summary>
    public static IReadOnlyList<KeyValuePair<string, Tensor>> Entries(Nf4Weight weight, string key)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(key);
        var list = new List<KeyValuePair<string, Tensor>>();
        foreach (var (spec, t) in weight.Tensors)
            if (spec.KeySuffix is not null) list.Add(new(key + spec.KeySuffix, t.view(spec.StoredShape(weight.State))));
        list.Add(new(key + QuantStateSuffix, QuantStateTensor(weight.State)));
        return list;
    }

    /// <summary>The quant state as bitsandbytes stores it: a uint8 [bytes] CPU tensor of UTF-8 JSON.</summary>
    public static Tensor QuantStateTensor(Nf4QuantState state) => tensor(Encoding.UTF8.GetBytes(FormatQuantState(state)), ScalarType.Byte);

    /// <summary>The JSON bitsandbytes writes for <paramref name="state"/>: Python's <c>json.dumps</c> of its dict (keys in
    /// bitsandbytes' order, ", " and ": " separators, floats as Python's repr).</summary>
    public static string FormatQuantState(Nf4QuantState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var sb = new StringBuilder();
        sb.Append("{\"quant_type\": \"nf4\", \"blocksize\": ").Append(state.Blocksize.ToString(CultureInfo.InvariantCulture));
        sb.Append(", \"dtype\": \"").Append(DtypeName(state.Dtype)).Append("\", \"shape\": [");
        sb.Append(string.Join(", ", state.Shape.Select(d => d.ToString(CultureInfo.InvariantCulture))));
        sb.Append("], \"nested_blocksize\": ").Append(state.NestedBlocksize.ToString(CultureInfo.InvariantCulture));
        sb.Append(", \"nested_dtype\": \"float32\", \"nested_offset\": ").Append(PythonFloat(state.NestedOffset)).Append('}');
        return sb.ToString();
    }

    /// <summary>Parses a quant-state JSON. <paramref name="where"/> prefixes error messages (file and key).</summary>
    public static Nf4QuantState ParseQuantState(ReadOnlySpan<byte> utf8Json, string where)
    {
        if (!System.Text.Unicode.Utf8.IsValid(utf8Json)) throw new InvalidDataException($"{where}: not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8Json.ToArray());
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{where}: not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: not a JSON object");
            string Str(string field) => Field(field).ValueKind == JsonValueKind.String
                ? Field(field).GetString()!
                : throw new InvalidDataException($"{where}: '{field}' is not a string");
            long Int(JsonElement e, string field) => e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out var v)
                ? v
                : throw new InvalidDataException($"{where}: '{field}' = {e.GetRawText()} is not an integer");
            JsonElement Field(string field) => root.TryGetProperty(field, out var v)
                ? v
                : throw new InvalidDataException($"{where}: no '{field}'");

            var quantType = Str("quant_type");
            if (quantType != "nf4") throw new InvalidDataException($"{where}: quant_type '{quantType}' is not nf4");
            if (!root.TryGetProperty("nested_offset", out _) || !root.TryGetProperty("nested_blocksize", out _))
                throw new InvalidDataException($"{where}: no nested (double) quantization state (nested_offset, nested_blocksize): SlothSharp reads double-quantized NF4 only");
            var dtype = Str("dtype") switch
            {
                "bfloat16" => ScalarType.BFloat16,
                "float16" => ScalarType.Float16,
                "float32" => ScalarType.Float32,
                var other => throw new InvalidDataException($"{where}: unsupported original dtype '{other}'"),
            };
            var nestedDtype = root.TryGetProperty("nested_dtype", out var nd) ? nd.GetRawText() : "\"float32\"";
            if (nestedDtype != "\"float32\"") throw new InvalidDataException($"{where}: nested_dtype {nestedDtype} is not float32");
            var shapeElement = Field("shape");
            if (shapeElement.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{where}: 'shape' is not an array");
            var shape = shapeElement.EnumerateArray().Select(e => Int(e, "shape")).ToArray();
            var blocksize = Int(Field("blocksize"), "blocksize");
            var nestedBlocksize = Int(Field("nested_blocksize"), "nested_blocksize");
            var offsetElement = Field("nested_offset");
            if (offsetElement.ValueKind != JsonValueKind.Number) throw new InvalidDataException($"{where}: 'nested_offset' is not a number");
            // bitsandbytes wrote the float32 offset as a Python float (a double); converting back is exact.
            var offset = (float)offsetElement.GetDouble();
            try
            {
                return new Nf4QuantState(shape, checked((int)blocksize), checked((int)nestedBlocksize), dtype, offset);
            }
            catch (Exception e) when (e is ArgumentException or OverflowException)
            {
                throw new InvalidDataException($"{where}: {e.Message}", e);
            }
        }
    }

    private static string DtypeName(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float32 => "float32",
        _ => throw new ArgumentException($"bitsandbytes stores float32/float16/bfloat16 weights; got {t}"),
    };

    /// <summary>A float32 as Python's <c>repr(float(x))</c>: the shortest digits that round-trip the double, fixed
    /// notation for decimal exponents in [-4, 16), else d.ddde±XX; always a '.' or an exponent.</summary>
    internal static string PythonFloat(float value)
    {
        double v = value;
        if (double.IsNaN(v)) return "NaN";
        if (double.IsInfinity(v)) return v > 0 ? "Infinity" : "-Infinity";
        if (v == 0) return BitConverter.DoubleToInt64Bits(v) < 0 ? "-0.0" : "0.0";
        var s = v.ToString("R", CultureInfo.InvariantCulture);
        var sign = s[0] == '-' ? "-" : "";
        if (sign.Length > 0) s = s[1..];
        var exp = 0;
        var e = s.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exp = int.Parse(s[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            s = s[..e];
        }
        var dot = s.IndexOf('.');
        var intPart = dot < 0 ? s : s[..dot];
        var all = intPart + (dot < 0 ? "" : s[(dot + 1)..]);
        var zeros = all.Length - all.TrimStart('0').Length;
        var digits = all.TrimStart('0').TrimEnd('0');
        var decpt = intPart.Length - zeros + exp;  // value = 0.digits × 10^decpt
        string body;
        if (decpt <= -4 || decpt > 16)
        {
            var mantissa = digits.Length > 1 ? $"{digits[0]}.{digits[1..]}" : digits;
            var x = decpt - 1;
            body = $"{mantissa}e{(x < 0 ? '-' : '+')}{Math.Abs(x):00}";
        }
        else if (decpt <= 0) body = "0." + new string('0', -decpt) + digits;
        else if (decpt >= digits.Length) body = digits + new string('0', decpt - digits.Length) + ".0";
        else body = $"{digits[..decpt]}.{digits[decpt..]}";
        return sign + body;
    }
}
