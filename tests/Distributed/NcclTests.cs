using NUnit.Framework;
using SlothSharp.Distributed;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>NCCL through the C ABI: the "unavailable" answers of a CPU-only build or a machine without NCCL, the
/// argument checks, and (category Gpu) a one-rank communicator on the GPU, whose collectives are identities.</summary>
public class NcclTests
{
    [Test]
    public void AvailabilityNeverThrowsAndUnavailableNcclSaysWhy()
    {
        var available = NcclCommunicator.IsAvailable;
        if (!CudaDevice.BuiltWithCuda) Assert.That(available, Is.False);
        if (available)
        {
            Assert.That(NcclCommunicator.Version, Is.GreaterThanOrEqualTo(21000));
            Assert.Pass($"NCCL {NcclCommunicator.Version} is available here");
        }
        Assert.That(NcclCommunicator.Version, Is.EqualTo(0));
        var e = Assert.Throws<SlothUnsupportedException>(() => NcclCommunicator.NewUniqueId());
        Assert.That(e!.Message, Does.StartWith("sloth_nccl_get_unique_id: NCCL is unavailable"));
        Assert.That(e.Message, CudaDevice.BuiltWithCuda ? Does.Contain("libnccl.so.2") : Does.Contain("without CUDA"));
        Assert.Throws<SlothUnsupportedException>(() => NcclCommunicator.Create(new byte[SlothConstants.NcclUniqueIdBytes], 1, 0, 0));
    }

    [Test]
    public void NativeArgumentChecks()
    {
        Native.EnsureLoaded();
        unsafe
        {
            var id = new byte[SlothConstants.NcclUniqueIdBytes];
            nint comm;
            fixed (byte* p = id)
            {
                Assert.That(Native.TryNcclCommInit(0, 1, 0, 0, (nint)(&comm)), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
                Assert.That(Native.LastErrorMessage, Does.Contain("id is NULL"));
                Assert.That(Native.TryNcclCommInit((nint)p, 2, 2, 0, (nint)(&comm)), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
                Assert.That(Native.LastErrorMessage, Does.Contain("rank = 2 must be in [0, nranks = 2)"));
                Assert.That(Native.TryNcclCommInit((nint)p, 1, 0, -1, (nint)(&comm)), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
            }
            Assert.That(Native.TryNcclAvailable(0, 0), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
            Assert.That(Native.TryNcclCommDestroy(0), Is.EqualTo(SlothStatus.Ok));  // NULL: a no-op
            int rank;
            Assert.That(Native.TryNcclCommInfo(0, (nint)(&rank), 0, 0), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
            if (!NcclCommunicator.IsAvailable)
            {
                // Without NCCL every collective is "unsupported", whatever its arguments.
                Assert.That(Native.TryNcclAllReduce(0, 0, 4, SlothCommDtype.F32, SlothCommOp.Sum, 0, 0), Is.EqualTo(SlothStatus.ErrorUnsupported));
                Assert.That(Native.LastErrorMessage, Does.StartWith("sloth_nccl_all_reduce: NCCL is unavailable"));
                Assert.That(Native.TryNcclGroupStart(), Is.EqualTo(SlothStatus.ErrorUnsupported));
            }
            else
            {
                Assert.That(Native.TryNcclAllReduce(0, 0, 4, (SlothCommDtype)99, SlothCommOp.Sum, 0, 0), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
                Assert.That(Native.TryNcclAllReduce(0, 0, 4, SlothCommDtype.F32, (SlothCommOp)9, 0, 0), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
                Assert.That(Native.TryNcclAllGather(0, 0, 4, SlothCommDtype.F32, 0, 0), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
                Assert.That(Native.LastErrorMessage, Does.Contain("comm is NULL"));
            }
        }
    }

    [Test]
    public void UniqueIdMustHaveItsSize()
    {
        Assert.Throws<ArgumentException>(() => NcclCommunicator.Create(new byte[5], 1, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => NcclCommunicator.Create(new byte[SlothConstants.NcclUniqueIdBytes], 2, 2, 0));
    }
}

/// <summary>A one-rank NCCL communicator on the GPU machine's one GPU: every collective is an identity there, which
/// proves the plumbing (loading, init from an id, dtypes, streams, results) without a second GPU.</summary>
[Category("Gpu")]
public class NcclGpuTests
{
    private NcclCommunicator _comm = null!;
    private Device _cuda = null!;

    [OneTimeSetUp]
    public void Start()
    {
        TestEnv.RequireCuda();
        // On the GPU machine NCCL comes with PyTorch's CUDA libraries: its absence is a failure, not a skip.
        Assert.That(NcclCommunicator.IsAvailable, Is.True, "libnccl.so.2 did not load: " + UnavailableReason());
        TestContext.Out.WriteLine($"NCCL version code {NcclCommunicator.Version}");
        // The id travels as text, as a launcher would pass it to its workers.
        var text = Convert.ToHexString(NcclCommunicator.NewUniqueId());
        _comm = NcclCommunicator.Create(Convert.FromHexString(text), size: 1, rank: 0, device: 0);
        _cuda = CUDA;
    }

    [OneTimeTearDown]
    public void Stop() => _comm?.Dispose();

    private static string UnavailableReason()
    {
        try
        {
            NcclCommunicator.NewUniqueId();
            return "(no message)";
        }
        catch (Exception e)
        {
            return e.Message;
        }
    }

    [Test]
    public void UniqueIdsAreFreshAndTheCommunicatorKnowsItsPlace()
    {
        var a = NcclCommunicator.NewUniqueId();
        var b = NcclCommunicator.NewUniqueId();
        Assert.That(a, Has.Length.EqualTo(SlothConstants.NcclUniqueIdBytes));
        Assert.That(a, Is.Not.EqualTo(b));
        Assert.That((_comm.Rank, _comm.Size, _comm.Device), Is.EqualTo((0, 1, 0)));
        unsafe
        {
            int rank, n, device;
            Native.NcclCommInfo(_comm.NativeHandle, (nint)(&rank), (nint)(&n), (nint)(&device));
            Assert.That((rank, n, device), Is.EqualTo((0, 1, 0)));
        }
    }

    [TestCase(ScalarType.Float32)]
    [TestCase(ScalarType.BFloat16)]
    [TestCase(ScalarType.Float16)]
    [TestCase(ScalarType.Int64)]
    [TestCase(ScalarType.Byte)]
    public void CollectivesOfOneRankAreIdentities(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var host = (randn(6, 5) * 20).to(dtype is ScalarType.Int64 or ScalarType.Byte ? ScalarType.Float32 : dtype).abs().to(dtype);
        var x = host.to(_cuda);
        foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Avg, ReduceOp.Max })
        {
            var y = x.clone();
            _comm.AllReduce(y, op);
            Assert.That(TestEnv.BitEqual(y, host), Is.True, $"all-reduce {op}");
        }
        Assert.That(TestEnv.BitEqual(_comm.AllGather(x), host), Is.True, "all-gather");
        Assert.That(TestEnv.BitEqual(_comm.ReduceScatter(x), host), Is.True, "reduce-scatter");
        var b = x.clone();
        _comm.Broadcast(b, root: 0);
        Assert.That(TestEnv.BitEqual(b, host), Is.True, "broadcast");
        _comm.Barrier();
    }

    [Test]
    public void GroupedCollectivesAndEmptyTensors()
    {
        using var scope = NewDisposeScope();
        var a = arange(0, 1000, 1, ScalarType.Float32, _cuda);
        var b = arange(0, 33, 1, ScalarType.Byte, _cuda);
        Tensor ga, gb;
        using (_comm.Group())
        {
            ga = _comm.AllGather(a);
            gb = _comm.AllGather(b);
        }
        Assert.That(TestEnv.BitEqual(ga, a), Is.True);
        Assert.That(TestEnv.BitEqual(gb, b), Is.True);
        var empty = zeros(0, ScalarType.Float32, _cuda);
        _comm.AllReduce(empty);
        Assert.That(_comm.AllGather(empty).numel(), Is.EqualTo(0));
    }

    [Test]
    public void WrongDeviceOrDtypeIsAnArgumentError()
    {
        Assert.Throws<ArgumentException>(() => _comm.AllReduce(zeros(3)));                               // CPU tensor
        Assert.Throws<ArgumentException>(() => _comm.AllReduce(zeros(3, ScalarType.Bool, _cuda)));
        Assert.Throws<ArgumentOutOfRangeException>(() => _comm.Broadcast(zeros(3, ScalarType.Float32, _cuda), 1));
    }

    /// <summary>ShardedCausalLM.Prefetch over NCCL: the next layer's all-gather on the side stream, ordered by events
    /// against the compute stream. One rank (the gathers are copies): the same losses and adapters, bit for bit, as
    /// without prefetch, with the prefetches used and nothing left gathered; with the sharded optimizer too.</summary>
    [TestCase(true)]
    [TestCase(false)]
    public void PrefetchOnTheSideStreamGivesTheSameLosses(bool checkpointing)
    {
        (List<double> Losses, Dictionary<string, Tensor> Adapters, (int Used, int Wasted) Stats, bool Freed) Train(bool prefetch)
        {
            var data = Training.TrainingData.FromDocuments(Tokenization.HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir), PrefetchTests.Docs, 24, packing: false);
            var options = new Training.TrainerOptions
            {
                Lora = new Models.LoraConfig(Rank: 4, Alpha: 8, Dropout: 0), MaxSteps = 4, BatchSize = 3, SequenceLength = 24,
                LearningRate = 5e-3, Seed = 3, GradientCheckpointing = checkpointing, ShardOptimizer = true,
            };
            using var sharded = ShardedCausalLM.LoadPretrained(LlamaGolden.Nf4Dir, new Models.LoadOptions { Device = _cuda, ComputeDtype = ScalarType.Float32 }, _comm);
            sharded.Prefetch = prefetch;
            using var trainer = new Training.Trainer(sharded.Model, data, options, _comm);
            var losses = trainer.Train().Losses.ToList();
            var freed = Enumerable.Range(0, sharded.NumLayers).All(i => !sharded.IsGathered(i));
            return (losses, sharded.Model.LoraParameters().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().clone()), sharded.PrefetchStats, freed);
        }
        var off = Train(prefetch: false);
        var on = Train(prefetch: true);
        TestContext.Out.WriteLine($"losses {string.Join(", ", on.Losses.Select(l => l.ToString("R")))}; prefetch stats {on.Stats}");
        Assert.That(on.Losses, Is.EqualTo(off.Losses), "losses (bit for bit)");
        foreach (var (name, p) in on.Adapters) Assert.That(TestEnv.BitEqual(p, off.Adapters[name]), Is.True, name);
        Assert.That(on.Stats.Used, Is.EqualTo(4 * (checkpointing ? 2 : 1)), "prefetches used (2 layers)");
        Assert.That(on.Stats.Wasted, Is.EqualTo(0));
        Assert.That(on.Freed, Is.True, "a layer is still gathered after training");
    }

    [Test]
    public void ShardedStepOnOneGpuRankMatchesThePlainModel()
    {
        // The FSDP path end to end over NCCL (one rank: gathers are copies) in float32 on the GPU.
        var (loss, reference) = FsdpTests.OneRankOnDevice(_comm, _cuda);
        Assert.That(loss, Is.EqualTo(reference).Within(1e-4));
    }
}
