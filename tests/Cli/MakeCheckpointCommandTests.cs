using NUnit.Framework;
using SlothSharp.Cli;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>`sloth make-checkpoint` writes a checkpoint that FromPretrained loads, dense or bnb-4bit, and refuses bad input.</summary>
public class MakeCheckpointCommandTests() : TempDirFixture("mkckpt")
{
    [TestCase(false)]
    [TestCase(true)]
    public void WritesALoadableTinyCheckpoint(bool bnb)
    {
        var outDir = Path.Combine(Dir, bnb ? "bnb" : "dense");
        var err = new StringWriter();
        var code = SlothCli.Run(["make-checkpoint", "--out", outDir, "--preset", "tiny", "--seed", "3",
            "--tokenizer", Path.Combine(TestEnv.TinyLlamaDir, "dense"), .. (bnb ? new[] { "--bnb-4bit" } : [])], TextWriter.Null, err);
        Assert.That(code, Is.EqualTo(0), err.ToString());
        Assert.That(File.Exists(Path.Combine(outDir, "tokenizer.json")), Is.True);
        using var model = CausalLM.FromPretrained(outDir, new LoadOptions { Device = CPU });
        Assert.That(model.IsQuantized, Is.True);
        Assert.That(model.Config.HiddenSize, Is.EqualTo(ModelPresets.Tiny.HiddenSize));
        using var ids = tensor(new long[] { 0, 5, 7, 9 }).reshape(1, 4);
        using var hidden = model.Forward(ids);
        Assert.That(hidden.isfinite().all().item<bool>(), Is.True);
    }

    /// <summary>config.json takes bos/eos/pad from the tokenizer it ships with (a 1B preset paired with a small test
    /// tokenizer once named BOS 128000 in config.json and id 0 in the tokenizer: transformers and SlothSharp then
    /// evaluated different sequences).</summary>
    [Test]
    public void ConfigTakesTheSpecialTokenIdsOfTheShippedTokenizer()
    {
        var outDir = Path.Combine(Dir, "aligned");
        var config = ModelPresets.Tiny with { BosTokenId = 7, EosTokenIds = [8, 9], PadTokenId = null };
        CheckpointWriter.WriteRandom(outDir, config, 1, bnb4bit: false, Path.Combine(TestEnv.TinyLlamaDir, "dense"));
        var written = ModelConfig.Load(Path.Combine(outDir, "config.json"));
        var tok = SlothSharp.Tokenization.HfTokenizer.FromDirectory(outDir);
        Assert.That(written.BosTokenId, Is.EqualTo(tok.BosTokenId).And.EqualTo(0));
        Assert.That(written.EosTokenIds, Is.EqualTo(new[] { tok.EosTokenId!.Value }));
        Assert.That(written.PadTokenId, Is.EqualTo(tok.PadTokenId));
    }

    [Test]
    public void BadInputIsOneLineAndExitTwo()
    {
        var nonEmpty = Path.Combine(Dir, "taken");
        Directory.CreateDirectory(nonEmpty);
        File.WriteAllText(Path.Combine(nonEmpty, "x"), "x");
        foreach (var args in new[]
                 {
                     new[] { "make-checkpoint", "--out", nonEmpty, "--preset", "tiny" },
                     new[] { "make-checkpoint", "--out", Path.Combine(Dir, "a"), "--preset", "llama-9000" },
                     new[] { "make-checkpoint", "--out", Path.Combine(Dir, "b"), "--preset", "tiny", "--tokenizer", Dir },
                 })
        {
            var err = new StringWriter();
            Assert.That(SlothCli.Run(args, TextWriter.Null, err), Is.EqualTo(ExitCodes.BadInput), string.Join(" ", args));
            Assert.That(err.ToString().TrimEnd().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(err.ToString(), Does.StartWith("error: "));
        }
    }
}
