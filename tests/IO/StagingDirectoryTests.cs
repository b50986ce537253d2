using NUnit.Framework;
using SlothSharp.IO;

namespace SlothSharp.Tests;

/// <summary>The temporary sibling through which checkpoints, adapters and training states are written.</summary>
public class StagingDirectoryTests() : TempDirFixture("stage")
{
    [Test]
    public void MovedIntoPlaceWhenComplete()
    {
        var final = Path.Combine(Dir, "new", "out");
        using (var staging = StagingDirectory.Beside(final))
        {
            Assert.That(Path.GetDirectoryName(staging.Path), Is.EqualTo(Path.GetDirectoryName(final)), "a sibling: the rename stays on one file system");
            Assert.That(Path.GetFileName(staging.Path), Does.StartWith(".out.tmp-"), "hidden, named after the target");
            File.WriteAllText(Path.Combine(staging.Path, "a.txt"), "a");
            Assert.That(Directory.Exists(final), Is.False, "nothing visible before the move");
            staging.MoveTo(final);
        }
        Assert.That(File.ReadAllText(Path.Combine(final, "a.txt")), Is.EqualTo("a"));
        Assert.That(Directory.GetDirectories(Path.GetDirectoryName(final)!), Is.EqualTo(new[] { final }), "no staging folder left");
    }

    [Test]
    public void RemovedWhenTheWriteFails()
    {
        var final = Path.Combine(Dir, "out");
        Assert.Throws<InvalidOperationException>(() =>
        {
            using var staging = StagingDirectory.Beside(final);
            File.WriteAllText(Path.Combine(staging.Path, "half.txt"), "half");
            throw new InvalidOperationException("the write failed");
        });
        Assert.That(Directory.GetFileSystemEntries(Dir), Is.Empty, "neither the target nor the staging folder");
    }
}
