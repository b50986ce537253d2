using NUnit.Framework;
using SlothSharp.Distributed;
using SlothSharp.Interop;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary><see cref="ShardedCausalLM.Prefetch"/> on the CPU (the next layer all-gathered on a task while the current one
/// computes): training steps give bit-identical losses and adapters with and without it, the prefetched layers are
/// used (forward, and backward's recomputation with checkpointing), and nothing stays gathered after a step.</summary>
public class PrefetchTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromMinutes(5);

    internal static readonly string[] Docs =
    [
        "Make an iterator that aggregates elements from each of the iterables.",
        "The sloth hangs from the branch and reads the weights four bits at a time.",
        "A short one.",
        "Every gradient that reaches the adapters is float32, whatever the compute dtype of the base model is.",
        "Tokens are bytes merged by a small vocabulary, so this sentence becomes many pieces.",
    ];

    private static (List<double> Losses, Dictionary<string, Tensor> Adapters, (int Used, int Wasted) Stats, bool AllFreed)[] Train(
        int ranks, bool checkpointing, bool prefetch) =>
        InProcessCommunicator.Run(ranks, c =>
        {
            var data = TrainingData.FromDocuments(HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir), Docs, 24, packing: false);
            var options = new TrainerOptions
            {
                Lora = new LoraConfig(Rank: 4, Alpha: 8, Dropout: 0), MaxSteps = 3, BatchSize = 3, SequenceLength = 24,
                LearningRate = 5e-3, Seed = 3, GradientCheckpointing = checkpointing,
            };
            using var sharded = ShardedCausalLM.LoadPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 }, c);
            sharded.Prefetch = prefetch;
            using var trainer = new Trainer(sharded.Model, data, options, c);
            var losses = trainer.Train().Losses.ToList();
            var freed = Enumerable.Range(0, sharded.NumLayers).All(i => !sharded.IsGathered(i));
            return (losses, sharded.Model.LoraParameters().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone()), sharded.PrefetchStats, freed);
        }, Wait);

    [TestCase(2, true)]
    [TestCase(2, false)]
    [TestCase(3, true)]
    public void ResultsAreUnchangedWithPrefetch(int ranks, bool checkpointing)
    {
        var off = Train(ranks, checkpointing, prefetch: false);
        var on = Train(ranks, checkpointing, prefetch: true);
        for (var r = 0; r < ranks; r++)
        {
            Assert.That(on[r].Losses, Is.EqualTo(off[r].Losses), $"rank {r} losses (bit for bit)");
            foreach (var (name, p) in on[r].Adapters)
                Assert.That(TestEnv.BitEqual(p, off[r].Adapters[name]), Is.True, $"rank {r} {name}");
            Assert.That(on[r].AllFreed, Is.True, $"rank {r}: a layer is still gathered after training");
            Assert.That(off[r].Stats, Is.EqualTo((0, 0)));
            // 2 layers: a forward uses 1 prefetch (layer 1), a checkpointed backward 1 more (layer 0 while layer 1 recomputes).
            Assert.That(on[r].Stats.Used, Is.EqualTo(3 * (checkpointing ? 2 : 1)), $"rank {r} prefetches used");
            Assert.That(on[r].Stats.Wasted, Is.EqualTo(0), $"rank {r} prefetches wasted");
        }
        TestContext.Out.WriteLine($"{ranks} ranks, checkpointing {checkpointing}: prefetch stats {on[0].Stats}");
    }

    [Test]
    public void WithoutCudaTheSideStreamIsUnsupportedAndSaysWhy()
    {
        if (CudaDevice.BuiltWithCuda) Assert.Ignore("libslothsharp has CUDA here: NcclGpuTests.PrefetchOnTheSideStreamGivesTheSameLosses runs the real path");
        var e = Assert.Throws<SlothUnsupportedException>(() => CudaStream.Create(0));
        Assert.That(e!.Message, Does.StartWith("sloth_cuda_stream_create: CUDA streams and events are unsupported: this libslothsharp was built without CUDA"));
        e = Assert.Throws<SlothUnsupportedException>(() => CudaEvent.Create(0));
        Assert.That(e!.Message, Does.StartWith("sloth_cuda_event_create: CUDA streams and events are unsupported"));
        Native.EnsureLoaded();
        unsafe
        {
            Assert.That(Native.TryCudaEventRecord(0, 1, 0), Is.EqualTo(SlothStatus.ErrorUnsupported));
            Assert.That(Native.TryCudaStreamWaitEvent(0, 0, 1), Is.EqualTo(SlothStatus.ErrorUnsupported));
            Assert.That(Native.TryCudaStreamDestroy(0, 1), Is.EqualTo(SlothStatus.ErrorUnsupported));
            Assert.That(Native.TryCudaEventDestroy(0, 1), Is.EqualTo(SlothStatus.ErrorUnsupported));
            // Argument checks come first: a NULL out-pointer or event is an argument error in every build.
            Assert.That(Native.TryCudaStreamCreate(0, 0), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
            Assert.That(Native.LastErrorMessage, Does.Contain("stream is NULL"));
            Assert.That(Native.TryCudaEventRecord(0, 0, 0), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaStream.Create(-1));
    }

    /// <summary>A communicator that is neither in-process nor NCCL: prefetch is refused, naming it.</summary>
    private sealed class OtherCommunicator(ICommunicator inner) : ICommunicator
    {
        public int Rank => inner.Rank;
        public int Size => inner.Size;
        public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => inner.AllReduce(tensor, op);
        public Tensor AllGather(Tensor shard) => inner.AllGather(shard);
        public Tensor ReduceScatter(Tensor full, ReduceOp op = ReduceOp.Sum) => inner.ReduceScatter(full, op);
        public void Broadcast(Tensor tensor, int root) => inner.Broadcast(tensor, root);
        public void Barrier() => inner.Barrier();
        public void Dispose() { }
    }

    [Test]
    public void PrefetchIsRefusedForAnotherCommunicator()
    {
        InProcessCommunicator.Run(1, c =>
        {
            using var sharded = ShardedCausalLM.LoadPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 }, new OtherCommunicator(c));
            var e = Assert.Throws<NotSupportedException>(() => sharded.Prefetch = true);
            Assert.That(e!.Message, Does.Contain("OtherCommunicator is neither"));
            Assert.That(sharded.Prefetch, Is.False);
            return 0;
        }, Wait);
    }

    [Test]
    public void PrefetchNeedsACommunicatorThatRunsBesideTheCompute()
    {
        // Every in-process rank may prefetch; turning it off drains (nothing in flight).
        InProcessCommunicator.Run(1, c =>
        {
            using var sharded = ShardedCausalLM.LoadPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 }, c);
            sharded.Prefetch = true;
            sharded.Prefetch = false;
            return 0;
        }, Wait);
    }
}
