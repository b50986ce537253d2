using NUnit.Framework;
using SlothSharp.Cli;

namespace SlothSharp.Tests;

/// <summary>`sloth finetune --gpus N`: the request is checked against the machine before anything is loaded or
/// written (exit 2, one line naming --gpus), and the workers get the user's arguments without --gpus.</summary>
public class FinetuneGpusTests() : TempDirFixture("gpus")
{
    private string[] Required() => ["finetune", "--model", Dir, "--data", TestEnv.Golden("bnb_nf4_small"), "--out", Path.Combine(Dir, "out")];

    [Test]
    public void MoreGpusThanTheMachineHasIsABadInput()
    {
        // 64: more than any machine this runs on (no GPU here, one on the lead's).
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. Required(), "--gpus", "64"]), "--gpus", "64 GPUs asked for, but");
        Assert.That(Directory.Exists(Path.Combine(Dir, "out")), Is.False, "nothing written");
    }

    [Test]
    public void GpusWithACpuDeviceIsABadInput() =>
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. Required(), "--gpus", "2", "--device", "cpu"]), "--gpus",
                                     "--device cpu cannot be combined with it");

    [Test]
    public void ZeroGpusIsAUsageError() =>
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. Required(), "--gpus", "0"]), "--gpus", "must be a positive integer (got 0)");

    [TestCase(2, "cuda:1", 2, null, "--device cuda:1 cannot be combined")]
    [TestCase(1, "auto", 0, null, "1 GPU asked for, but no CUDA GPU is visible")]
    [TestCase(3, "cuda", 2, null, "3 GPUs asked for, but this machine has 2 visible CUDA GPUs")]
    [TestCase(2, "auto", 2, "libnccl.so.2 could not be loaded", "NCCL is not available: libnccl.so.2 could not be loaded")]
    public void TheMachineCheckNamesWhatIsMissing(int gpus, string device, int count, string? nccl, string message)
    {
        var e = Assert.Throws<CliException>(() => FinetuneCommand.ValidateGpus(gpus, device, count, nccl))!;
        Assert.That(e.Subject, Is.EqualTo("--gpus"));
        Assert.That(e.Message, Does.Contain(message));
    }

    [Test]
    public void AMachineWithEnoughGpusAndNcclPasses() =>
        Assert.DoesNotThrow(() => FinetuneCommand.ValidateGpus(2, "auto", 8, null));

    [Test]
    public void WorkersGetTheArgumentsWithoutGpus()
    {
        string[] args = ["finetune", "--model", "m", "--data", TestEnv.Golden("bnb_nf4_small"), "--out", "o", "--gpus", "2", "--steps", "3", "--packing"];
        var parsed = Program.CreateRoot().Parse(args);
        Assert.That(parsed.Errors, Is.Empty);
        var worker = FinetuneCommand.WorkerArguments(parsed.Tokens.Select(t => t.Value));
        Assert.That(worker, Is.EqualTo(new[] { "finetune", "--model", "m", "--data", TestEnv.Golden("bnb_nf4_small"), "--out", "o", "--steps", "3", "--packing" }));
        Assert.That(FinetuneCommand.WorkerArguments(["finetune", "--gpus=4", "--seed", "1"]), Is.EqualTo(new[] { "finetune", "--seed", "1" }));
    }
}
