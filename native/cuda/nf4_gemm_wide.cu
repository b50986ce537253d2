// The decoder's NF4 products past the GEMVs' 8 activation rows ("wide": 9 to kNf4WideMaxBatch rows): y[b, r] =
// x[b, :] · W[r, :] with W in NF4, on tensor cores, reading the 0.5-byte weights instead of a dequantized copy.
//
// Why: past 8 rows the decoder dequantized every NF4 weight into a bf16 scratch and ran cuBLASLt on it (writing and
// reading 2 bytes a weight on top of the 0.5), or ran on dense copies of the weights (`DequantizeWeights`: 4 times the
// memory). At batch 64 those GEMMs are bound by reading the bf16 weights and reach 1.0-1.9 TB/s (Qwen3-1.7B: 1.66 ms of
// its 3.6 ms step for q/k/v, o, gate/up and down; bench/results/2026-12-07-round19), while the NF4 bytes are a quarter.
//
// How: the tile GEMV's weight path unchanged (nf4_gemv_tiles.cuh: a warp owns 16 weight rows, lane (g, q) loads 16
// bytes of rows g and g + 8 per 128-column super-chunk and decodes them into mma.sync m16n8k16 A fragments, the same
// rounded values as sloth_nf4_dequantize), but each decoded A fragment now meets kNT B fragments: the n-tiles of 8
// activation rows each, so the decode (the kernel's main cost at batch 1) is paid once for up to 64 rows.
//  - A block is kWideWarps warps over kNf4WideRows = 128 consecutive weight rows (warp w: rows 16 w ..), all walking the
//    same super-chunks, so they share x: each super-chunk's x[0..batch)[c .. c + 128) is copied into shared memory
//    (cp.async, two stages: the next super-chunk's copy is in flight while this one is multiplied), and the weights of
//    the next two super-chunks are in flight in registers (the first two issued before the grid-dependency wait).
//  - Lane (g, q) needs x[8 n + g][c + 32 q .. + 32) for n-tile n (the tile GEMV's permuted k order), four 16-byte
//    shared loads. Rows are 256 bytes, so the four q of a row and the two rows of an 8-lane phase would hit the same
//    banks; 16-byte chunk i of row r is stored at chunk i ^ (2 (i / 8 % 2)) ^ (r % 2) (wide_chunk), which puts the 8
//    chunks a phase reads in 8 different bank groups.
//  - The mmas of a super-chunk go k-step by k-step, each k-step's across the kNT n-tiles (independent accumulators),
//    the A words decoded where their k-step needs them. Round 28's kernel went tile by tile: 8 dependent mmas into one
//    accumulator, then the next tile's, so each waited out the previous one's latency, and it held 222 registers at
//    kNT = 8 (nvcc 11.8, sm_90); this order holds 143 (no spills) with the same mmas into each accumulator in the same
//    order, so the same bits.
//  - Split over k across blocks (nf4_wide_splits: whole waves of blocks, at least 2 super-chunks each, at most
//    kNf4WideMaxSplits), so the small projections (k/v: 512-1024 rows, 4-8 blocks of rows) still fill the GPU.
//    The splits' float32 sums are added in split order, one way or the other:
//    - sm_90+ code at batch 9-16 (wide_clustered): the splits of a row block are one thread-block cluster (grid
//      (row blocks, splits), cluster (1, splits)). Each block leaves its sums in its own shared memory (the x stages'
//      space, no longer needed), the cluster barrier makes them visible, and block y adds the splits' sums of its share
//      of the row block's outputs, reading the other blocks' shared memory directly (distributed shared memory), then
//      stores y or the gated product. One launch, no float32 scratch in global memory. Past 16 rows this was slower
//      (see kWideClusterMaxTiles).
//      Round 24's first version wrote the partials to global memory and added them in a second launch; its second
//      version let the last block of a row block to arrive add them all, which was slower still (Qwen3-1.7B batch 64:
//      8,482 tokens/s against the first version's 15,493; that block's loads of every split's partials, one after the
//      other, are the likely cause).
//    - past 16 rows, and in older code (sm_80-89 builds): the partials go to a float32 scratch and a second launch adds
//      them in the same order (nf4_wide_finish_kernel), so both ways give the same bits (equal digests at batch 64 on
//      the H100, round 28).
// The split depends on (m, k) and the batch's class (9-32, 33-64) alone, and each output column of an mma depends on
// its own B column only, so within a class a row's bits do not depend on the batch size or on which other rows are in
// the batch. They differ from the batch-1..8 tile
// GEMV's in the float32 summation order only (a different split over k).
#include "nf4_gemv_kernels.cuh"

namespace sloth::cuda::nf4 {
namespace {

constexpr int kWideWarps = static_cast<int>(kNf4WideRows / kTileRows);  // 8
constexpr int kWideThreads = kWideWarps * 32;
constexpr int kWideRowBytes = kSuperChunk * 2;  // x bytes of one activation row per super-chunk (16-bit dtypes)

// Where 16-byte chunk i (0..15) of activation row r of a super-chunk lives in its stage (see the top of the file).
__device__ __forceinline__ int wide_chunk(int r, int i) { return i ^ (((i >> 3) & 1) << 1) ^ (r & 1); }

// x[0 .. batch)[c .. c + 128) of super-chunk s into `stage` (a shared-window address), every thread a share.
__device__ __forceinline__ void wide_stage_x(const void* x, int64_t batch, int64_t k, int64_t s, uint32_t stage) {
    const auto* base = static_cast<const unsigned char*>(x) + s * kWideRowBytes;
    for (int idx = static_cast<int>(threadIdx.x); idx < batch * 16; idx += kWideThreads) {
        const int r = idx >> 4, i = idx & 15;
        ptx::cp_async16(stage + static_cast<uint32_t>(r * kWideRowBytes + wide_chunk(r, i) * 16),
                        base + static_cast<int64_t>(r) * k * 2 + i * 16);
    }
    ptx::cp_async_commit();
}

// Rows [batch, 8 kNT) of both x stages set to zero, once: the copies write rows below the batch only, and the n-tiles
// past it run anyway (their columns of the products are never stored; each output column of an mma depends on its
// own activation row only). Visible to every warp after the first step's barrier.
template <int kNT>
__device__ __forceinline__ void wide_zero_rows(int64_t batch, unsigned char* stages) {
    constexpr int kRowWords = kWideRowBytes / 16, kStageWords = 8 * kNT * kRowWords;
    const int first = static_cast<int>(batch) * kRowWords;  // the first word past the batch's rows, in each stage
    auto* words = reinterpret_cast<uint4*>(stages);
    for (int i = first + static_cast<int>(threadIdx.x); i < kStageWords; i += kWideThreads)
        words[i] = words[kStageWords + i] = make_uint4(0, 0, 0, 0);
}

// One member of a wide launch: rows [row0, row0 + m) of weight w into y[b * y_stride + r]; its row blocks start at
// grid block first_block, and its partial sums at row vrow0 of the partial rows.
struct WideMember {
    Nf4Weight w;
    int64_t row0, m;
    void* y;
    int64_t y_stride;
    int64_t first_block, vrow0;
};

// A launch: 1 to 3 members side by side (plain: each row block holds 128 rows of one member), or the gated form (gate
// and up, members 0 and 1 with the same m: each row block holds the same 64 rows of both, warps 0-3 the gate's and 4-7
// the up projection's, and writes gated_out[b * m + r] = to_dtype(to_dtype(act(g)) * u) from the two sums rounded to
// the dtype, as the tile GEMV's gated form does). Partials: [split][batch][vrows] float32. The grid: (row_blocks,
// splits), split y taking super-chunks [per y, per y + per).
struct WideLaunch {
    WideMember member[kNf4GroupMax];
    int32_t count;
    bool gated;
    sloth_gate_activation activation;
    void* gated_out;
    const void* x;
    int64_t batch, k, per, splits, row_blocks, vrows;
    int32_t log2_blocksize, log2_nested_span;
    float* partial;  // the scratch of the splits' partials where no cluster adds them (see the top of the file)
};

// One split and not gated: the kernel stores y itself, with nothing left to add.
__host__ __device__ __forceinline__ bool wide_direct(const WideLaunch& a) { return a.splits == 1 && !a.gated; }

__device__ __forceinline__ int wide_member_of(const WideLaunch& a, int64_t block) {
    int u = 0;
    if (a.count > 1 && block >= a.member[1].first_block) u = 1;
    if (a.count > 2 && block >= a.member[2].first_block) u = 2;
    return u;
}

// Member u by value, chosen with constant indices (as member_of does): the launch's parameters are not indexed by a
// register, which could copy them to local memory.
__device__ __forceinline__ WideMember wide_member(const WideLaunch& a, int u) {
    WideMember d = a.member[0];
    if (u == 1) d = a.member[1];
    if (u == 2) d = a.member[2];
    return d;
}

// The block's own sums, as the cluster path leaves them in shared memory: tile[b * kWideTileStride + j], j the row
// block's local row (plain: row rb * 128 + j of the member; gated: j < 64 the gate's row rb * 64 + j, j >= 64 the up
// projection's row rb * 64 + j - 64). The stride is 132, not 128: lanes (g, q) store columns 8 n + 2 q (+1) of rows
// g (+8), and 132 puts the four q of a row in different banks.
constexpr int kWideTileStride = kNf4WideRows + 4;
template <int kNT>
constexpr size_t wide_shared_bytes() {
    const size_t stages = 2u * 8u * kNT * kWideRowBytes, tile = 8u * kNT * kWideTileStride * sizeof(float);
    return stages > tile ? stages : tile;
}

// The row block's output for element (b, j) (plain: j < 128; gated: j < 64) from the splits' float32 sums of the
// tile's column j (and, gated, of column j + 64: the up projection's) added in split order: stored as the member's y,
// or gated as act(g) * u from the two sums rounded to the dtype (as the tile GEMV's gated form computes it).
template <int kDtype>
__device__ __forceinline__ void wide_store(const WideLaunch& a, const WideMember& d, int64_t rb, int64_t b, int j, float sum,
                                           float up_sum) {
    if (a.gated) {
        const int64_t m = a.member[0].m, r = rb * (kNf4WideRows / 2) + j;
        if (r >= m) return;
        const float gv = round_to<kDtype>(sum), uv = round_to<kDtype>(up_sum);
        store_f32<kDtype>(a.gated_out, b * m + r, gated_product<kDtype>(a.activation, gv, uv));
    } else {
        const int64_t r = rb * kNf4WideRows + j;
        if (r < d.m) store_f32<kDtype>(d.y, b * d.y_stride + r, sum);
    }
}

// What a block's walk over its super-chunks holds fixed: x, the split [s0, s1), the x stages and the NF4 table (shared
// addresses), the weight's nested offset and block sizes, the load policies and the lane's (g, q).
struct WideWalk {
    const void* x;
    int64_t batch, k, s0, s1;
    uint32_t stages, table;
    float offset;
    int log2_blocksize, log2_nested_span;
    uint64_t stream, keep;
    int g, q;
};

// Super-chunk s from the weights in `cur` and x in stage (s - s0) % 2 into c; then `cur` takes super-chunk s + 2. The
// kernel calls it twice (b0 and b1, so that no register whose load is outstanding is copied); forced inline so that
// no compiler leaves it a call with c in local memory (nvcc inlined round 28's lambda; clang does not).
template <int kDtype, int kNT>
__device__ __forceinline__ void wide_step(const WideWalk& w, const TileRows (&t)[1], TileLoads<1, 1>& cur, int64_t s,
                                          float (&c)[kNT][4]) {
    constexpr uint32_t kStageBytes = 8u * kNT * kWideRowBytes;
    if (s + 1 < w.s1) {
        wide_stage_x(w.x, w.batch, w.k, s + 1, w.stages + static_cast<uint32_t>((s + 1 - w.s0) & 1) * kStageBytes);
        ptx::cp_async_wait<1>();
    } else {
        ptx::cp_async_wait<0>();
    }
    __syncthreads();  // this super-chunk's x is in shared memory for every warp (and the tables, the first time)
    // This super-chunk's 16 weight bytes of rows g and g + 8 and their scales, kept while `cur` takes the loads of
    // super-chunk s + 2; each 32-bit word is decoded where its mmas need it (fewer registers held than all 32 A words).
    const float scale_a = tile_scale(t[0], cur.code[0][0][0], cur.nested[0][0][0], w.offset);
    const float scale_b = tile_scale(t[0], cur.code[0][0][1], cur.nested[0][0][1], w.offset);
    const uint4 wa = cur.w[0][0][0], wb = cur.w[0][0][1];
    tile_issue(cur, t, w.k, s + 2, w.s1, w.q, w.log2_blocksize, w.log2_nested_span, w.stream, w.keep);
    const uint32_t stage = w.stages + static_cast<uint32_t>((s - w.s0) & 1) * kStageBytes;
    // The n-tiles innermost: the kNT accumulators are independent, so the tensor cores take one mma of each in turn
    // instead of waiting out a chain of 8 dependent ones per tile (the order of the mmas into each c[n] is the same
    // either way, so are the bits). Every tile runs, those past the batch on the zero rows wide_zero_rows wrote.
#pragma unroll
    for (int v = 0; v < 4; ++v) {
        uint32_t pa[4], pb[4];
        decode8_packed<kDtype>(word_of(wa, v), scale_a, w.table, pa);
        decode8_packed<kDtype>(word_of(wb, v), scale_b, w.table, pb);
        uint4 xv[kNT];
#pragma unroll
        for (int n = 0; n < kNT; ++n) {
            const int r = 8 * n + w.g;
            xv[n] = ptx::load_shared_v4(stage + static_cast<uint32_t>(r * kWideRowBytes + wide_chunk(r, 4 * w.q + v) * 16));
        }
        // Word v holds columns 8v .. 8v + 7 of the lane's 32: mma 2v takes 8v + 0..3, mma 2v + 1 8v + 4..7.
#pragma unroll
        for (int n = 0; n < kNT; ++n) mma_16816<kDtype>(c[n], pa[0], pb[0], pa[1], pb[1], xv[n].x, xv[n].y);
#pragma unroll
        for (int n = 0; n < kNT; ++n) mma_16816<kDtype>(c[n], pa[2], pb[2], pa[3], pb[3], xv[n].z, xv[n].w);
    }
    __syncthreads();  // every warp is done with this stage before the copy two super-chunks on overwrites it
}

// grid (a.row_blocks, a.splits), kWideThreads threads; dynamic shared memory: wide_shared_bytes<kNT>(). Direct
// (wide_direct): y in the dtype. Else, kCluster (sm_90 code, launched as clusters of (1, splits)): the sums through the
// cluster's shared memory (see the top of the file); else float32 partials [split][batch][vrows] for
// nf4_wide_finish_kernel.
template <int kDtype, int kNT, bool kCluster>
__global__ void __launch_bounds__(kWideThreads) nf4_wide_kernel(WideLaunch a) {
    launch_dependents_early();
    __shared__ __align__(256) float s_nf4[2][kNf4TableStride];
    __shared__ float s_map[2][256];
    extern __shared__ __align__(16) unsigned char s_x[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const int u0 = a.gated ? 0 : wide_member_of(a, blockIdx.x);
    const int u = a.gated ? warp / (kWideWarps / 2) : u0;  // this warp's member
    const int tab = a.gated ? u : 0;                        // its tables' slot
    const WideMember d = wide_member(a, u);
    const int64_t rb = static_cast<int64_t>(blockIdx.x) - wide_member(a, u0).first_block;
    const int64_t r0 = a.gated ? rb * (kNf4WideRows / 2) + (warp % (kWideWarps / 2)) * kTileRows
                               : rb * kNf4WideRows + warp * kTileRows;  // the warp's first row in its member
    auto clamp = [&](int64_t r) { return d.row0 + (r < d.m ? r : d.m - 1); };
    const TileRows t[1] = {{d.w, clamp(r0 + g), clamp(r0 + g + 8), s_nf4[tab], s_map[tab]}};
    const int64_t k = a.k, chunks = k / kSuperChunk, s0 = static_cast<int64_t>(blockIdx.y) * a.per;
    const int64_t s1 = s0 + a.per < chunks ? s0 + a.per : chunks;
    const int lb = a.log2_blocksize, ln = a.log2_nested_span;
    const uint64_t stream = ptx::policy_evict_first(), keep = ptx::policy_evict_last();
    TileLoads<1, 1> b0, b1;
    tile_issue(b0, t, k, s0, s1, q, lb, ln, stream, keep);
    tile_issue(b1, t, k, s0 + 1, s1, q, lb, ln, stream, keep);
    tile_prefetch_rest(t, k, s0 + 2, s1, q);
    stage_tables(wide_member(a, u0).w, s_nf4[0], s_map[0]);
    if (a.gated) stage_tables(a.member[1].w, s_nf4[1], s_map[1]);
    const float offset = __ldg(d.w.nested_offset);
    const uint32_t table = ptx::shared_address(s_nf4[tab]), stages = ptx::shared_address(s_x);
    wide_zero_rows<kNT>(a.batch, s_x);
    // Everything above reads weights only; x comes from the previous kernel (programmatic launch: cuda_common.cuh).
    grid_dependency_wait();
    launch_dependents_after_wait();
    const int64_t batch = a.batch;
    wide_stage_x(a.x, batch, k, s0, stages);
    float c[kNT][4];
#pragma unroll
    for (int n = 0; n < kNT; ++n) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
    const WideWalk walk{a.x, batch, k, s0, s1, stages, table, offset, lb, ln, stream, keep, g, q};
    for (int64_t s = s0; s < s1; s += 2) {
        wide_step<kDtype, kNT>(walk, t, b0, s, c);
        if (s + 1 < s1) wide_step<kDtype, kNT>(walk, t, b1, s + 1, c);
    }
    // c[n]: c0/c1 row g, activation rows 8n + 2q, 8n + 2q + 1; c2/c3 row g + 8 (PTX ISA's m16n8 accumulator layout).
    // The last step's barrier: no warp reads the x stages any more, so the cluster path's tile may take their space.
    const int64_t splits = a.splits;
    const bool direct = wide_direct(a);
    float* tile = reinterpret_cast<float*>(s_x);
#pragma unroll
    for (int n = 0; n < kNT; ++n)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int64_t b = 8 * n + 2 * q + (j & 1), r = r0 + g + 8 * (j >> 1);
            const int local = warp * kTileRows + g + 8 * (j >> 1);  // the tile's column (see kWideTileStride)
            if (b >= batch) continue;
            if (direct) {
                if (r < d.m) store_f32<kDtype>(d.y, b * d.y_stride + r, c[n][j]);
            } else if constexpr (kCluster) {
                tile[b * kWideTileStride + local] = c[n][j];
            } else if (r < d.m) {
                a.partial[(static_cast<int64_t>(blockIdx.y) * batch + b) * a.vrows + d.vrow0 + r] = c[n][j];
            }
        }
    if constexpr (kCluster) {
        if (direct) return;  // grid-uniform: a one-split launch is not a cluster launch (launch_wide)
        ptx::cluster_barrier();  // every split's tile is written and visible to the cluster
        // Block y adds the sums of elements y * 256 + thread, then every splits * 256 further, of the row block's
        // batch x cols outputs, each from all splits' tiles in split order (the same additions as the finish kernel).
        // A thread issues the remote loads of kElems elements before it adds any: one round trip for all of them.
        constexpr int kElems = 4, kHalf = static_cast<int>(kNf4WideRows / 2);
        const int cols = a.gated ? kHalf : static_cast<int>(kNf4WideRows), parts = a.gated ? 2 : 1;
        const int64_t total = batch * cols, stride = splits * kWideThreads;
        const uint32_t tile_at = ptx::shared_address(tile);
        const WideMember out = wide_member(a, u0);
        for (int64_t e0 = static_cast<int64_t>(blockIdx.y) * kWideThreads + threadIdx.x; e0 < total; e0 += kElems * stride) {
            float v[kElems][2][kNf4WideMaxSplits];
#pragma unroll
            for (int i = 0; i < kElems; ++i) {
                const int64_t e = e0 + i * stride, b = e / cols;
                const int j = static_cast<int>(e % cols);
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const uint32_t at = tile_at + static_cast<uint32_t>((b * kWideTileStride + j + h * kHalf) * sizeof(float));
#pragma unroll
                    for (int sp = 0; sp < kNf4WideMaxSplits; ++sp)
                        v[i][h][sp] = e < total && h < parts && sp < splits ? ptx::load_cluster_f32(at, sp) : 0.0f;
                }
            }
#pragma unroll
            for (int i = 0; i < kElems; ++i) {
                const int64_t e = e0 + i * stride;
                if (e >= total) break;
                float sum[2];
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    sum[h] = v[i][h][0];
#pragma unroll
                    for (int sp = 1; sp < kNf4WideMaxSplits; ++sp)
                        if (sp < splits) sum[h] = __fadd_rn(sum[h], v[i][h][sp]);
                }
                wide_store<kDtype>(a, out, rb, e / cols, static_cast<int>(e % cols), sum[0], sum[1]);
            }
        }
        ptx::cluster_barrier();  // no block leaves (its shared memory with it) while another still reads its tile
    }
}

// The second launch where no cluster adds the sums: every output element of the launch from the splits' partials added
// in split order, one thread an element (plain: over the launch's vrows; gated: over the m rows of the gate).
template <int kDtype>
__global__ void nf4_wide_finish_kernel(WideLaunch a) {
    launch_dependents_early();
    grid_dependency_wait();
    launch_dependents_after_wait();
    const int64_t cols = a.gated ? a.member[0].m : a.vrows;
    const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= a.batch * cols) return;
    const int64_t b = e / cols, vrow = e % cols;
    auto sum = [&](int64_t vr) {
        float total = a.partial[b * a.vrows + vr];
        for (int64_t sp = 1; sp < a.splits; ++sp)
            total = __fadd_rn(total, a.partial[(sp * a.batch + b) * a.vrows + vr]);
        return total;
    };
    if (a.gated) {
        const int64_t m = a.member[0].m;
        const float gv = round_to<kDtype>(sum(vrow)), uv = round_to<kDtype>(sum(m + vrow));
        store_f32<kDtype>(a.gated_out, b * m + vrow, gated_product<kDtype>(a.activation, gv, uv));
        return;
    }
    int u = 0;
    if (a.count > 1 && vrow >= a.member[1].vrow0) u = 1;
    if (a.count > 2 && vrow >= a.member[2].vrow0) u = 2;
    const WideMember d = wide_member(a, u);
    store_f32<kDtype>(d.y, b * d.y_stride + (vrow - d.vrow0), sum(vrow));
}

// The launch's layout from validated group arguments: members' row blocks, the split and the partial rows.
inline WideLaunch wide_launch_of(const Nf4GemvGroupArgs& g, float* partial) {
    WideLaunch a{};
    a.count = g.count;
    a.gated = g.gated;
    a.activation = g.activation;
    a.gated_out = g.gated_out;
    a.x = g.x;
    a.batch = g.batch;
    a.k = g.k;
    a.log2_blocksize = log2_exact(g.blocksize);
    a.log2_nested_span = a.log2_blocksize + log2_exact(g.nested_blocksize);
    a.partial = partial;
    int64_t blocks = 0, vrows = 0;
    for (int i = 0; i < g.count; ++i) {
        const Nf4GroupMember& m = g.member[i];
        WideMember& d = a.member[i];
        d.w = Nf4Weight{m.packed, m.absmax_codes, m.nested_code_map, m.nested_absmax, m.nested_offset, m.nf4_code_table};
        d.row0 = m.row0;
        d.m = m.m;
        d.y = m.y;
        d.y_stride = m.y_stride;
        d.first_block = g.gated ? 0 : blocks;
        d.vrow0 = vrows;
        if (!g.gated) blocks += ceil_div(m.m, kNf4WideRows);
        vrows += m.m;
    }
    if (g.gated) blocks = ceil_div(g.member[0].m, kNf4WideRows / 2);
    a.vrows = vrows;
    a.splits = nf4_wide_splits(blocks * kNf4WideRows, g.k, g.batch);  // every split non-empty: splits = ceil(chunks / per)
    a.per = (g.k / kSuperChunk + a.splits - 1) / a.splits;
    a.row_blocks = blocks;
    return a;
}

// The n-tiles of 8 activation rows a launch of `batch` rows instantiates (launch_wide_for_batch).
constexpr int wide_tiles(int64_t batch) { return batch <= 16 ? 2 : batch <= 32 ? 4 : 8; }

// Whether a launch adds its splits' sums inside clusters: sm_90 code, and at most kWideClusterMaxTiles n-tiles. H100,
// round 28, Qwen3-1.7B / Llama-3.2-1B at batch 64 (8 n-tiles): 11,058 / 18,657 tokens/s through the clusters against
// 14,819 / 26,786 through the scratch and a second launch (the same bits); at batch 16 (2 n-tiles) the clusters gave
// 5,767 / 10,199 against 4,390 / 6,574 on the dequantizing path.
constexpr int kWideClusterMaxTiles = 2;
inline bool wide_clustered(int64_t batch) { return wide_tiles(batch) <= kWideClusterMaxTiles && clusters_compiled(); }

// The launches a wide product takes: one, or two where a second launch adds the splits' partials.
inline int64_t wide_launches(const WideLaunch& a) { return wide_direct(a) || wide_clustered(a.batch) ? 1 : 2; }

template <int kDtype, int kNT>
sloth_status launch_wide(const char* fn, const WideLaunch& a, cudaStream_t stream) {
    SLOTH_CHECK(require_one_launch(fn, a.row_blocks));
    if (a.splits > kNf4WideMaxSplits)
        return fail(SLOTH_ERROR_INTERNAL, "%s: %lld splits (at most %lld)", fn, static_cast<long long>(a.splits),
                    static_cast<long long>(kNf4WideMaxSplits));
    const size_t smem = wide_shared_bytes<kNT>();
    const dim3 grid(static_cast<unsigned>(a.row_blocks), static_cast<unsigned>(a.splits));
    if (!wide_direct(a) && wide_clustered(a.batch)) {
        SLOTH_KERNEL_LAUNCH(fn, "nf4_wide_kernel",
                            launch_kernel_cluster(nf4_wide_kernel<kDtype, kNT, true>, grid, kWideThreads, smem,
                                                  static_cast<unsigned>(a.splits), stream, a));
        return SLOTH_OK;
    }
    if (!wide_direct(a) && !a.partial)
        return fail(SLOTH_ERROR_INTERNAL, "%s: the wide NF4 GEMM needs its scratch (%lld splits)", fn,
                    static_cast<long long>(a.splits));
    SLOTH_KERNEL_LAUNCH(fn, "nf4_wide_kernel",
                        launch_kernel_smem(nf4_wide_kernel<kDtype, kNT, false>, grid, kWideThreads, smem, stream, a));
    if (wide_direct(a)) return SLOTH_OK;
    const int64_t elements = a.batch * (a.gated ? a.member[0].m : a.vrows);
    SLOTH_KERNEL_LAUNCH(fn, "nf4_wide_finish_kernel",
                        launch_kernel(nf4_wide_finish_kernel<kDtype>, grid_for(elements, 256), 256, stream, a));
    return SLOTH_OK;
}

template <int kDtype>
sloth_status launch_wide_for_batch(const char* fn, const WideLaunch& a, cudaStream_t stream) {
    switch (wide_tiles(a.batch)) {
        case 2: return launch_wide<kDtype, 2>(fn, a, stream);
        case 4: return launch_wide<kDtype, 4>(fn, a, stream);
        default: return launch_wide<kDtype, 8>(fn, a, stream);
    }
}

}  // namespace
}  // namespace sloth::cuda::nf4

namespace sloth::cuda {

bool nf4_wide_group_takes(const Nf4GemvGroupArgs& g) {
    if (g.batch <= SLOTH_NF4_GEMV_MAX_BATCH || g.batch > kNf4WideMaxBatch || g.fold_norm) return false;
    if (g.count < 1 || g.count > kNf4GroupMax || (g.gated && (g.count != 2 || g.member[0].m != g.member[1].m)))
        return false;
    const uint8_t* packed[kNf4GroupMax] = {};
    for (int i = 0; i < g.count; ++i) packed[i] = g.member[i].packed;
    switch (g.dtype) {
        case SLOTH_DTYPE_BF16: return nf4::tiles_take<SLOTH_DTYPE_BF16>(g.k, g.x, packed, g.count);
        case SLOTH_DTYPE_F16: return nf4::tiles_take<SLOTH_DTYPE_F16>(g.k, g.x, packed, g.count);
        default: return false;
    }
}

int64_t nf4_wide_group_launches(const Nf4GemvGroupArgs& g) {
    return nf4_wide_group_takes(g) ? nf4::wide_launches(nf4::wide_launch_of(g, nullptr)) : 0;
}

sloth_status nf4_gemm_wide_group(const char* fn, const Nf4GemvGroupArgs& g, float* partial, int32_t device, void* stream) {
    if (!nf4_wide_group_takes(g))
        return fail(SLOTH_ERROR_INTERNAL, "%s: the wide NF4 GEMM does not take batch %lld, k %lld, %d members", fn,
                    static_cast<long long>(g.batch), static_cast<long long>(g.k), g.count);
    const nf4::WideLaunch a = nf4::wide_launch_of(g, partial);
    return launch_for_dtype(fn, device, stream, g.dtype, [&](auto dt, cudaStream_t s) -> sloth_status {
        constexpr int kD = decltype(dt)::value;
        if constexpr (kD == SLOTH_DTYPE_F32) {
            return fail(SLOTH_ERROR_INTERNAL, "%s: the wide NF4 GEMM has no float32 form", fn);
        } else {
            return nf4::launch_wide_for_batch<kD>(fn, a, s);
        }
    });
}

}  // namespace sloth::cuda
