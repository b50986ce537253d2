namespace SlothSharp.Distributed;

/// <summary>
/// How the quantization blocks of one NF4 weight are split over ranks. Rank r keeps blocks
/// [r·B, min((r+1)·B, blocks)) with B = ceil(blocks / size): its packed bytes (blocksize/2 per block) and its absmax
/// codes (one per block), zero-padded to B blocks so every rank's shard has the same size (collectives need that).
/// A shard boundary is a block boundary, so a shard never splits a block from its scale, and the rank-ordered
/// concatenation of the shards is the unsharded tensor followed by padding.
/// </summary>
internal readonly record struct Nf4BlockShard(long NumElements, int Blocksize, int Size)
{
    public long Blocks => (NumElements + Blocksize - 1) / Blocksize;
    public long PackedLength => (NumElements + 1) / 2;
    public long BlocksPerRank => (Blocks + Size - 1) / Size;
    public long PackedBytesPerBlock => Blocksize / 2;
    /// <summary>Bytes of packed codes in every rank's (padded) shard.</summary>
    public long ShardPackedLength => BlocksPerRank * PackedBytesPerBlock;

    /// <summary>The first block a rank keeps and how many real (not padding) blocks that is (0 for trailing ranks of
    /// a weight with fewer blocks than ranks).</summary>
    public (long First, long Count) Owned(int rank)
    {
        var first = Math.Min(rank * BlocksPerRank, Blocks);
        return (first, Math.Min(BlocksPerRank, Blocks - first));
    }

    /// <summary>The range [start, start + length) of the unsharded packed bytes a rank keeps (the last block of the
    /// weight may be partial).</summary>
    public (long Start, long Length) PackedRange(int rank)
    {
        var (first, count) = Owned(rank);
        var start = Math.Min(first * PackedBytesPerBlock, PackedLength);
        return (start, Math.Min((first + count) * PackedBytesPerBlock, PackedLength) - start);
    }
}
