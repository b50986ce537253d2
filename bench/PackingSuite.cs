using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using SlothSharp.Data;
using SlothSharp.Models;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Bench;

/// <summary>The settings of one packing benchmark (the same for both modes, so they train on the same documents).</summary>
/// <param name="Preset">A <see cref="ModelPresets"/> name (random weights of that shape).</param>
/// <param name="Documents">How many conversations.</param>
/// <param name="MinLength">Shortest conversation (tokens).</param>
/// <param name="MaxLength">Longest conversation (tokens).</param>
/// <param name="Batch">Padded mode: documents per step (rows padded to the longest of the step).</param>
/// <param name="PackLength">Packed mode: tokens per packed row.</param>
/// <param name="PackRows">Packed mode: packed rows per step.</param>
/// <param name="Warmup">Untimed steps before the timed pass.</param>
/// <param name="Checkpointing">0: none; k: every k-th decoder layer recomputed in backward.</param>
internal sealed record PackingSettings(string Preset, int Documents, int MinLength, int MaxLength, int Batch, int PackLength, int PackRows,
                                       int Warmup, int Checkpointing, long Seed)
{
    public static PackingSettings Default(bool tiny) => tiny
        ? new("tiny", 24, 5, 60, 4, 128, 1, 1, 0, 1)
        : new("llama-3.2-1b", 96, 50, 2000, 4, 4096, 1, 2, 0, 1);

    /// <summary>The conversations: lengths log-uniform in [MinLength, MaxLength] (many short chats, a tail of long
    /// ones), random token ids, every token trained; seeded, so both modes and every process see the same ones.</summary>
    public List<TokenizedExample> Conversations(int vocab)
    {
        var rng = new Random((int)Seed);
        var (lo, hi) = (Math.Log(MinLength), Math.Log(MaxLength + 1));
        var docs = new List<TokenizedExample>(Documents);
        for (var d = 0; d < Documents; d++)
        {
            var n = Math.Clamp((int)Math.Exp(lo + rng.NextDouble() * (hi - lo)), MinLength, MaxLength);
            var ids = new int[n];
            for (var i = 0; i < n; i++) ids[i] = rng.Next(vocab);
            var trained = new bool[n];
            Array.Fill(trained, true);
            docs.Add(new TokenizedExample(ids, trained, $"conversation {d}"));
        }
        return docs;
    }

    public string[] Arguments() =>
    [
        "--preset", Preset, "--documents", Inv(Documents), "--min-length", Inv(MinLength), "--max-length", Inv(MaxLength), "--batch", Inv(Batch),
        "--pack-length", Inv(PackLength), "--pack-rows", Inv(PackRows), "--warmup", Inv(Warmup), "--checkpointing", Inv(Checkpointing), "--seed", Inv(Seed),
    ];

    public static PackingSettings Parse(string[] args, bool tiny)
    {
        var d = Default(tiny);
        string? Arg(string name)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }
        int Int(string name, int fallback, int min)
        {
            if (Arg(name) is not { } text) return fallback;
            if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v < min)
                throw new ArgumentException($"{name}: '{text}' is not an integer >= {min}");
            return v;
        }
        var s = new PackingSettings(Arg("--preset") ?? d.Preset, Int("--documents", d.Documents, 1), Int("--min-length", d.MinLength, 2),
            Int("--max-length", d.MaxLength, 2), Int("--batch", d.Batch, 1), Int("--pack-length", d.PackLength, 2), Int("--pack-rows", d.PackRows, 1),
            Int("--warmup", d.Warmup, 0), Int("--checkpointing", d.Checkpointing, 0), Int("--seed", (int)d.Seed, 0));
        if (s.MinLength > s.MaxLength) throw new ArgumentException($"--min-length {s.MinLength} is above --max-length {s.MaxLength}");
        var config = ModelPresets.Get(s.Preset);
        var longest = Math.Max(s.MaxLength, s.PackLength);
        if (longest > config.MaxPositionEmbeddings)
            throw new ArgumentException($"rows of {longest} tokens exceed the {s.Preset} preset's max_position_embeddings {config.MaxPositionEmbeddings}");
        return s;
    }

    private static string Inv(long v) => v.ToString(CultureInfo.InvariantCulture);
}

/// <summary>What one mode measured (one child process).</summary>
internal sealed record PackingRow(string Mode, int Steps, long RealTokens, long Positions, double Seconds, double RealTokensPerSecond,
                                  double? PeakGb, double FirstLoss, double LastLoss, string? Error = null);

/// <summary>
/// Packed vs padded training (<c>--suite packing</c>): a QLoRA step as <see cref="StepWorkload"/> runs it (random NF4
/// weights of a preset shape, LoRA r16 on all seven projections, bf16, fused kernels, AdamW) over the same seeded mix
/// of conversations (log-uniform lengths, 50–2,000 tokens by default), (a) padded: <c>--batch</c> conversations per
/// step in a shuffled order, each step padded to its longest; (b) packed: the conversations concatenated into rows of
/// <c>--pack-length</c> tokens (positions restart per conversation, block-diagonal attention), <c>--pack-rows</c> rows
/// per step. Reported: real (non-pad) tokens/s over one timed pass through all conversations, the share of computed
/// positions that are padding, and peak device memory; one fresh process per mode (the caching allocator's peak
/// cannot be reset in-process). <c>--tiny</c> runs it on the CPU with the tiny preset (a smoke test; its numbers mean
/// nothing).
/// </summary>
internal static class PackingSuite
{
    private static readonly JsonSerializerOptions Json = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>The steps of a mode: the collated batches in the order they are trained.</summary>
    private static List<TrainingBatch> Batches(PackingSettings s, string mode, Device device)
    {
        var config = ModelPresets.Get(s.Preset);
        var docs = s.Conversations(config.VocabSize);
        const int padId = 0;
        var batches = new List<TrainingBatch>();
        if (mode == "padded")
        {
            var data = TrainingData.FromTokenized(docs, padId, new TrainingDataOptions { SequenceLength = s.MaxLength, Packing = false });
            var order = new DataOrder(data.Rows.Count, s.Seed, shuffle: true);
            var rows = Enumerable.Range(0, data.Rows.Count).Select(i => order.RowAt(i)).ToArray();
            for (var i = 0; i < rows.Length; i += s.Batch) batches.Add(data.CollateBatch(rows[i..Math.Min(rows.Length, i + s.Batch)], device));
        }
        else
        {
            // The conversations in the same shuffled order, then concatenated and cut into rows.
            var order = new DataOrder(docs.Count, s.Seed, shuffle: true);
            var shuffled = Enumerable.Range(0, docs.Count).Select(i => docs[order.RowAt(i)]).ToList();
            var data = TrainingData.FromTokenized(shuffled, padId, new TrainingDataOptions { SequenceLength = s.PackLength, Packing = true });
            for (var i = 0; i < data.Rows.Count; i += s.PackRows)
                batches.Add(data.CollateBatch(Enumerable.Range(i, Math.Min(s.PackRows, data.Rows.Count - i)).ToArray(), device));
        }
        return batches;
    }

    /// <summary>Child: one mode. Prints "PACKROW {json}".</summary>
    public static int RunMode(string[] args, string mode, string deviceName)
    {
        if (mode is not ("padded" or "packed")) throw new ArgumentException($"--mode: '{mode}' (padded or packed)");
        var s = PackingSettings.Parse(args, tiny: false);
        var device = deviceName == "cuda" ? CUDA : CPU;
        var onCuda = device.type == TorchSharp.DeviceType.CUDA;
        var config = ModelPresets.Get(s.Preset);

        // Warm-up on a one-layer model: cuBLAS's handle and workspace and lazily loaded kernels go into the idle reading.
        using (var warm = new StepWorkload(config with { NumHiddenLayers = 1, VocabSize = 512, HiddenSize = 256, IntermediateSize = 512 }, 2, 64, device, true, s.Checkpointing))
        {
            warm.Step(0).Dispose();
            warm.Synchronize();
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var memory = new StepSuite.MemoryWatch(onCuda);

        using var w = new StepWorkload(config, 0, 0, device, fused: true, s.Checkpointing);
        var batches = Batches(s, mode, device);
        try
        {
            double first = double.NaN;
            for (var i = 0; i < s.Warmup; i++)
            {
                using var loss = w.Step(batches[i % batches.Count], _ => memory.Poll());
                if (i == 0) first = loss.item<float>();
            }
            w.Synchronize();
            // Timed: one pass over every batch, no host synchronization inside the window.
            var clock = Stopwatch.StartNew();
            Tensor? last = null;
            foreach (var b in batches)
            {
                last?.Dispose();
                last = w.Step(b);
            }
            w.Synchronize();
            var seconds = clock.Elapsed.TotalSeconds;
            memory.Poll();  // the caching allocator keeps what the largest step reserved
            var lastLoss = last!.item<float>();
            last.Dispose();
            if (double.IsNaN(first)) first = lastLoss;
            var real = batches.Sum(b => b.Tokens);
            var positions = batches.Sum(b => b.InputIds.numel());
            var row = new PackingRow(mode, batches.Count, real, positions, seconds, real / seconds, memory.PeakGb, first, lastLoss);
            Console.WriteLine("PACKROW " + JsonSerializer.Serialize(row, Json));
            return 0;
        }
        finally
        {
            foreach (var b in batches) b.Dispose();
        }
    }

    /// <summary>The driver: both modes in child processes, then the table (printed and written to packing.md).</summary>
    public static int Run(string[] args, string results, string device, bool tiny)
    {
        PackingSettings s;
        try { s = PackingSettings.Parse(args, tiny); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"--suite packing: {e.Message}");
            return 2;
        }
        var deviceArg = tiny ? "cpu" : "cuda";
        var rows = new List<PackingRow>();
        foreach (var mode in new[] { "padded", "packed" })
        {
            var (ok, line, output) = StepSuite.Child([.. s.Arguments(), "--results", results, "--suite", "packing-mode", "--mode", mode, "--device", deviceArg], "PACKROW ");
            rows.Add(ok ? JsonSerializer.Deserialize<PackingRow>(line!, Json)! : new PackingRow(mode, 0, 0, 0, 0, 0, null, double.NaN, double.NaN, StepSuite.Tail(output)));
        }
        var text = Table(s, device, tiny, rows);
        Console.WriteLine(text);
        var path = Path.Combine(results, "packing.md");
        File.WriteAllText(path + ".tmp", text);
        File.Move(path + ".tmp", path, overwrite: true);
        return rows.All(r => r.Error is null) ? 0 : 1;
    }

    private static string Table(PackingSettings s, string device, bool tiny, List<PackingRow> rows)
    {
        var inv = CultureInfo.InvariantCulture;
        var docs = s.Conversations(ModelPresets.Get(s.Preset).VocabSize);
        var lengths = docs.Select(d => d.Ids.Length).ToArray();
        var sb = new StringBuilder();
        sb.AppendLine(inv, $"packed vs padded QLoRA step{(tiny ? " (CPU smoke test: the numbers mean nothing)" : "")} — {device}");
        sb.AppendLine(inv, $"model: {s.Preset} (random NF4, LoRA r16 all-linear, bf16, fused kernels, AdamW){(s.Checkpointing > 0 ? $", checkpointing every {s.Checkpointing} layer(s)" : "")}");
        sb.AppendLine(inv, $"data: {s.Documents} conversations, log-uniform {s.MinLength}–{s.MaxLength} tokens (seed {s.Seed}): mean {lengths.Average():F0}, median {lengths.Order().ElementAt(lengths.Length / 2)}, {lengths.Sum():N0} tokens");
        sb.AppendLine();
        sb.AppendLine(inv, $"{"mode",-26} {"steps",6} {"real tokens",12} {"pad %",6} {"real tok/s",12} {"peak GB",8} {"loss first→last",18}");
        foreach (var r in rows)
        {
            var name = r.Mode == "padded" ? $"padded (batch {s.Batch})" : $"packed ({s.PackRows} × {s.PackLength})";
            if (r.Error is not null)
            {
                sb.AppendLine(inv, $"{name,-26} FAILED: {r.Error}");
                continue;
            }
            var pad = r.Positions == 0 ? 0 : 100.0 * (r.Positions - r.RealTokens) / r.Positions;
            var peak = r.PeakGb is { } g ? g.ToString("F2", inv) : "n/a";
            sb.AppendLine(inv, $"{name,-26} {r.Steps,6} {r.RealTokens,12:N0} {pad,6:F1} {r.RealTokensPerSecond,12:F0} {peak,8} {$"{r.FirstLoss:F3}→{r.LastLoss:F3}",18}");
        }
        if (rows.All(r => r.Error is null))
        {
            var (padded, packed) = (rows[0], rows[1]);
            var memory = padded.PeakGb is { } a && packed.PeakGb is { } b && a > 0 ? (b / a).ToString("F2", inv) + "×" : "n/a";
            sb.AppendLine().AppendLine(inv, $"packed / padded: {packed.RealTokensPerSecond / padded.RealTokensPerSecond:F2}× real tokens/s, peak memory {memory}");
        }
        sb.AppendLine(inv, $"(real tokens: non-pad tokens trained on in one timed pass after {s.Warmup} warm-up step(s); packed rows share one token at each row boundary; peak: cudaMemGetInfo above idle, one process per mode)");
        return sb.ToString();
    }
}
