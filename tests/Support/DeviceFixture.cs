using NUnit.Framework;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Base of the fixtures that run once on the CPU and once on CUDA (the latter in the Gpu category,
/// inconclusive without a GPU): derive with [TestFixture("cpu")] and [TestFixture("cuda", Category = "Gpu")].</summary>
public abstract class DeviceFixture(string deviceName)
{
    protected string DeviceName { get; } = deviceName;
    protected Device Dev => DeviceName == "cpu" ? CPU : CUDA;

    [SetUp]
    public void RequireDevice()
    {
        if (DeviceName == "cuda") TestEnv.RequireCuda();
    }
}
