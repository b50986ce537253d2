using System.Diagnostics;
using NUnit.Framework;
using SlothSharp.Cli;
using SlothSharp.Interop;

namespace SlothSharp.Tests;

/// <summary>The CLI's failure contract: one line <c>error: &lt;subject&gt;: &lt;what&gt;</c> on stderr, nothing on stdout,
/// exit 2 for bad input and usage errors, 1 for unexpected failures, the trace only with --verbose.</summary>
public class CliErrorTests() : TempDirFixture("clierr")
{
    internal static (int Code, string Out, string Err) Sloth(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = SlothCli.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Exactly one line "error: SUBJECT: MESSAGE", no trace, nothing on stdout, exit 2.</summary>
    internal static void AssertBadInput((int Code, string Out, string Err) r, string subject, string messagePart)
    {
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput), $"exit code; stderr: {r.Err}");
        Assert.That(r.Out, Is.Empty, "stdout");
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), $"one line on stderr: {r.Err}");
        Assert.That(lines[0], Does.StartWith($"error: {subject}: "));
        Assert.That(lines[0], Does.Contain(messagePart));
        Assert.That(lines[0], Does.Not.Match(@"\bat [\w.`<>]+\(").And.Not.Contain("Exception"), "no trace or exception type");
        Assert.That(lines[0][$"error: {subject}: ".Length..], Does.Not.StartWith(subject), "subject not repeated");
    }

    [Test]
    public void MissingFile()
    {
        var path = Path.Combine(Dir, "absent.safetensors");
        AssertBadInput(Sloth("info", path), path, "not found");
    }

    [Test]
    public void EmptyFile()
    {
        var path = Path.Combine(Dir, "empty.safetensors");
        File.WriteAllBytes(path, []);
        AssertBadInput(Sloth("info", path), path, "");
    }

    [Test]
    public void BrokenJsonHeader()
    {
        var path = Path.Combine(Dir, "broken.safetensors");
        var header = "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]"u8.ToArray();  // unterminated
        using (var f = File.Create(path))
        {
            f.Write(BitConverter.GetBytes((long)header.Length));
            f.Write(header);
            f.Write(new byte[8]);
        }
        AssertBadInput(Sloth("info", path), path, "");
    }

    [Test]
    public void BadDtypeIsAUsageError()
    {
        var r = Sloth("dequant", TestEnv.Golden("bnb_nf4_small"), Path.Combine(Dir, "o.safetensors"), "--dtype", "int8");
        AssertBadInput(r, "--dtype", "unknown dtype 'int8' (bf16, fp16, fp32)");
        Assert.That(File.Exists(Path.Combine(Dir, "o.safetensors")), Is.False, "nothing written");
    }

    [TestCase("--device", "tpu", "unknown device 'tpu'")]
    [TestCase("--device", "cuda:x", "unknown device 'cuda:x'")]
    public void BadDeviceIsAUsageError(string option, string value, string message) =>
        AssertBadInput(Sloth("dequant", TestEnv.Golden("bnb_nf4_small"), Path.Combine(Dir, "o.safetensors"), option, value), option, message);

    [TestCase("-3", "must be a power of two")]
    [TestCase("48", "must be a power of two in [32, 4096] (got 48)")]
    [TestCase("abc", "cannot parse 'abc' as an integer")]
    public void BadSizeIsAUsageError(string value, string message) =>
        AssertBadInput(Sloth("quantize", TestEnv.Golden("bnb_nf4_small"), Path.Combine(Dir, "o.safetensors"), "--blocksize", value), "--blocksize", message);

    [Test]
    public void BadIncludeRegexIsAUsageError() =>
        AssertBadInput(Sloth("quantize", TestEnv.Golden("bnb_nf4_small"), Path.Combine(Dir, "o.safetensors"), "--include", "(["),
                       "--include", "'([' is not a valid regular expression");

    /// <summary>Every command checks its option values while parsing, before any file is read or model loaded: one bad
    /// value per kind of option (device, dtype, positive or bounded integer, number range, choice, list).</summary>
    [TestCase("eval", "--device", "tpu", "unknown device 'tpu' (auto, cpu, cuda, cuda:N)")]
    [TestCase("eval", "--dtype", "int4", "unknown dtype 'int4' (bf16, fp16, fp32)")]
    [TestCase("eval", "--batch", "0", "must be a positive integer (got 0)")]
    [TestCase("eval", "--max-length", "1", "must be at least 2 (got 1)")]
    [TestCase("generate", "--device", "cuda:x", "unknown device 'cuda:x'")]
    [TestCase("generate", "--dtype", "fp8", "unknown dtype 'fp8'")]
    [TestCase("generate", "--max-new-tokens", "0", "must be a positive integer (got 0)")]
    [TestCase("generate", "--temperature", "-0.5", "must be a number >= 0 (got -0.5)")]
    [TestCase("generate", "--top-p", "0", "must be in (0, 1] (got 0)")]
    [TestCase("generate", "--top-p", "1.5", "must be in (0, 1] (got 1.5)")]
    [TestCase("generate", "--top-k", "-1", "must be at least 0 (got -1)")]
    [TestCase("finetune", "--device", "gpu", "unknown device 'gpu'")]
    [TestCase("finetune", "--dtype", "int8", "unknown dtype 'int8'")]
    [TestCase("finetune", "--rank", "0", "must be a positive integer (got 0)")]
    [TestCase("finetune", "--alpha", "-1", "must be a positive number (got -1)")]
    [TestCase("finetune", "--dropout", "1", "must be in [0, 1) (got 1)")]
    [TestCase("finetune", "--lr", "abc", "cannot parse 'abc' as a number")]
    [TestCase("finetune", "--steps", "0", "must be a positive integer (got 0)")]
    [TestCase("finetune", "--epochs", "0", "must be a positive number (got 0)")]
    [TestCase("finetune", "--seq", "1", "must be at least 2 (got 1)")]
    [TestCase("finetune", "--warmup", "-1", "must be at least 0 (got -1)")]
    [TestCase("finetune", "--grad-clip", "-1", "must be a number >= 0 (got -1)")]
    [TestCase("finetune", "--schedule", "exponential", "unknown value 'exponential' (cosine, linear, constant)")]
    [TestCase("finetune", "--targets", "q_proj,all-linear", "'all-linear' is not a module name")]
    [TestCase("finetune", "--targets", "q_proj,lm.head", "'lm.head' is not a module name")]
    [TestCase("merge", "--dtype", "int8", "unknown dtype 'int8' (bf16, fp16, fp32)")]
    [TestCase("demo", "--device", "auto", "unknown device 'auto' (cpu, cuda, cuda:N)")]
    [TestCase("demo", "--steps", "0", "must be a positive integer (got 0)")]
    [TestCase("demo", "--size", "7b", "unknown value '7b' (tiny, 1b)")]
    [TestCase("demo", "--lr", "0", "must be a positive number (got 0)")]
    [TestCase("make-checkpoint", "--preset", "llama-9000", "unknown value 'llama-9000'")]
    public void BadOptionValueIsAUsageError(string command, string option, string value, string message)
    {
        var file = TestEnv.Golden("bnb_nf4_small");  // any existing file: --data is checked for existence first
        string[] required = command switch
        {
            "eval" => ["--model", Dir, "--data", file],
            "generate" => ["--model", Dir, "--prompt", "x"],
            "finetune" => ["--model", Dir, "--data", file, "--out", Path.Combine(Dir, "out")],
            "merge" => ["--model", Dir, "--adapter", Dir, "--out", Path.Combine(Dir, "out")],
            _ => ["--out", Path.Combine(Dir, "out")],
        };
        AssertBadInput(Sloth([command, .. required, option, value]), option, message);
        Assert.That(Directory.Exists(Path.Combine(Dir, "out")), Is.False, "nothing written");
    }

    [Test]
    public void MissingDataFileIsAUsageError()
    {
        var absent = Path.Combine(Dir, "absent.jsonl");
        AssertBadInput(Sloth("eval", "--model", Dir, "--data", absent), absent, "file not found");
    }

    [Test]
    public void UnknownOption() =>
        AssertBadInput(Sloth("info", TestEnv.Golden("bnb_nf4_small"), "--frobnicate"), "--frobnicate", "unknown option");

    [Test]
    public void UnknownCommandAndMissingArgument()
    {
        AssertBadInput(Sloth("frobnicate"), "frobnicate", "unknown command");
        AssertBadInput(Sloth("info"), "sloth info", "missing argument <file>");
        AssertBadInput(Sloth(), "sloth", "command");
    }

    [Test]
    public void VerbosePrintsTheTrace()
    {
        var path = Path.Combine(Dir, "empty.safetensors");
        File.WriteAllBytes(path, []);
        var r = Sloth("info", path, "--verbose");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(r.Err, Does.StartWith($"error: {path}: "));
        Assert.That(r.Err, Does.Match(@"\n\s+at [\w.`<>]+"), "the trace follows the line");
    }

    [Test]
    public void HelpGoesToStdoutWithExitZero()
    {
        var r = Sloth("info", "--help");
        Assert.That(r.Code, Is.EqualTo(0));
        Assert.That(r.Out, Does.Contain("info"));
        Assert.That(r.Err, Is.Empty);
    }

    [Test]
    public void UnexpectedExceptionsExitOneWithAHint()
    {
        var line = CliErrors.Format(new InvalidOperationException("boom"), "sloth info", CliErrors.IsBadInput(new InvalidOperationException()));
        Assert.That(line, Is.EqualTo($"error: sloth info: boom (InvalidOperationException; {CliErrors.VerboseHint})"));
    }

    [Test]
    public void ExceptionsMapToExitCodesAndSubjects()
    {
        Assert.That(CliErrors.IsBadInput(new CliException("--data", "x")), Is.True);
        Assert.That(CliErrors.IsBadInput(new ArgumentOutOfRangeException("n")), Is.True);
        Assert.That(CliErrors.IsBadInput(new InvalidDataException()), Is.True);
        Assert.That(CliErrors.IsBadInput(new EndOfStreamException()), Is.True);
        Assert.That(CliErrors.IsBadInput(new KeyNotFoundException()), Is.True);
        Assert.That(CliErrors.IsBadInput(new SlothInvalidArgumentException("f: bad")), Is.True);
        Assert.That(CliErrors.IsBadInput(new SlothNoCudaException("f: none")), Is.True);
        Assert.That(CliErrors.IsBadInput(new SlothInternalException("f: bug")), Is.False);
        Assert.That(CliErrors.IsBadInput(new NullReferenceException()), Is.False);

        Assert.That(CliErrors.Format(new CliException("--data", "no such split"), "x", true), Is.EqualTo("error: --data: no such split"));
        Assert.That(CliErrors.Format(new InvalidDataException("/m/config.json: field 'hidden_size' is missing."), "x", true),
            Is.EqualTo("error: /m/config.json: field 'hidden_size' is missing"));
        Assert.That(CliErrors.Format(new ArgumentException("Unknown dtype 'q'", "dtype"), "in.st", true), Is.EqualTo("error: in.st: unknown dtype 'q'"));
        Assert.That(CliErrors.Format(new FileNotFoundException("Could not find file '/a/b.json'.", "/a/b.json"), "x", true),
            Is.EqualTo("error: /a/b.json: file not found"));
        Assert.That(CliErrors.Format(new SlothInvalidArgumentException("sloth_nf4_dequantize: n = 0 must be >= 1"), "x", true),
            Is.EqualTo("error: sloth_nf4_dequantize: n = 0 must be >= 1"));
        Assert.That(CliErrors.Format(new InvalidDataException("line one\nline two"), "f.jsonl", true), Is.EqualTo("error: f.jsonl: line one line two"));
    }

    /// <summary>The real entry point in its own process: `dotnet sloth.dll` writes the line to stderr and exits 2.</summary>
    [Test]
    public void ChildProcessUsesStderrAndExitCode()
    {
        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host
            : Environment.GetEnvironmentVariable("DOTNET_ROOT") is { Length: > 0 } root && File.Exists(Path.Combine(root, "dotnet")) ? Path.Combine(root, "dotnet")
            : "dotnet";
        var psi = new ProcessStartInfo(dotnet) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "sloth.dll"));
        foreach (var a in new[] { "dequant", TestEnv.Golden("bnb_nf4_small"), Path.Combine(Dir, "o.safetensors"), "--dtype", "int8" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        Assert.That(p.WaitForExit(120_000), Is.True, "sloth exited");
        Assert.That(p.ExitCode, Is.EqualTo(ExitCodes.BadInput), stderr);
        Assert.That(stdout.Result, Is.Empty);
        Assert.That(stderr, Is.EqualTo("error: --dtype: unknown dtype 'int8' (bf16, fp16, fp32)" + Environment.NewLine));
    }
}
