using NUnit.Framework;

namespace SlothSharp.Tests;

/// <summary>A fixture whose every test gets a fresh, empty temporary folder (<see cref="Dir"/>, named
/// <c>sloth-{prefix}-{guid}</c>), deleted with its contents after the test.</summary>
public abstract class TempDirFixture(string prefix)
{
    protected string Dir { get; private set; } = "";

    [SetUp]
    public void MakeTempDir() => Directory.CreateDirectory(Dir = Path.Combine(Path.GetTempPath(), $"sloth-{prefix}-{Guid.NewGuid():N}"));

    [TearDown]
    public void RemoveTempDir() => Directory.Delete(Dir, recursive: true);
}
