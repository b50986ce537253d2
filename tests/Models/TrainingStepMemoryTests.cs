using NUnit.Framework;
using SlothSharp.Losses;
using SlothSharp.Models;
using SlothSharp.Optim;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// Nothing a training step makes may outlive it. On CUDA the autograd engine runs backward on its own thread, where no
/// dispose scope is open; a managed tensor wrapper made there and never disposed keeps its GPU memory until the .NET GC
/// runs (the round-2 H100 run: the fused path OOMed at 78 GB). Here the forward runs in a dispose scope (as the Trainer
/// and the step benchmark run it) and backward on a long-lived thread without one (as the engine's device thread;
/// on the CPU the engine runs backward on the calling thread), and the live wrappers (<c>Tensor.TotalCount</c>) are
/// counted between steps: the count must not grow.
/// </summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class TrainingStepMemoryTests(string device) : DeviceFixture(device)
{
    private CausalLM Model(ScalarType dtype)
    {
        var model = CausalLM.CreateRandom(ModelPresets.Tiny, 5, new LoadOptions { Device = Dev, ComputeDtype = dtype });
        model.AddLora(new LoraConfig(Rank: 4, Alpha: 8), seed: 3);
        model.train();
        return model;
    }

    private static void Step(CausalLM model, FusedAdamW optimizer, Tensor ids, BackwardThread backward)
    {
        optimizer.zero_grad();
        Tensor loss;
        using (var scope = NewDisposeScope())
        {
            var hidden = model.Forward(ids);
            var t = ids.shape[1];
            loss = FusedLinearCrossEntropy.Apply(hidden.narrow(1, 0, t - 1), model.LmHeadWeight, null, ids.narrow(1, 1, t - 1))
                .MoveToOuterDisposeScope();
        }
        backward.Run(loss.backward);
        loss.Dispose();
        optimizer.step();
    }

    /// <summary>One thread, alive for the whole test, with no dispose scope: where backward runs.</summary>
    private sealed class BackwardThread : IDisposable
    {
        private readonly System.Collections.Concurrent.BlockingCollection<(Action Work, TaskCompletionSource Done)> _queue = new();
        private readonly Thread _thread;

        public BackwardThread()
        {
            _thread = new Thread(() =>
            {
                foreach (var (work, done) in _queue.GetConsumingEnumerable())
                {
                    try { work(); done.SetResult(); }
                    catch (Exception e) { done.SetException(e); }
                }
            }) { IsBackground = true };
            _thread.Start();
        }

        public void Run(Action work)
        {
            var done = new TaskCompletionSource();
            _queue.Add((work, done));
            done.Task.GetAwaiter().GetResult();
        }

        public void Dispose()
        {
            _queue.CompleteAdding();
            _thread.Join();
            _queue.Dispose();
        }
    }

    [Test]
    public void LiveTensorsDoNotGrowAcrossSteps([Values] bool fused, [Values(0, 1, 2)] int checkpointInterval)
    {
        using var model = Model(ScalarType.Float32);
        model.UseFusedKernels = fused;
        model.GradientCheckpointing = checkpointInterval > 0;
        if (checkpointInterval > 0) model.GradientCheckpointingInterval = checkpointInterval;
        using var optimizer = new FusedAdamW(model.LoraParameters().Select(kv => kv.Value), lr: 1e-3);
        using var gen = new Generator(9);
        using var cpuIds = randint(0, ModelPresets.Tiny.VocabSize, [2, 16], generator: gen);
        using var ids = cpuIds.to(Dev);
        using var backward = new BackwardThread();
        Step(model, optimizer, ids, backward);
        Step(model, optimizer, ids, backward);
        // Finalizers of earlier tests' garbage must not run inside the window (they would lower the count).
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var before = Tensor.TotalCount;
        const int steps = 3;
        for (var i = 0; i < steps; i++) Step(model, optimizer, ids, backward);
        var growth = Tensor.TotalCount - before;
        Assert.That(growth, Is.LessThanOrEqualTo(0),
            $"{growth} tensor wrappers ({(double)growth / steps:F1} per step) outlived {steps} steps (fused={fused}, checkpoint interval {checkpointInterval})");
    }

    [Test]
    public void PartialCheckpointingGivesTheSameGradients([Values] bool fused)
    {
        using var scope = NewDisposeScope();
        using var model = Model(ScalarType.Float32);
        using (no_grad())
            foreach (var (_, p) in model.LoraParameters()) p.normal_(0, 0.05);  // B = 0 would leave A without gradient
        model.UseFusedKernels = fused;
        var ids = randint(0, ModelPresets.Tiny.VocabSize, [2, 16], generator: new Generator(4)).to(Dev);
        List<Tensor> Grads(bool checkpoint, int interval)
        {
            model.GradientCheckpointing = checkpoint;
            model.GradientCheckpointingInterval = interval;
            foreach (var (_, p) in model.LoraParameters()) p.grad = null;
            var hidden = model.Forward(ids);
            var t = ids.shape[1];
            FusedLinearCrossEntropy.Apply(hidden.narrow(1, 0, t - 1), model.LmHeadWeight, null, ids.narrow(1, 1, t - 1)).backward();
            return model.LoraParameters().Select(kv => kv.Value.grad!.clone()).ToList();
        }
        var plain = Grads(false, 1);
        var partial = Grads(true, 2);
        var names = model.LoraParameters().Select(kv => kv.Key).ToList();
        for (var i = 0; i < names.Count; i++) TestEnv.AssertClose(partial[i], plain[i], 1e-6, names[i]);
    }

    [Test]
    public void CheckpointIntervalMustBePositive()
    {
        using var model = Model(ScalarType.Float32);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.GradientCheckpointingInterval = 0);
    }
}
