using NUnit.Framework;
using SlothSharp.Distributed;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary><see cref="ShardedCausalLM.LoadPretrained"/> on the CPU with ranks as threads: a rank holds only its blocks of
/// every NF4 decoder weight from the moment loading ends, and a gathered layer is byte for byte the unsharded one.</summary>
public class ShardedLoadingTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromMinutes(5);

    private static IEnumerable<(string Name, Projection Linear)> Projections(CausalLM model) =>
        model.Model.Layers.SelectMany((l, i) => l.Projections.Select(p => ($"model.layers.{i}.{p.GetName()}", p)));

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void ARankHoldsOnlyItsShardAndGathersTheUnshardedLayer(int ranks)
    {
        using var reference = LlamaGolden.LoadBase();
        var expected = Projections(reference).ToDictionary(p => p.Name, p => (Packed: p.Linear.Nf4!.Packed.clone(), Codes: p.Linear.Nf4.AbsmaxCodes.clone()));
        var results = InProcessCommunicator.Run(ranks, c =>
        {
            using var sharded = ShardedCausalLM.LoadPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 }, c);
            var model = sharded.Model;
            var heldAfterLoad = Projections(model).Sum(p => p.Linear.Nf4!.Packed.numel() + p.Linear.Nf4.AbsmaxCodes.numel());
            // The shard itself: this rank's blocks of the checkpoint's bytes.
            var shardMatches = new List<string>();
            var layers = new List<(string Name, bool Packed, bool Codes, bool FreedAfter)>();
            for (var i = 0; i < sharded.NumLayers; i++)
            {
                using (sharded.Gather(i))
                {
                    foreach (var (name, p) in Projections(model).Where(p => p.Name.StartsWith($"model.layers.{i}.", StringComparison.Ordinal)))
                        layers.Add((name, TestEnv.BitEqual(p.Nf4!.Packed, expected[name].Packed), TestEnv.BitEqual(p.Nf4.AbsmaxCodes, expected[name].Codes), false));
                }
                Assert.That(sharded.IsGathered(i), Is.False);
            }
            return (heldAfterLoad, sharded.ShardBytes, sharded.FullBytes, layers);
        }, Wait);
        for (var r = 0; r < ranks; r++)
        {
            var (held, shardBytes, fullBytes, layers) = results[r];
            Assert.That(held, Is.EqualTo(0), $"rank {r}: no full NF4 bytes held after loading");
            Assert.That(shardBytes, Is.LessThanOrEqualTo(fullBytes / ranks + fullBytes / 50), $"rank {r} keeps ~1/{ranks}");
            Assert.That(layers, Has.Count.EqualTo(expected.Count));
            foreach (var (name, packed, codes, _) in layers)
                Assert.That((packed, codes), Is.EqualTo((true, true)), $"rank {r} {name}: gathered bytes equal the unsharded weight");
        }
        TestContext.Out.WriteLine($"{ranks} ranks: {results[0].ShardBytes} of {results[0].FullBytes} NF4 bytes per rank");
    }

    [Test]
    public void TheShardIsTheRanksBlocksOfTheCheckpoint()
    {
        using var reference = LlamaGolden.LoadBase();
        var (name, linear) = Projections(reference).First();
        var w = linear.Nf4!;
        for (var rank = 0; rank < 3; rank++)
        {
            var (packed, codes) = ShardedNf4Weight.ShardOf(w, rank, 3, CPU);
            var layout = new Nf4BlockShard(w.NumElements, w.Blocksize, 3);
            var (first, count) = layout.Owned(rank);
            var (start, length) = layout.PackedRange(rank);
            Assert.That(TestEnv.BitEqual(packed.narrow(0, 0, length), w.Packed.narrow(0, start, length)), Is.True, $"{name} rank {rank} packed");
            Assert.That(TestEnv.BitEqual(codes.narrow(0, 0, count), w.AbsmaxCodes.narrow(0, first, count)), Is.True, $"{name} rank {rank} codes");
            Assert.That(packed.narrow(0, length, packed.numel() - length).sum().item<long>(), Is.EqualTo(0), "padding is zeros");
        }
    }

    [Test]
    public void ADenseLoadIsRefused() =>
        Assert.That(Assert.Throws<ArgumentException>(() => InProcessCommunicator.Run(1, c =>
            ShardedCausalLM.LoadPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Quantize = false }, c)))!.Message, Does.Contain("Quantize must be true"));
}
