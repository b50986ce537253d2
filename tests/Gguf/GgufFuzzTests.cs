using NUnit.Framework;
using SlothSharp.Gguf;

namespace SlothSharp.Tests;

/// <summary>
/// Mutates a valid GGUF at random (seeded): bit flips anywhere in the header, random bytes written over counts and
/// lengths, truncations, appended bytes. Each case must either read (every tensor's bytes too) or throw
/// <see cref="InvalidDataException"/> naming the file: any other exception, a huge allocation or a hang fails.
/// </summary>
public class GgufFuzzTests() : TempDirFixture("gguf-fuzz")
{
    [TestCase("sample", 3000)]
    [TestCase("tiny-llama-q4_k_m", 800)]
    public void MutatedFilesReadOrThrowInvalidData(string which, int cases)
    {
        var original = Path.Combine(Dir, "orig.gguf");
        if (which == "sample") GgufFormatTests.SampleWriter().Write(original);
        else GgufExporter.ExportDirectory(Path.Combine(TestEnv.TinyLlamaDir, "dense"), original, new GgufExportOptions { Type = GgufOutputType.Q4_K_M });
        var bytes = File.ReadAllBytes(original);
        var headerEnd = (int)GgufReader.Open(original).DataStart;
        var path = Path.Combine(Dir, "m.gguf");
        var rng = new Random(4242);
        var (read, rejected) = (0, 0);
        for (var i = 0; i < cases; i++)
        {
            var b = (byte[])bytes.Clone();
            var kind = rng.Next(5);
            switch (kind)
            {
                case 0: // one to four bit flips in the header
                    for (var k = rng.Next(1, 5); k > 0; k--) b[rng.Next(headerEnd)] ^= (byte)(1 << rng.Next(8));
                    break;
                case 1: // a random 8-byte value over a header position (counts, lengths, offsets)
                    rng.NextBytes(b.AsSpan(rng.Next(headerEnd - 8), 8));
                    break;
                case 2: // a large but plausible length or count
                    BitConverter.TryWriteBytes(b.AsSpan(rng.Next(headerEnd - 8)), (ulong)rng.NextInt64(1, 1L << 40));
                    break;
                case 3: // truncation
                    b = b[..rng.Next(b.Length)];
                    break;
                default: // trailing garbage and a flip anywhere
                    b = [.. b, .. Enumerable.Range(0, rng.Next(1, 100)).Select(_ => (byte)rng.Next(256))];
                    b[rng.Next(b.Length)] ^= 0xFF;
                    break;
            }
            File.WriteAllBytes(path, b);
            try
            {
                var r = GgufReader.Open(path);
                foreach (var t in r.Tensors.Where(t => t.ByteCount >= 0)) r.ReadTensorBytes(t);
                read++;
            }
            catch (InvalidDataException e)
            {
                Assert.That(e.Message, Does.StartWith(path), $"case {i} (kind {kind}) names the file");
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"case {i} (kind {kind}): {e.GetType().Name}: {e.Message}");
            }
        }
        TestContext.Out.WriteLine($"{read} read, {rejected} rejected");
        Assert.That(rejected, Is.GreaterThan(cases / 3));
    }
}
