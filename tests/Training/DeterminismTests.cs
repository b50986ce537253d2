using NUnit.Framework;
using SlothSharp.Training;

namespace SlothSharp.Tests;

/// <summary>The deterministic-mode switch reaches libtorch (TorchSharp's own wrapper is unimplemented).</summary>
public class DeterminismTests
{
    [Test]
    public void EnableReachesLibtorchAndSetsTheCublasWorkspace()
    {
        var before = Determinism.Current;
        try
        {
            Assert.That(Determinism.Enable(out var problem), Is.True, problem);
            Assert.That(Determinism.Current, Is.EqualTo((true, false)));
            Assert.That(Environment.GetEnvironmentVariable("CUBLAS_WORKSPACE_CONFIG"), Is.Not.Empty);
        }
        finally
        {
            Determinism.Restore(before);
        }
        Assert.That(Determinism.Current, Is.EqualTo(before));
    }
}
