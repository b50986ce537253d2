using System.Text;
using System.Text.Json.Nodes;
using NUnit.Framework;

namespace SlothSharp.Tests;

/// <summary>
/// Mutates the golden safetensors files at random (seeded): byte flips in the header and the data, truncations,
/// appended bytes, header edits (dtype, shape, offsets, missing fields, duplicate names, broken JSON, wrong length
/// prefix). Each case must either load every tensor or throw <see cref="SafetensorsFormatException"/>: any other
/// exception, a crash or a hang fails the test.
/// </summary>
public class SafetensorsFuzzTests
{
    private const int CasesPerFile = 1100;

    private static IEnumerable<string> Files()
    {
        yield return "bnb-nf4/bnb_nf4_small.safetensors";
        yield return "hf-tiny-llama/nf4/model.safetensors";
    }

    [TestCaseSource(nameof(Files))]
    public void MutatedFilesLoadOrThrowTheFormatException(string relative)
    {
        var original = File.ReadAllBytes(Path.Combine(TestEnv.DataDir, relative));
        var headerLength = (int)BitConverter.ToInt64(original, 0);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(original, 8, headerLength))!.AsObject();
        var names = header.Select(kv => kv.Key).Where(k => k != "__metadata__").ToArray();
        var path = Path.Combine(Path.GetTempPath(), $"sloth-fuzz-{Guid.NewGuid():N}.safetensors");
        var rng = new Random(12345 + relative.Length);
        var (loaded, rejected) = (0, 0);
        try
        {
            for (var i = 0; i < CasesPerFile; i++)
            {
                var kind = rng.Next(9);
                var bytes = Mutate(kind, original, headerLength, header, names, rng);
                File.WriteAllBytes(path, bytes);
                try
                {
                    using var r = new SafetensorsReader(path);
                    foreach (var k in r.Keys) r.Read(k).Dispose();
                    loaded++;
                }
                catch (SafetensorsFormatException e)
                {
                    Assert.That(e.Message, Does.StartWith(path), $"case {i} (kind {kind}) names the file");
                    rejected++;
                }
                catch (Exception e)
                {
                    Assert.Fail($"case {i} (kind {kind}): {e.GetType().Name}: {e.Message}");
                }
            }
        }
        finally
        {
            File.Delete(path);
        }
        TestContext.Out.WriteLine($"{relative}: {loaded} loaded, {rejected} rejected");
        Assert.That(loaded, Is.GreaterThan(50), "some mutations (data flips) leave a valid file");
        Assert.That(rejected, Is.GreaterThan(CasesPerFile / 3), "most header mutations are caught");
    }

    /// <summary>The bitsandbytes quant-state JSON, mutated: each case reads as a weight or is an InvalidDataException.</summary>
    [Test]
    public void MutatedQuantStatesReadOrThrowInvalidData()
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var reader = new SafetensorsReader(TestEnv.Golden("bnb_nf4_small"));
        var tensors = reader.Keys.ToDictionary(k => k, k => reader.Read(k));
        var stateKey = "weight" + BitsAndBytesNf4Format.QuantStateSuffix;
        var json = reader.ReadUtf8(stateKey);
        var rng = new Random(777);
        var replacements = new[] { "nf4", "fp4", "64", "-64", "96", "0", "4096", "8192", "\"float32\"", "\"int8\"", "[]", "[64]", "[1, 2, 3]", "null", "1e400", "\"x\"", "" };
        var (read, rejected) = (0, 0);
        for (var i = 0; i < 600; i++)
        {
            string mutated;
            switch (rng.Next(3))
            {
                case 0: // replace one token (number, string, array) with another
                    var tokens = System.Text.RegularExpressions.Regex.Matches(json, "\"[a-z_0-9]+\"|-?[0-9.e+-]+|\\[[^\\]]*\\]");
                    var t = tokens[rng.Next(tokens.Count)];
                    mutated = json[..t.Index] + replacements[rng.Next(replacements.Length)] + json[(t.Index + t.Length)..];
                    break;
                case 1: mutated = json[..rng.Next(json.Length)]; break;
                default:
                    var chars = json.ToCharArray();
                    chars[rng.Next(chars.Length)] = (char)rng.Next(32, 127);
                    mutated = new string(chars);
                    break;
            }
            var source = new TensorDictionarySource(new Dictionary<string, TorchSharp.torch.Tensor>(tensors)
            {
                [stateKey] = TorchSharp.torch.tensor(Encoding.UTF8.GetBytes(mutated), TorchSharp.torch.ScalarType.Byte),
            }, "mutated");
            try
            {
                using var w = BitsAndBytesNf4Format.Read(source, "weight");
                read++;
            }
            catch (InvalidDataException e)
            {
                Assert.That(e.Message, Does.StartWith("mutated"), $"case {i}");
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"case {i} ({mutated}): {e.GetType().Name}: {e.Message}");
            }
        }
        TestContext.Out.WriteLine($"quant state: {read} read, {rejected} rejected");
        Assert.That(rejected, Is.GreaterThan(100));
    }

    private static byte[] Mutate(int kind, byte[] original, int headerLength, JsonObject header, string[] names, Random rng)
    {
        var bytes = (byte[])original.Clone();
        switch (kind)
        {
            case 0: // flip bytes in the header (or its length prefix)
                for (var n = rng.Next(1, 4); n > 0; n--) bytes[rng.Next(0, 8 + headerLength)] ^= (byte)rng.Next(1, 256);
                return bytes;
            case 1: // flip bytes in the data: a valid file
                for (var n = rng.Next(1, 8); n > 0; n--) bytes[rng.Next(8 + headerLength, bytes.Length)] ^= (byte)rng.Next(1, 256);
                return bytes;
            case 2: // truncate anywhere
                return bytes[..rng.Next(0, bytes.Length)];
            case 3: // append bytes
                return [.. bytes, .. new byte[rng.Next(1, 64)]];
            case 4: // a wrong header length
                var lengths = new long[] { 0, 1, headerLength - 1, headerLength + 1, headerLength + 8, bytes.Length, 100_000_001, -1, long.MaxValue, rng.NextInt64() };
                BitConverter.GetBytes(lengths[rng.Next(lengths.Length)]).CopyTo(bytes, 0);
                return bytes;
            case 5: // JSON breakage: delete or insert a character
                {
                    var json = Encoding.UTF8.GetString(original, 8, headerLength);
                    var at = rng.Next(json.Length);
                    var broken = rng.Next(2) == 0 ? json.Remove(at, 1) : json.Insert(at, "{}[],:\"0-e"[rng.Next(10)].ToString());
                    return WithHeader(broken, original, headerLength, rng.Next(4) == 0);
                }
            default: // structured header edits
                {
                    var edited = JsonNode.Parse(header.ToJsonString())!.AsObject();
                    var name = names[rng.Next(names.Length)];
                    var entry = edited[name]!.AsObject();
                    switch (rng.Next(9))
                    {
                        case 0: entry["dtype"] = new[] { "F32", "F16", "BF16", "U8", "I64", "U16", "F8_E4M3", "X9", "", "f32" }[rng.Next(10)]; break;
                        case 1:
                            var shape = entry["shape"]!.AsArray();
                            var values = new long[] { -1, 0, 1, 2, 3, long.MaxValue, 1L << 32, int.MaxValue, -(1L << 40) };
                            if (shape.Count > 0) shape[rng.Next(shape.Count)] = values[rng.Next(values.Length)];
                            else shape.Add(values[rng.Next(values.Length)]);
                            break;
                        case 2:
                            var offsets = entry["data_offsets"]!.AsArray();
                            var which = rng.Next(2);
                            offsets[which] = offsets[which]!.GetValue<long>() + new long[] { -8, -1, 1, 4, 1 << 20, long.MinValue / 2 }[rng.Next(6)];
                            break;
                        case 3: entry.Remove(new[] { "dtype", "shape", "data_offsets" }[rng.Next(3)]); break;
                        case 4: edited[name] = rng.Next(2) == 0 ? JsonValue.Create(5) : new JsonArray(1, 2); break;
                        case 5: entry["shape"] = new JsonArray(1.5, "x"); break;
                        case 6: entry["data_offsets"] = new JsonArray(0); break;
                        case 7: edited["__metadata__"] = rng.Next(2) == 0 ? new JsonObject { ["a"] = 1 } : JsonValue.Create("m"); break;
                        default: // the same entry twice: a duplicate name
                            var text = edited.ToJsonString();
                            var dup = $"\"{name}\":{entry.ToJsonString()}";
                            return WithHeader("{" + dup + "," + text[1..], original, headerLength, false);
                    }
                    return WithHeader(edited.ToJsonString(), original, headerLength, false);
                }
        }
    }

    /// <summary>The original data behind a new header (its length prefix right, unless <paramref name="keepOldLength"/>).</summary>
    private static byte[] WithHeader(string json, byte[] original, int oldHeaderLength, bool keepOldLength)
    {
        var h = Encoding.UTF8.GetBytes(json);
        var result = new byte[8 + h.Length + original.Length - 8 - oldHeaderLength];
        BitConverter.GetBytes(keepOldLength ? (long)oldHeaderLength : h.Length).CopyTo(result, 0);
        h.CopyTo(result, 8);
        original.AsSpan(8 + oldHeaderLength).CopyTo(result.AsSpan(8 + h.Length));
        return result;
    }
}
