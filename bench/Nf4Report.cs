using System.Globalization;
using System.Text;
using BenchmarkDotNet.Reports;

namespace SlothSharp.Bench;

/// <summary>Turns the BenchmarkDotNet summaries into the NF4 table: µs, GB/s at 2.516 B/element, % of the copy
/// bandwidth measured in the same run, speed-up over TorchSharp ops, and the 9-matrix MLP total.</summary>
internal static class Nf4Report
{
    public static void Write(IEnumerable<Summary> summaries, string dir, string device)
    {
        var reports = summaries.SelectMany(s => s.Reports).Where(r => r.ResultStatistics is not null).ToList();
        double MedianNs(string method, string? shape = null, string? dtype = null) => reports.First(r =>
            r.BenchmarkCase.Descriptor.WorkloadMethod.Name == method &&
            (shape is null || (string)r.BenchmarkCase.Parameters["Shape"] == shape) &&
            (dtype is null || (string)r.BenchmarkCase.Parameters["Dtype"] == dtype)).ResultStatistics!.Median;

        var inv = CultureInfo.InvariantCulture;
        var copyGbs = 2.0 * CopyBandwidth.Bytes / MedianNs(nameof(CopyBandwidth.DeviceCopy1GiB));
        var sb = new StringBuilder();
        sb.AppendLine("# NF4 double dequantization (blocksize 64, nested 256)").AppendLine();
        sb.AppendLine($"- device: {device}").AppendLine($"- date (UTC): {DateTime.UtcNow:yyyy-MM-dd HH:mm}");
        sb.AppendLine(inv, $"- measured device copy bandwidth (1 GiB copy_, read + write): {copyGbs:F0} GB/s");
        sb.AppendLine("- time: BenchmarkDotNet median per dequantization; each invocation queues 50 launches (TorchSharp ops: 5) then synchronizes");
        sb.AppendLine("- GB/s counts 2.516 bytes per element (0.5 weight + 1/64 absmax code + 4/16384 nested absmax + 2 output)");
        sb.AppendLine("- memory: SlothSharp writes the output only (no scratch); TorchSharp ops allocate int64 nibble/index temporaries").AppendLine();
        sb.AppendLine("| matrix | out | SlothSharp µs | GB/s | % of copy | TorchSharp ops µs | speed-up |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|");
        var perMatrix = new Dictionary<(string, string), double>();
        foreach (var shape in new[] { "4096x1024", "1024x4096", "14336x4096", "4096x14336", "8192x2048", "2048x8192", "28672x8192" })
        foreach (var dtype in new[] { "bf16", "fp16" })
        {
            var dims = Nf4Dequant.Dims(shape);
            var n = dims[0] * dims[1];
            var ns = MedianNs(nameof(Nf4Dequant.SlothSharp), shape, dtype);
            var torchNs = MedianNs(nameof(Nf4Dequant.TorchSharpOps), shape, dtype);
            var gbs = n * Nf4Dequant.BytesPerElement / ns;
            perMatrix[(shape, dtype)] = ns;
            sb.AppendLine(inv, $"| {shape.Replace("x", " × ")} | {dtype} | {ns / 1000:F1} | {gbs:F0} | {100 * gbs / copyGbs:F0}% | {torchNs / 1000:F0} | {torchNs / ns:F1}× |");
        }
        sb.AppendLine().AppendLine("MLP total (the 9 matrices of (hd, m) = (1024, 4096), (4096, 14336), (2048, 8192): gate and up are m × hd, down is hd × m):").AppendLine();
        foreach (var dtype in new[] { "bf16", "fp16" })
        {
            double total = 0;
            foreach (var (hd, m) in new[] { (1024, 4096), (4096, 14336), (2048, 8192) })
                total += 2 * perMatrix[($"{m}x{hd}", dtype)] + perMatrix[($"{hd}x{m}", dtype)];
            sb.AppendLine(inv, $"- {dtype}: {total / 1000:F1} µs");
        }
        File.WriteAllText(Path.Combine(dir, "nf4-dequant.md"), sb.ToString());
        Console.WriteLine(sb.ToString());
    }
}
