using NUnit.Framework;
using SlothSharp.Data;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using static SlothSharp.Tests.Data.DatasetTestSupport;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Data;

/// <summary>Packed rows keep document boundaries: positions restart, sequence ids count documents, and no label
/// crosses a boundary.</summary>
public class PackingTests
{
    private static long[] Row(Tensor t, int b) => t[b].data<long>().ToArray();

    [Test]
    public void PackedDocumentsRestartPositionsAndMaskTheirFirstLabel()
    {
        // Tokens 10.. of three documents (3, 4, 2 tokens), all trained, packed into rows of 6.
        var docs = new[] { new[] { 10, 11, 12 }, new[] { 20, 21, 22, 23 }, new[] { 30, 31 } }
            .Select(d => new TokenizedExample(d, d.Select(_ => true).ToArray())).ToList();
        var data = TrainingData.FromTokenized(docs, padId: 0, new TrainingDataOptions { SequenceLength = 6, Packing = true });
        // Stream 10 11 12 20 21 22 | 23 30 31 (windows of 6 with stride 5: [0,6) and [5,9)).
        Assert.That(data.Rows.Select(r => r.ToArray()), Is.EqualTo(new[] { new[] { 10, 11, 12, 20, 21, 22 }, new[] { 22, 23, 30, 31 } }));
        using var batch = data.CollateBatch([0, 1], CPU);
        Assert.That(batch.InputIds.shape, Is.EqualTo(new long[] { 2, 6 }));
        Assert.That(batch.PositionIds.dtype, Is.EqualTo(ScalarType.Int64));
        Assert.That(Row(batch.PositionIds, 0), Is.EqualTo(new long[] { 0, 1, 2, 0, 1, 2 }));
        Assert.That(Row(batch.SequenceIds, 0), Is.EqualTo(new long[] { 0, 0, 0, 1, 1, 1 }));
        Assert.That(Row(batch.Labels, 0), Is.EqualTo(new long[] { -100, 11, 12, -100, 21, 22 }), "document starts are not predicted");
        // Row 1 starts inside document 2 (22 23), then document 3 (30 31), then padding.
        Assert.That(Row(batch.PositionIds, 1), Is.EqualTo(new long[] { 0, 1, 0, 1, 0, 0 }));
        Assert.That(Row(batch.SequenceIds, 1), Is.EqualTo(new long[] { 0, 0, 1, 1, -1, -1 }));
        Assert.That(Row(batch.Labels, 1), Is.EqualTo(new long[] { -100, 23, -100, 31, -100, -100 }));
        Assert.That(Row(batch.AttentionMask!, 1), Is.EqualTo(new long[] { 1, 1, 1, 1, 0, 0 }));
        Assert.That(batch.MultiDocument, Is.True);
        Assert.That(batch.Targets, Is.EqualTo(4 + 2));
        Assert.That(data.RowTargets, Is.EqualTo(new[] { 4, 2 }));
        // Every target of every document but the cross-boundary ones is trained exactly once: 2 + 3 + 1.
        Assert.That(data.RowTargets.Sum(), Is.EqualTo(2 + 3 + 1));
    }

    [Test]
    public void UnpackedRowsHavePositionsFromZeroAndOneSequence()
    {
        var tok = HfTokenizer.FromDirectory(TokenizerDir);
        var data = TrainingData.FromExamples([TrainingExample.FromText("The quick brown fox"), TrainingExample.FromText("Hello")], tok, null,
                                             new TrainingDataOptions { SequenceLength = 64 });
        using var batch = data.CollateBatch([0, 1], CPU);
        var n0 = data.Rows[0].Length;
        var n1 = data.Rows[1].Length;
        Assert.That(Row(batch.PositionIds, 0).Take(n0), Is.EqualTo(Enumerable.Range(0, n0).Select(i => (long)i)));
        Assert.That(Row(batch.SequenceIds, 0).Take(n0), Is.All.EqualTo(0));
        Assert.That(Row(batch.SequenceIds, 1).Skip(n1), Is.All.EqualTo(-1), "padding");
        Assert.That(batch.MultiDocument, Is.False);
        Assert.That(Row(batch.Labels, 0).Skip(1).Take(n0 - 1), Is.EqualTo(data.Rows[0].Skip(1).Select(i => (long)i)), "text: every target trained");
    }

    [Test]
    public void PackedConversationsKeepTheirSpansAndBoundaries()
    {
        var tok = HfTokenizer.FromDirectory(TokenizerDir);
        var examples = DatasetExamples.Load(File("messages.jsonl"));
        var render = Template();
        var single = examples.Select(e => new ExampleTokenizer(tok, render).Tokenize(e)).ToList();
        var data = TrainingData.FromExamples(examples, tok, render, new TrainingDataOptions { SequenceLength = 4096, Packing = true });
        Assert.That(data.Rows, Has.Count.EqualTo(1));
        using var batch = data.CollateBatch([0], CPU);
        var n0 = single[0].Ids.Length;
        var labels = Row(batch.Labels, 0);
        var expected = single.SelectMany(s => s.Ids.Select((id, j) => j > 0 && s.Trained[j] ? (long)id : -100)).ToArray();
        Assert.That(labels, Is.EqualTo(expected), "each document's labels as alone; its first token -100");
        Assert.That(labels[n0], Is.EqualTo(-100));
        Assert.That(Row(batch.PositionIds, 0)[n0], Is.EqualTo(0));
        Assert.That(Row(batch.SequenceIds, 0).Distinct(), Is.EqualTo(new long[] { 0, 1 }));
    }

    [Test]
    public void PlainTextFingerprintIsUnchangedByLabels()
    {
        // FromDocuments keeps hashing the rows only: a run resumed from an older checkpoint still matches.
        var tok = HfTokenizer.FromDirectory(TokenizerDir);
        var data = TrainingData.FromDocuments(tok, ["one doc", "two doc"], 8, packing: true);
        var rowsOnly = TrainingData.FromTokenRows(data.Rows, 8, data.PadId);
        Assert.That(data.Fingerprint, Is.EqualTo(rowsOnly.Fingerprint));
        var masked = TrainingData.FromTokenized([new TokenizedExample([1, 2, 3], [false, false, true])], 0, new TrainingDataOptions { SequenceLength = 8 });
        var all = TrainingData.FromTokenized([new TokenizedExample([1, 2, 3], [true, true, true])], 0, new TrainingDataOptions { SequenceLength = 8 });
        Assert.That(masked.Fingerprint, Is.Not.EqualTo(all.Fingerprint), "labels are part of an example dataset's fingerprint");
    }
}
