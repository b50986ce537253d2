// The kernels of the decoding engine (decoder.cpp), after validation: one argument struct per kernel, a CPU twin
// (cpu/decode_*_cpu.cpp) and a CUDA version (cuda/decode_*.cu) of each. Per-step values (the cache length L, the
// positions, the token ids) are read from memory by the kernels, never passed by value, so a captured CUDA graph
// replays correctly at every step.
#pragma once
#include "backends.h"

#include <cstdint>
#include <initializer_list>

namespace sloth {

// The attention's split over the keys (flash-decoding): at most kDecodeMaxSplits splits of a cache, each of at least
// kDecodeMinChunk keys, so one sequence fills a GPU while the combine stays cheap. A small batch (at most
// kDecodeSmallBatch rows) has too few (row, kv head) pairs to fill the GPU, and each warp walks its keys one after the
// other (a load latency each): it gets finer splits (measured on the H100: 20 us per layer at chunk 64, batch 1).
// A larger batch has blocks to spare, and each block pays fixed costs (the length, q, its partials) besides its walk:
// 128 keys a block rather than 64 took the Llama-1B step's attention at batch 64 from 0.947 to 0.784 ms (H100,
// bench/results/2026-12-06-h100-round11). From kDecodeLargeBatch rows on, (row, kv head) pairs alone nearly fill the
// GPU, so a block walks at least kDecodeLargeMinChunk keys: Qwen3-1.7B's attention at batch 64 over a 547-key cache
// took 1.384 ms a step at 128 keys a block, 1.252 at 512 (bench/results/2026-12-07-round19); its whole step 4.6%
// faster in round 24 (bench/results/2026-12-07-round24).
// The tensor-core walk (cuda/decode_attention_mma.cuh: bf16/f16, head_dim 64 or 128, at most 8 query heads per KV
// head, kernels compiled for sm_80+) takes 16 keys a warp step, so its small-batch chunks are kDecodeMmaSmallMinChunk
// keys, one tile for each of a block's 4 warps: with it at batch 1, Llama-3.2-1B went from 871 to 1,024 tokens/s and
// Qwen3-1.7B from 572 to 660 (H100, same call, bench/results/2026-12-07-round26); at batch 64 it took Llama-3.2-1B from
// 31,528 to 34,560 and left Qwen3-1.7B even (18,840 against 18,776). The other walks keep 16-key small chunks.
constexpr int64_t kDecodeMaxSplits = 32;
constexpr int64_t kDecodeMinChunk = 128;
constexpr int64_t kDecodeSmallBatch = 4;
constexpr int64_t kDecodeSmallMaxSplits = 128;
constexpr int64_t kDecodeSmallMinChunk = 16;
constexpr int64_t kDecodeMmaSmallMinChunk = 64;
// At most this many splits form one thread-block cluster (cuda/decode_attention_kernels.cuh's attention_kernel with
// kClusterMerge: the walk and the merge in one launch on sm_90+; 16 is the H100's largest, "non-portable" cluster).
constexpr int64_t kDecodeClusterMaxSplits = 16;
// And only up to this batch: at batch 64 the cluster kernel was 9-10% slower than the walk and the combine kernel
// (H100, bench/results/2026-12-07-round30), at batch 1 and 4 2-4% faster.
constexpr int64_t kDecodeClusterMaxBatch = 8;
constexpr int64_t kDecodeLargeBatch = 32;
constexpr int64_t kDecodeLargeMinChunk = 512;
constexpr int64_t kDecodeMaxHeadDim = 256;
constexpr int64_t kDecodeMaxGroup = 16;  // query heads per KV head

// tensor_cores: the keys are walked on tensor cores (the launcher's choice, which the chunks follow). The splits with
// it are never more than without it, so scratch sized without it (decode_partial_floats) covers both.
inline int64_t decode_chunk(int64_t batch, int64_t max_length, bool tensor_cores = false) {
    const bool small = batch <= kDecodeSmallBatch;
    const int64_t splits = small ? kDecodeSmallMaxSplits : kDecodeMaxSplits;
    const int64_t least = small ? (tensor_cores ? kDecodeMmaSmallMinChunk : kDecodeSmallMinChunk)
                        : batch >= kDecodeLargeBatch ? kDecodeLargeMinChunk : kDecodeMinChunk;
    const int64_t c = (max_length + splits - 1) / splits;
    return c < least ? least : c;
}
inline int64_t decode_splits(int64_t batch, int64_t max_length, bool tensor_cores = false) {
    const int64_t c = decode_chunk(batch, max_length, tensor_cores);
    return (max_length + c - 1) / c;
}
// Whether an attention launch has the cluster kernel's shape (one launch for the walk and the merge: the merge not in
// the walk, the tensor-core walk's head_dim 64 or 128 and at most 8 query heads per KV head in a 16-bit dtype, at most
// kDecodeClusterMaxSplits splits; any batch). The CUDA side adds: the kernels were compiled for sm_90+
// (cuda::decode_attention_clustered).
inline bool decode_cluster_shape(int64_t heads, int64_t kv_heads, int64_t head_dim, sloth_dtype dtype, int64_t batch,
                                 int64_t max_length, bool merge_in_walk) {
    if (merge_in_walk || (head_dim != 64 && head_dim != 128) || heads / kv_heads > 8 ||
        (dtype != SLOTH_DTYPE_BF16 && dtype != SLOTH_DTYPE_F16))
        return false;
    return batch <= kDecodeClusterMaxBatch && decode_splits(batch, max_length, true) <= kDecodeClusterMaxSplits;
}
// The fused q/k preparation (cuda/decode_attention_kernels.cuh, attention_prep_kernel): where the attention takes the
// cluster form (cuda::decode_attention_clustered), the decoder issues the q/k preparation and the attention as one
// launch, 8 L + 4 -> 7 L + 4 a step. The same bits (the persistent step's GPU tests compare). EXPERIMENTAL, off: not
// yet timed on a GPU (round 32 landed it switched off; tools/gpu-steps/lease-r32-1.sh builds a library with it on).
constexpr bool kDecodeFusedPrep = false;

// Each split is walked by this many warps of one block, each keeping its own partial result (no shared-memory
// merge inside the block: the last block of the (row, kv head) to finish merges them all, cuda/decode_attention_kernels.cuh).
constexpr int64_t kDecodeWarpsPerSplit = 4;
// float32 values of the attention's partial results: per (row, head, split, warp) a max, a sum and head_dim
// accumulators.
// Enough for every batch up to `batch`: the splits are constant within each of the three ranges of batch sizes
// (small, middle, large), so the most rows x splits is at the last batch of a range.
inline int64_t decode_partial_floats(int64_t batch, int64_t heads, int64_t head_dim, int64_t max_length) {
    int64_t most = 0;
    for (const int64_t last : {kDecodeSmallBatch, kDecodeLargeBatch - 1, batch}) {
        const int64_t b = last < batch ? last : batch;
        const int64_t rows = b * decode_splits(b, max_length);
        most = rows > most ? rows : most;
    }
    return most * heads * kDecodeWarpsPerSplit * (head_dim + 2);
}
// The scratch of sloth_decode_attention: the partials (decode_partial_floats), then the int32 arrival counters of the
// last-block merge, one per (row, kv head) at most batch * heads of them (kv_heads <= heads; the size query does not
// take kv_heads), one float's room each.
inline int64_t decode_attention_scratch_floats(int64_t batch, int64_t heads, int64_t head_dim, int64_t max_length) {
    return decode_partial_floats(batch, heads, head_dim, max_length) + batch * heads;
}

// The NF4 products past SLOTH_NF4_GEMV_MAX_BATCH rows on CUDA (cuda/nf4_gemm_wide.cu): up to kNf4WideMaxBatch rows, a
// block over kNf4WideRows weight rows, the columns split over blocks, each at least two 128-column super-chunks, at
// most kNf4WideMaxSplits (a thread-block cluster's portable size: at batch 9-16, sm_90 code adds the splits' sums
// inside the cluster). Elsewhere the sums go through a float32 scratch of nf4_wide_partial_floats.
//
// The split is chosen for whole waves: the blocks run in waves of nf4_wide_wave_blocks, and a block's time grows with
// its super-chunks, so a launch takes about (waves) x (super-chunks a block); the split that makes this least wins,
// the fewer splits on a tie (fewer partial sums to write and add). Round 28's rule asked for about 264 blocks
// whatever the waves: Qwen3-1.7B's gate/up at batch 64 (96 row blocks, 16 super-chunks) got 3 splits of 6, 288 blocks
// in 3 waves of 132 (the last one 24 blocks), 18 units; 4 splits of 4 make 384 blocks in 3 waves, 12 units. On the
// H100 at batch 64 (512 new tokens) this rule took Qwen3-1.7B from 15,861 to 17,195 tokens/s and Llama-3.2-1B from
// 28,804 to 33,569 (bench/results/2026-12-07-round30).
// The waves are the H100's 132 SMs, one block each past 32 rows (143 registers at 8 n-tiles) and two up to 32 (116-128
// registers): design constants, not the device's, so the split follows from (m, k, batch class) alone and the bits
// do not depend on the GPU. A row's bits therefore depend on the batch only through its class (9-32 or 33-64).
constexpr int64_t kNf4WideMaxBatch = 64;
constexpr int64_t kNf4WideRows = 128;
constexpr int64_t kNf4WideMaxSplits = 8;
constexpr int64_t kNf4WideWaveSms = 132;
constexpr int64_t kNf4WideOneBlockBatch = 32;  // past it, one block an SM
inline int64_t nf4_wide_wave_blocks(int64_t batch) {
    return batch > kNf4WideOneBlockBatch ? kNf4WideWaveSms : 2 * kNf4WideWaveSms;
}
inline int64_t nf4_wide_splits(int64_t m, int64_t k, int64_t batch) {
    const int64_t chunks = k / 128, row_blocks = (m + kNf4WideRows - 1) / kNf4WideRows;
    if (chunks < 2 || row_blocks < 1) return 1;  // the kernel takes k % 128 == 0 only; the sizing asks for any shape
    const int64_t most = chunks / 2 < kNf4WideMaxSplits ? chunks / 2 : kNf4WideMaxSplits;
    const int64_t wave = nf4_wide_wave_blocks(batch);
    int64_t best = 1, best_cost = -1;
    for (int64_t s = 1; s <= most; ++s) {
        const int64_t per = (chunks + s - 1) / s, used = (chunks + per - 1) / per;  // no split left empty
        const int64_t cost = (row_blocks * used + wave - 1) / wave * per;
        if (best_cost < 0 || cost < best_cost) best = used, best_cost = cost;
    }
    return best;
}
// The float32 partials of a wide launch over row_blocks blocks of kNf4WideRows rows (the kernel's count: per member
// ceil(m / 128), or ceil(m / 64) for the gated form) and vrows output rows in all (gated: gate and up), the most any
// batch up to `batch` needs: the split depends on the batch's class and is not monotone in the row blocks, so the
// sizing takes the launch's own row blocks and both classes.
inline int64_t nf4_wide_partial_floats(int64_t batch, int64_t row_blocks, int64_t vrows, int64_t k) {
    const int64_t small = batch < kNf4WideOneBlockBatch ? batch : kNf4WideOneBlockBatch;
    int64_t most = nf4_wide_splits(row_blocks * kNf4WideRows, k, small) * small * vrows;
    if (batch > kNf4WideOneBlockBatch) {
        const int64_t large = nf4_wide_splits(row_blocks * kNf4WideRows, k, batch) * batch * vrows;
        most = large > most ? large : most;
    }
    return most;
}

struct EmbedArgs {
    const int64_t* ids;  // [batch], clamped to [0, vocab)
    const void* table;   // [vocab, hidden]
    sloth_dtype dtype;
    int64_t batch, hidden, vocab;
    float scale;  // 1: copy; else out = to_dtype(row * scale)
    void* out;    // [batch, hidden]
};

struct DenseGemvArgs {
    const void* x;  // [batch, k]
    const void* w;  // [m, k]
    sloth_dtype dtype;
    int64_t batch, k, m;
    float scale;      // 1: none
    bool accumulate;  // y = to_dtype(y + v)
    bool out_f32;     // y float32
    float softcap;    // out_f32 only; 0: none
    void* y;          // [batch, m]
};

struct QkPrepArgs {
    sloth_dtype dtype;
    int64_t batch, heads, kv_heads, head_dim, rotary_dim, max_length;
    const void* q;  // projection rows: q + b * q_stride, heads * head_dim values
    int64_t q_stride;
    const void* k;
    int64_t k_stride;
    const void* v;
    int64_t v_stride;
    const void* q_bias;  // [heads * head_dim] or NULL; k_bias, v_bias [kv_heads * head_dim]
    const void* k_bias;
    const void* v_bias;
    const void* q_norm;  // [head_dim] or NULL (then k_norm NULL too)
    const void* k_norm;
    float eps;
    bool unit_offset;
    const void* cos;  // [max_length, rotary_dim]
    const void* sin;
    const int64_t* positions;  // [batch]
    const int64_t* length;     // [1]: the cache index L written
    void* q_out;               // [batch, heads, head_dim]
    void* k_cache;             // [>= batch, kv_heads, max_length, head_dim]
    void* v_cache;
    uint8_t* valid;  // [>= batch, max_length]: valid[b, L] = 1
};

struct DecodeAttentionArgs {
    const void* q;  // [batch, heads, head_dim]
    const void* k_cache;
    const void* v_cache;
    const uint8_t* valid;
    const int64_t* length;
    sloth_dtype dtype;
    int64_t batch, heads, kv_heads, head_dim, max_length;
    int64_t window;  // 0: none
    float scale;
    float softcap;  // 0: none
    float* partial;     // decode_partial_floats(batch, heads, head_dim, max_length) values
    int32_t* arrivals;  // [batch * kv_heads] blocks of each (row, kv head) done so far: 0 on entry, left 0 (CUDA only)
    void* out;          // [batch, heads * head_dim]
    // CUDA: true, the last block of each (row, kv head) merges the partials (one launch); false, a second kernel does,
    // one block per (row, head) (the arrival counters are then untouched). The same output bits either way.
    bool merge_in_walk = true;
};

struct ResidualNormArgs {
    sloth_dtype dtype;
    int64_t rows, cols;
    float eps;
    bool unit_offset;
    void* h;                 // [rows, cols] the residual stream
    const void* delta;       // NULL: y = norm(h); else h = to_dtype(h + [norm(delta, delta_norm)])
    const void* delta_norm;  // NULL: delta added as is
    const void* weight;
    void* y;  // [rows, cols]
};

struct GatedActArgs {
    sloth_dtype dtype;
    sloth_gate_activation activation;
    int64_t rows, cols;
    const void* gate;  // row r at gate + r * stride
    const void* up;
    int64_t stride;
    void* out;  // [rows, cols]
};

// The split-K rule of the NF4 GEMV (cuda/nf4_gemv_kernels.cuh), shared with the decoder so that a grouped launch splits each
// member exactly as a single launch over its whole matrix would (same slices, same summation order, same bits).
// A row is split over more warps (1, 2, 4 or 8 of a 256-thread block) while the grid is small (fewer than
// kNf4GemvTargetWarps warps: ~31 per SM on an H100, enough loads in flight to cover DRAM latency) or a row has more
// than 64 chunks of 32 weights (two per lane, all requested up front), keeping at least 8 chunks per slice.
constexpr int kNf4GemvWarps = 8;
constexpr int64_t kNf4GemvTargetWarps = 4096;
inline int nf4_gemv_slices(int64_t m, int64_t k) {
    const int64_t chunks = (k + 31) / 32;
    int slices = 1;
    while (slices < kNf4GemvWarps && (m * slices < kNf4GemvTargetWarps || chunks > 64 * slices) && chunks / (2 * slices) >= 8)
        slices *= 2;
    return slices;
}

// One weight of a grouped NF4 GEMV: rows [row0, row0 + m) of an NF4 matrix of matrix_rows rows and k columns
// (bitsandbytes layout, element i = row * k + col), its own absmax codes, nested code map, nested absmax and offset.
// row0 > 0 takes the second half of a fused [gate; up] weight without re-pointing its absmax arrays.
struct Nf4GroupMember {
    const uint8_t* packed;
    const uint8_t* absmax_codes;
    const float* nested_code_map;
    const float* nested_absmax;
    const float* nested_offset;
    const float* nf4_code_table;
    int64_t matrix_rows;  // rows of the whole weight: sets the split-K slices (nf4_gemv_slices(matrix_rows, k))
    int64_t row0, m;
    void* y;           // y[b * y_stride + r] = x[b, :] · W[row0 + r, :], r in [0, m), rounded to dtype
    int64_t y_stride;  // elements between activation rows of y
};

constexpr int kNf4GroupMax = 3;

// Up to kNf4GroupMax NF4 products of one x in one launch (q/k/v, gate/up): each member computed exactly as
// sloth_nf4_gemv computes its matrix alone. Gated (count == 2, member 0 the gate, member 1 the up projection, equal m):
// the two products are not written; instead gated_out[b * m + r] = to_dtype(to_dtype(act(g)) * u) with g, u the
// products rounded to dtype, the operations of decode_gated_act on the stored products (so the same bits), which
// removes the gated activation's launch and the [batch, 2I] round trip.
struct Nf4GemvGroupArgs {
    const void* x;  // [batch, k], shared by every member
    sloth_dtype dtype;
    int64_t batch, k;  // batch in [1, SLOTH_NF4_GEMV_MAX_BATCH] (the wide GEMM's: up to kNf4WideMaxBatch)
    int32_t blocksize, nested_blocksize;  // shared: the decoder groups only weights with equal block sizes
    int32_t count;                        // members, 1..kNf4GroupMax
    Nf4GroupMember member[kNf4GroupMax];
    bool gated;
    sloth_gate_activation activation;  // gated only
    void* gated_out;                   // gated only: [batch, m]
    // Optional: the launch computes its own input, the residual RMSNorm that decode_residual_norm would compute
    // first (one launch fewer). norm.rows = batch, norm.cols = k, norm.y = x (written whole by the launch too, for
    // later readers such as LoRA products). norm.h is read only: with a delta, the updated stream is written to
    // norm_h_out, a different buffer, because every block of the launch reads norm.h while one block writes.
    bool fold_norm;
    ResidualNormArgs norm;
    void* norm_h_out;  // delta != NULL: [batch, k] the new residual stream; else unused
};

// A folded norm stages the normalized rows in the launch's shared memory: [batch, k] in the dtype. Folded only up to
// 32 KB (batch 1 up to k = 16384 in bf16; batch 8 up to 2048), below the 48 KB every block may take without opting
// in, leaving room for the kernel's own tables.
constexpr int64_t kNf4FoldMaxSmem = 32 * 1024;
// And only up to k = 4096: past it the tensor-core GEMVs (nf4_gemv_tiles.cuh) run blocks of 16 warps, and the folded
// norm's summation follows the residual-norm kernels' 256 threads.
constexpr int64_t kNf4FoldMaxK = 4096;
inline int64_t nf4_fold_smem_bytes(const Nf4GemvGroupArgs& a) {
    return a.batch * a.k * (a.dtype == SLOTH_DTYPE_F32 ? 4 : 2);
}

// Whether the CUDA grouped kernel takes these arguments (the CPU twin takes any): batch <= 8, the vector path of the
// single kernel for every member (k % 32 == 0, x and each packed weight 16-byte aligned: row0 * k / 2 is then a
// multiple of 16 too), and, gated, equal m and equal slices, at most 4 (a block holds the same rows of both members,
// at least one row of each).
inline bool nf4_group_fits(const Nf4GemvGroupArgs& a) {
    if (a.count < 1 || a.count > kNf4GroupMax || a.batch < 1 || a.batch > SLOTH_NF4_GEMV_MAX_BATCH || a.k % 32 != 0 ||
        reinterpret_cast<uintptr_t>(a.x) % 16 != 0)
        return false;
    if (a.fold_norm && (a.norm.rows != a.batch || a.norm.cols != a.k || a.norm.y != a.x ||
                        (a.norm.delta && (!a.norm_h_out || a.norm_h_out == a.norm.h)) ||
                        nf4_fold_smem_bytes(a) > kNf4FoldMaxSmem || a.k > kNf4FoldMaxK))
        return false;
    for (int i = 0; i < a.count; ++i)
        if (reinterpret_cast<uintptr_t>(a.member[i].packed) % 16 != 0 || a.member[i].m < 1) return false;
    if (a.gated) {
        if (a.count != 2 || a.member[0].m != a.member[1].m) return false;
        const int slices = nf4_gemv_slices(a.member[0].matrix_rows, a.k);
        if (slices > kNf4GemvWarps / 2 || nf4_gemv_slices(a.member[1].matrix_rows, a.k) != slices) return false;
    }
    return true;
}

struct BiasAddArgs {
    sloth_dtype dtype;
    int64_t rows, cols;
    void* y;  // [rows, cols] += bias, rounded
    const void* bias;
};

struct LogitsFinishArgs {  // float32 logits from a dtype GEMM result
    sloth_dtype dtype;
    int64_t n;
    const void* src;
    float softcap;
    float* out;
};

// ---- The persistent decode step (cuda/decode_persistent.cuh; sloth_decode_fusion SLOTH_DECODE_FUSE_PERSISTENT): the
// decoder's layers as one kernel with grid-wide barriers between phases, the LM head after it as its own launch.
// One layer as the decoder describes it: the grouped NF4 GEMVs' arguments (x and the folded-norm fields unused: the
// step stages its own inputs; gate_up gated, its gated_out the down projection's input), the q/k preparation and the
// attention (merge_in_walk false), and the layer's four norm weights (input, post-attention, pre-MLP, post-MLP).
struct PersistentLayerArgs {
    Nf4GemvGroupArgs qkv, o, gate_up, down;
    QkPrepArgs prep;
    DecodeAttentionArgs attention;
    const void* norm[4];
};

// A device table entry of one layer takes at most this many bytes (the decoder's workspace reserves them).
constexpr int64_t kPersistentLayerBytes = 8192;

struct PersistentStepArgs {
    sloth_dtype dtype;
    int64_t batch, hidden, vocab, layers, heads, kv_heads, head_dim;
    float eps, embed_scale;
    bool unit_offset;
    sloth_gate_activation activation;
    const int64_t* ids;
    const void* embed;
    const void* final_norm;
    int64_t* length;
    void *h, *h2;  // the residual stream's two buffers; the step starts in h
    void* y;       // the final norm's output (the LM head's input)
    void* o;       // the o and down projections' output
    void* attn;    // the attention's output, the o projection's input
    uint32_t* barrier;  // two words, zero before the first step (the step leaves them so)
    void* table;        // layers * kPersistentLayerBytes bytes of device memory, filled by prepare
    const PersistentLayerArgs* layer;  // [layers], host memory: read by prepare only
    int32_t omitted;    // sloth_decode_part classes whose work is left out (diagnostics: timing only; barriers stay)
};

namespace cpu {
sloth_status decode_embed(const char* fn, const EmbedArgs& a);
sloth_status dense_gemv(const char* fn, const DenseGemvArgs& a);
sloth_status nf4_gemv_group(const char* fn, const Nf4GemvGroupArgs& a);
sloth_status decode_qk_prep(const char* fn, const QkPrepArgs& a);
sloth_status decode_attention(const char* fn, const DecodeAttentionArgs& a);
sloth_status decode_residual_norm(const char* fn, const ResidualNormArgs& a);
sloth_status decode_gated_act(const char* fn, const GatedActArgs& a);
sloth_status decode_bias_add(const char* fn, const BiasAddArgs& a);
sloth_status decode_logits_finish(const char* fn, const LogitsFinishArgs& a);
sloth_status decode_increment(const char* fn, int64_t* length);
}  // namespace cpu

namespace cuda {
sloth_status decode_embed(const char* fn, const EmbedArgs& a, int32_t device, void* stream);
sloth_status dense_gemv(const char* fn, const DenseGemvArgs& a, int32_t device, void* stream);
// Requires nf4_group_fits(a) (SLOTH_ERROR_INTERNAL otherwise): one launch for the whole group.
sloth_status nf4_gemv_group(const char* fn, const Nf4GemvGroupArgs& a, int32_t device, void* stream);
sloth_status decode_qk_prep(const char* fn, const QkPrepArgs& a, int32_t device, void* stream);
sloth_status decode_attention(const char* fn, const DecodeAttentionArgs& a, int32_t device, void* stream);
// Whether decode_attention runs `a` as one launch (the cluster kernel: decode_cluster_shape, sm_90+ code) rather than
// two (the walk, then the combine kernel; merge_in_walk: one).
bool decode_attention_clustered(const DecodeAttentionArgs& a);
// The q/k preparation p and then the attention a: one launch where kDecodeFusedPrep and the cluster form take it,
// else decode_qk_prep and decode_attention.
sloth_status decode_attention_prep_fused(const char* fn, const QkPrepArgs& p, const DecodeAttentionArgs& a,
                                         int32_t device, void* stream);
sloth_status decode_residual_norm(const char* fn, const ResidualNormArgs& a, int32_t device, void* stream);
sloth_status decode_gated_act(const char* fn, const GatedActArgs& a, int32_t device, void* stream);
sloth_status decode_bias_add(const char* fn, const BiasAddArgs& a, int32_t device, void* stream);
sloth_status decode_logits_finish(const char* fn, const LogitsFinishArgs& a, int32_t device, void* stream);
sloth_status decode_increment(const char* fn, int64_t* length, int32_t device, void* stream);
// The decoder's stream (default flags: blocking, ordered with the legacy default stream) and its CUDA graphs.
sloth_status decoder_stream_create(const char* fn, int32_t device, void** stream);
sloth_status decoder_stream_destroy(const char* fn, int32_t device, void* stream);  // waits for it first
sloth_status graph_capture_begin(const char* fn, int32_t device, void* stream);
// Ends the capture; ok = false discards it (an enqueue failed). *exec: the instantiated graph (ok only).
sloth_status graph_capture_end(const char* fn, int32_t device, void* stream, bool ok, void** exec);
sloth_status graph_launch(const char* fn, int32_t device, void* exec, void* stream);
sloth_status synchronize_stream(const char* fn, int32_t device, void* stream);
// Enqueues bytes zero bytes at p on the stream (the decoder's arrival counters, once at creation).
sloth_status zero_on_stream(const char* fn, int32_t device, void* p, int64_t bytes, void* stream);
void graph_destroy(int32_t device, void* exec);
// The persistent step: prepare builds the layer table (a copy on the stream, waited for) and *blocks, the grid; it
// answers SLOTH_ERROR_UNSUPPORTED, saying why, for a shape the kernel does not cover (then the decoder keeps its
// launches). step enqueues one step's kernel (the LM head is the caller's).
sloth_status decode_persistent_prepare(const char* fn, const PersistentStepArgs& a, int32_t device, void* stream,
                                       int32_t* blocks);
sloth_status decode_persistent_step(const char* fn, const PersistentStepArgs& a, int32_t blocks, int32_t device,
                                    void* stream);
// Programmatic dependent launch of this thread's decode kernels (cuda_common.cuh's launch_kernel); returns the
// previous setting. The decoder turns it on around a step's enqueue only.
bool set_programmatic_launch(bool on);
// *supported = the decode kernels loaded for `device` carry the PDL wait (compiled from sm_90+ PTX: a compute_75
// build running on an H100 does not, and must launch plainly).
sloth_status programmatic_launch_supported(const char* fn, int32_t device, bool* supported);
// Whether this thread's NF4 GEMVs at batch 1..8 run on tensor cores where they can (nf4_gemv_tiles.cuh) rather than
// on the lane kernels: on by default; the decoder sets its own choice around a step's enqueue. Returns the previous
// setting. The two give the same values up to the float32 summation order, so a decoding engine uses one of them
// throughout (its persistent step runs the lane kernels' code).
bool set_nf4_gemv_tiles(bool on);
bool nf4_gemv_tiles_on();
// Whether the wide NF4 GEMM (cuda/nf4_gemm_wide.cu) takes these products of one x: 9 to kNf4WideMaxBatch rows, 1 to
// 3 members side by side or the gated form (gate and up of equal rows), no folded norm, where the tile GEMVs would
// take a batch of 8 (bf16/f16, k % 128 == 0 and at most 8192, 16-byte aligned x and weights, sm_80+ kernels, tiles
// on). nf4_gemm_wide_group runs it (partial: nf4_wide_partial_floats floats for the launch's rows, used where no
// cluster adds the splits' sums); nf4_wide_group_launches says how many launches that takes (1, or 2 where a second
// launch adds the partials; 0: not taken).
bool nf4_wide_group_takes(const Nf4GemvGroupArgs& g);
int64_t nf4_wide_group_launches(const Nf4GemvGroupArgs& g);
sloth_status nf4_gemm_wide_group(const char* fn, const Nf4GemvGroupArgs& g, float* partial, int32_t device, void* stream);
}  // namespace cuda

}  // namespace sloth
