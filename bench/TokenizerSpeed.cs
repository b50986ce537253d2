using System.Diagnostics;
using System.Text;
using System.Text.Json;
using SlothSharp.Tokenization;

namespace SlothSharp.Bench;

/// <summary>
/// Tokens per second of <see cref="HfTokenizer"/> on a corpus (CPU only; no GPU, no BenchmarkDotNet: one encode of a
/// big corpus is already a long, stable measurement). Usage:
/// <c>SlothSharp.Bench --suite tokenizer [--tokenizer DIR]... [--corpus FILE] [--repeat N] [--threads N]</c>.
/// DIR holds tokenizer.json or tokenizer.json.gz (+ tokenizer_config.json); default: every family under
/// tests/data/tokenizers. FILE: .jsonl with {"text": …} per line, or plain text (one document per blank-line-separated
/// block); default tests/data/tokenizers/corpus.jsonl repeated N times (default 20) with a counter in each copy so
/// the pre-token cache does not see only repeats. Reports, per tokenizer: single-thread cold (fresh cache) and warm
/// passes, and <see cref="HfTokenizer.EncodeBatch"/> with the given number of threads (default 2) and all cores.
/// </summary>
internal static class TokenizerSpeed
{
    public static int Run(string[] args)
    {
        var repoData = FindRepoData();
        var dirs = Values(args, "--tokenizer");
        if (dirs.Count == 0)
        {
            if (repoData is null) { Console.Error.WriteLine("no --tokenizer given and tests/data/tokenizers not found"); return 2; }
            dirs = Directory.GetDirectories(Path.Combine(repoData, "tokenizers")).Where(d => Path.GetFileName(d) != "expected").Order().ToList();
        }
        var repeat = int.Parse(Value(args, "--repeat") ?? "20");
        var threads = int.Parse(Value(args, "--threads") ?? "2");
        var corpusPath = Value(args, "--corpus") ?? (repoData is null ? null : Path.Combine(repoData, "tokenizers", "corpus.jsonl"));
        if (corpusPath is null || !File.Exists(corpusPath)) { Console.Error.WriteLine($"corpus not found: {corpusPath}"); return 2; }
        var docs = ReadCorpus(corpusPath);
        if (Value(args, "--corpus") is null)
            docs = Enumerable.Range(0, repeat).SelectMany(r => docs.Select(d => $"[{r}] {d}")).ToList();
        var chars = docs.Sum(d => (long)d.Length);
        Console.WriteLine($"corpus: {corpusPath} → {docs.Count} documents, {chars / 1e6:F2} M chars; {Environment.ProcessorCount} cores visible");
        Console.WriteLine($"{"tokenizer",-14} {"load s",7} {"tokens",10} {"1 thread cold",16} {"1 thread warm",16} {$"batch {threads} thr",16} {"batch all",16}");
        foreach (var dir in dirs)
        {
            var sw = Stopwatch.StartNew();
            var json = File.Exists(Path.Combine(dir, "tokenizer.json")) ? Path.Combine(dir, "tokenizer.json") : Path.Combine(dir, "tokenizer.json.gz");
            var config = Path.Combine(dir, "tokenizer_config.json");
            var tok = HfTokenizer.FromFile(json, File.Exists(config) ? config : null);
            var load = sw.Elapsed.TotalSeconds;
            long tokens = 0;
            var cold = Time(() => { foreach (var d in docs) tokens += tok.Encode(d).Length; });
            var warm = Time(() => { foreach (var d in docs) tok.Encode(d); });
            var batch = Time(() => tok.EncodeBatch(docs, maxDegreeOfParallelism: threads));
            var all = Time(() => tok.EncodeBatch(docs));
            string Rate(double s) => $"{tokens / s / 1e6,7:F2} M tok/s";
            Console.WriteLine($"{Path.GetFileName(dir),-14} {load,7:F2} {tokens,10} {Rate(cold),16} {Rate(warm),16} {Rate(batch),16} {Rate(all),16}");
        }
        return 0;
    }

    private static double Time(Action a)
    {
        var sw = Stopwatch.StartNew();
        a();
        return sw.Elapsed.TotalSeconds;
    }

    private static List<string> ReadCorpus(string path)
    {
        if (!path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
            return File.ReadAllText(path).Split(["\n\n", "\r\n\r\n"], StringSplitOptions.RemoveEmptyEntries).ToList();
        var docs = new List<string>();
        foreach (var line in File.ReadLines(path))
        {
            if (line.Length == 0) continue;
            try { docs.Add(JsonDocument.Parse(line).RootElement.GetProperty("text").GetString()!); }
            catch (InvalidOperationException) { }  // a lone surrogate escape: System.Text.Json cannot make a string of it
        }
        return docs;
    }

    private static string? FindRepoData()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, "tests", "data", "tokenizers"))) return Path.Combine(dir.FullName, "tests", "data");
        return Directory.Exists("tests/data/tokenizers") ? Path.GetFullPath("tests/data") : null;
    }

    private static string? Value(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static List<string> Values(string[] args, string name)
    {
        var list = new List<string>();
        for (var i = 0; i + 1 < args.Length; i++) if (args[i] == name) list.Add(args[i + 1]);
        return list;
    }
}
