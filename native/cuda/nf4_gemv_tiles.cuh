// The NF4 GEMV on tensor cores ("tiles"): y[b, r] = x[b, :] · W[r, :] for 1..8 activation rows with W in NF4, the
// weights dequantized in registers straight into the A fragments of mma.sync m16n8k16 (bf16 / f16 in, float32
// accumulators). Included by nf4_gemv_kernels.cuh, whose structures (Nf4Weight, Group, the folded norm) it shares.
//
// Why: the lane kernels (nf4_gemv_kernels.cuh) spend about 7 instructions and one shared-memory lookup on each weight
// at batch 1, and Nsight Compute found their L1/shared pipe 82% busy and their issue slots 62% busy with DRAM at 20%
// (bench/results/2026-12-06-h100-round11): bound by instructions, not bytes. Of those 7, three are the float32 dot
// product itself: widening the weight, widening x, and the FMA. Here a tensor core takes the products: the weight is
// only decoded (the lane kernels' table lookup, scale, and paired rounding to x's dtype, leaving it packed), x goes
// into the B fragment as the bytes it was loaded as, and one mma consumes 8 weights of a lane. The B fragment's 8
// columns are the batch, so batch 1 to 8 cost the same instructions.
//
// The layout. A warp owns a tile of 16 weight rows; lane l is (g = l / 4, q = l % 4). The tile's columns go in
// super-chunks of 128: lane (g, q) loads 16 bytes (32 weights) of row g and of row g + 8 at columns
// [c + 32q, c + 32q + 32), and x[g][c + 32q .. + 32) (batch row g; the rows past the batch repeat the last one and
// their outputs are dropped). mma j (0..7) of the super-chunk gives the fragment's k slots {2q, 2q + 1, 2q + 8, 2q + 9}
// the physical columns c + 32q + 4j + {0, 1, 2, 3}: each lane finds its A values (4 weights of row g, 4 of row g + 8)
// and its B values (4 activations) among the data it loaded itself, as consecutive pairs, so nothing is shuffled. The
// sum over k is the same sum in another order.
//
// The split: a block of kWarps warps holds one tile (two for the gated form: the gate's and the up projection's same
// rows, sharing x); warp w takes the contiguous super-chunks [w·P, w·P + P) of every tile of its block, P =
// ceil(k / 128 / kWarps), and the block adds its warps' accumulators in warp order. The split depends on k alone, so
// a row gets the same bits alone, in a group, in the gated form and at any batch (each output column of an mma
// depends only on its own A row and B column), which the decoder relies on.
//
// Rounding: every weight is rounded to x's dtype exactly as the lane kernels round it (the values sloth_nf4_dequantize
// writes), so every product is exact; the tensor core adds them in float32 in its own order (within the bound the
// tests allow for a float32 sum). The result differs from the lane kernels' in its last bits only.
//
// Where: bf16/f16, k % 128 == 0 (and at most kTileMaxK, 8192), 16-byte aligned x and weights, and kernels compiled for
// sm_80 or newer (cudaFuncGetAttributes' ptxVersion: the compute_75 build runs the lane kernels everywhere); the
// launcher falls back to the lane kernels otherwise, or when set_nf4_gemv_tiles(false) (decode_kernels.h).
#pragma once

#include "mma.cuh"

namespace sloth::cuda::nf4 {
namespace {

constexpr int kTileRows = 16;
constexpr int kSuperChunk = 128;                      // columns of a tile a warp walks per step (4 lanes × 32)
constexpr int64_t kTileMaxK = 8 * kSuperChunk * kWarps;  // 16 warps of 4 super-chunks (k = 8192): beyond, the lanes



// decode8's eight weights of one packed word, left packed in pairs: p[j] = (element 2j, element 2j + 1), the even
// element (the byte's high nibble) in the low half. The same lookups, products and rounding: the same values.
template <int kDtype>
__device__ __forceinline__ void decode8_packed(uint32_t word, float scale, uint32_t table, uint32_t (&p)[4]) {
    decode8_products(word, scale, table,
                     [&](auto j, float even, float odd) { p[decltype(j)::value] = pack2<kDtype>(even, odd); });
}

// Where a tile launch's activations come from: the 16 bytes of x[b, c .. c + 8) (c a multiple of 8), from memory or
// from the folded norm's rows in shared memory.
template <int kDtype>
struct PlainXWords {
    const void* x;
    int64_t k;
    __device__ __forceinline__ uint4 operator()(int b, int64_t c) const {
        return ptx::load_cached_v4(static_cast<const uint16_t*>(x) + b * k + c);
    }
};
template <int kDtype>
struct StagedXWords {
    const unsigned char* s;
    int64_t k;
    __device__ __forceinline__ uint4 operator()(int b, int64_t c) const {
        return *reinterpret_cast<const uint4*>(s + (b * k + c) * 2);
    }
};

// Staged activations (kTileStageX): where no folded norm stages x, the tile kernels copy x[0 .. kBatch)[0 .. k) into
// shared memory once after the grid-dependency wait (cp.async: every 16-byte copy of the block in flight together, one
// L2 round trip), and each step reads its x from there. Without it, each step's x is its own L2 round trip on the
// kernel's dependent path after the wait: two for a 4-super-chunk share, four for the paired gate/up walk. Up to
// 32 KB, so that four paired gate/up blocks of 4 warps (about 11.5 KB of static shared memory each) still fit an SM;
// 24 KB past k = 4096, where the blocks have twice the warps and the paired form's static arrays take 21 KB (static
// and dynamic shared memory must stay within the 48 KB a launch gets without opting in). The same x values in the same
// mmas: the same bits. EXPERIMENTAL, off: not yet timed on a GPU (round 32 landed it switched off;
// tools/gpu-steps/lease-r32-1.sh builds a library with it on).
constexpr bool kTileStageX = false;

// The dynamic shared memory a launch of `batch` rows of width k stages x into: 0 where it reads x from memory. The
// host's launch and the kernel's choice both come from here, so they agree.
__host__ __device__ constexpr int64_t tile_stage_x_bytes(int64_t batch, int64_t k) {
    const int64_t most = k > 4 * kSuperChunk * kWarps ? 24 * 1024 : 32 * 1024;  // 16-warp blocks past k = 4096 (tile_warps)
    return kTileStageX && batch * k * 2 <= most ? batch * k * 2 : 0;
}

// The staged rows' loader: ld.shared through inline asm (asm volatile), so that the compiler keeps each load beside
// its mma instead of hoisting a share's loads together (which made the paired gate/up kernel spill, round 31).
template <int kDtype>
struct SharedXWords {
    uint32_t base;  // shared-window address of row 0
    int64_t k;
    __device__ __forceinline__ uint4 operator()(int b, int64_t c) const {
        return ptx::load_shared_v4(base + static_cast<uint32_t>((b * k + c) * 2));
    }
};

// x[0 .. kBatch)[0 .. k) into s_x, block-wide, then a barrier (a tile launch's prologue, after the wait).
template <int kBatch>
__device__ __forceinline__ void tile_stage_x_rows(const void* x, int64_t k, unsigned char* s_x) {
    const int64_t words = kBatch * k / 8;
    const uint32_t base = ptx::shared_address(s_x);
    for (int64_t i = threadIdx.x; i < words; i += blockDim.x)
        ptx::cp_async16(base + static_cast<uint32_t>(i * 16), static_cast<const uint4*>(x) + i);
    ptx::cp_async_commit();
    ptx::cp_async_wait<0>();
    __syncthreads();
}

// Calls body(xwords, prologue) with x in memory, or staged by the prologue when tile_stage_x_bytes says so (uniform
// over the launch: it depends on kBatch and k only).
template <int kDtype, int kBatch, class Body>
__device__ __forceinline__ void with_plain_x(const void* x, int64_t k, unsigned char* s_x, Body&& body) {
    if constexpr (kTileStageX) {
        if (tile_stage_x_bytes(kBatch, k) > 0) {
            body(SharedXWords<kDtype>{ptx::shared_address(s_x), k}, [&] { tile_stage_x_rows<kBatch>(x, k, s_x); });
            return;
        }
    }
    (void)s_x;
    body(PlainXWords<kDtype>{x, k}, [] {});
}

// One tile a warp works on: its weight and the absolute weight rows of its lane's g and g + 8 (clamped to the
// member's last row: rows past the end are computed and not written), with its table and code map in shared memory.
struct TileRows {
    Nf4Weight w;
    int64_t row_a, row_b;
    const float* s_nf4;
    const float* s_map;
};

// A lane's weights of kStep super-chunks of kTiles tiles, in flight together (rows g and g + 8), with what their
// scales are made of.
template <int kStep, int kTiles>
struct TileLoads {
    uint4 w[kStep][kTiles][2];
    uint32_t code[kStep][kTiles][2];
    float nested[kStep][kTiles][2];
};

// Issues a lane's loads of super-chunks [s, s + kStep) of its tiles into b; past s1: zeros, nothing read.
template <int kStep, int kTiles>
__device__ __forceinline__ void tile_issue(TileLoads<kStep, kTiles>& b, const TileRows (&t)[kTiles], int64_t k, int64_t s,
                                           int64_t s1, int q, int log2_blocksize, int log2_nested_span, uint64_t stream,
                                           uint64_t keep) {
#pragma unroll
    for (int i = 0; i < kStep; ++i)
#pragma unroll
        for (int u = 0; u < kTiles; ++u)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                b.w[i][u][h] = make_uint4(0, 0, 0, 0);
                b.code[i][u][h] = 0;
                b.nested[i][u][h] = 0.0f;
                if (s + i < s1) {
                    const int64_t e = (h == 0 ? t[u].row_a : t[u].row_b) * k + (s + i) * kSuperChunk + 32 * q;
                    b.w[i][u][h] = ptx::load_stream_v4(t[u].w.packed + (e >> 1), stream);
                    b.code[i][u][h] = ptx::load_u8_keep(t[u].w.absmax_codes + (e >> log2_blocksize), keep);
                    b.nested[i][u][h] = __ldg(t[u].w.nested_absmax + (e >> log2_nested_span));
                }
            }
}

// Whether the tile GEMVs and the wide GEMM ask L2, before their grid-dependency wait, for the weights of the
// super-chunks of their share past the two steps they hold in registers (tile_prefetch_rest). Only shares longer than
// that gain: the paired gate/up walk past k = 1024 (Qwen3-1.7B and Llama-3.2-1B: 4 super-chunks a warp, 2 held) and
// the wide GEMM's splits of more than 2. EXPERIMENTAL, off: not yet timed on a GPU (round 32 landed it switched off;
// tools/gpu-steps/lease-r32-1.sh builds a library with it on).
constexpr bool kTilePrefetchRest = false;

// The L2 prefetch of super-chunks [s, s1) of a lane's tiles: the 16 bytes it will load of rows g and g + 8 of each
// (the four q of a row together cover the row's 64 bytes of a super-chunk). Not the scales' bytes: one code a
// 64-weight block, already in flight with the first two steps' loads for most of the share's blocks.
template <int kTiles>
__device__ __forceinline__ void tile_prefetch_rest(const TileRows (&t)[kTiles], int64_t k, int64_t s, int64_t s1, int q) {
    if constexpr (kTilePrefetchRest) {
        for (; s < s1; ++s)
#pragma unroll
            for (int u = 0; u < kTiles; ++u)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int64_t e = (h == 0 ? t[u].row_a : t[u].row_b) * k + s * kSuperChunk + 32 * q;
                    ptx::prefetch_l2(t[u].w.packed + (e >> 1));
                }
    } else {
        (void)t, (void)k, (void)s, (void)s1, (void)q;
    }
}

// The block scale of 16 loaded bytes: nested code map [code] x nested absmax + offset, as bitsandbytes computes it.
__device__ __forceinline__ float tile_scale(const TileRows& t, uint32_t code, float nested, float offset) {
    return __fadd_rn(__fmul_rn(t.s_map[code], nested), offset);
}

// A lane's activations for super-chunks [s, s + kStep): x[bx][c + 32q .. + 32) of each (those before s1).
template <int kStep>
struct TileX {
    uint4 w[kStep][4];
};

template <int kStep, class XWords>
__device__ __forceinline__ void tile_load_x(TileX<kStep>& x, const XWords& xwords, int64_t s, int64_t s1, int q, int bx) {
#pragma unroll
    for (int i = 0; i < kStep; ++i)
#pragma unroll
        for (int v = 0; v < 4; ++v)
            x.w[i][v] = s + i < s1 ? xwords(bx, (s + i) * kSuperChunk + 32 * q + 8 * v) : make_uint4(0, 0, 0, 0);
}

// Word v (a constant after unrolling) of 16 loaded bytes.
__device__ __forceinline__ uint32_t word_of(const uint4& u, int v) { return v == 0 ? u.x : v == 1 ? u.y : v == 2 ? u.z : u.w; }

// The products of super-chunks [s, s + kStep) (those before s1) from the weights b and activations x into c.
template <int kDtype, int kStep, int kTiles>
__device__ __forceinline__ void tile_consume(const TileLoads<kStep, kTiles>& b, const TileX<kStep>& x,
                                             const TileRows (&t)[kTiles], const float (&offset)[kTiles],
                                             const uint32_t (&table)[kTiles], int64_t s, int64_t s1, float (&c)[kTiles][4]) {
#pragma unroll
    for (int i = 0; i < kStep; ++i) {
        if (s + i >= s1) break;
        float scale_a[kTiles], scale_b[kTiles];
#pragma unroll
        for (int u = 0; u < kTiles; ++u) {
            scale_a[u] = tile_scale(t[u], b.code[i][u][0], b.nested[i][u][0], offset[u]);
            scale_b[u] = tile_scale(t[u], b.code[i][u][1], b.nested[i][u][1], offset[u]);
        }
        // k-step by k-step, the tiles innermost: with two tiles (the gated form), two independent chains of mmas that
        // the tensor cores interleave instead of one chain of 16 dependent ones (each c[u] takes the same mmas in the
        // same order either way, so the same bits).
#pragma unroll
        for (int v = 0; v < 4; ++v)
#pragma unroll
            for (int u = 0; u < kTiles; ++u) {
                uint32_t pa[4], pb[4];
                decode8_packed<kDtype>(word_of(b.w[i][u][0], v), scale_a[u], table[u], pa);
                decode8_packed<kDtype>(word_of(b.w[i][u][1], v), scale_b[u], table[u], pb);
                // Word v holds columns 8v .. 8v + 7 of the lane's 32: mma 2v takes 8v + 0..3, mma 2v + 1 8v + 4..7.
                mma_16816<kDtype>(c[u], pa[0], pb[0], pa[1], pb[1], x.w[i][v].x, x.w[i][v].y);
                mma_16816<kDtype>(c[u], pa[2], pb[2], pa[3], pb[3], x.w[i][v].z, x.w[i][v].w);
            }
    }
}

// This warp's share of kTiles tiles (sharing x): c[t] += the tile's products over super-chunks [s0, s1). The loads go
// two steps of kStep super-chunks ahead (double-buffered: 8 16-byte weight loads a lane in flight, with kStep = 2 /
// kTiles), the first two issued before the grid-dependency wait, so a warp's whole share is in flight at once when
// P <= 2 kStep (always for one tile, see tile_warps; for the gated form's two, up to k = 2048). Block-wide: stage()
// (the shared tables) runs after the first loads are issued and before the wait, like row_slice_dot; prologue() after
// it (the folded norm).
//
// Paired (kPair, the gated form only): the warp walks two neighbouring warps' shares [s0, split) and [split, s1) as one
// walk, the first into c and the second into c2, each in its own order, so the sums are those of the two warps (see
// tile_gated_block).
template <int kDtype, int kBatch, int kTiles, bool kPair, class Stage, class XWords, class Prologue>
__device__ __forceinline__ void tile_warp_dot_pair(const TileRows (&t)[kTiles], int64_t k, int64_t s0, int64_t s1,
                                              int log2_blocksize, int log2_nested_span, Stage&& stage,
                                              const XWords& xwords, Prologue&& prologue, float (&c)[kTiles][4],
                                              int64_t split, float (&c2)[kTiles][4]) {
    constexpr int kStep = 2 / kTiles;
    static_assert(kStep >= 1, "one or two tiles a warp");
    static_assert(!kPair || kStep == 1, "a paired walk switches accumulators between steps of one super-chunk");
    // The products of the step at s: into c, or past the split into c2 (a branch uniform over the warp, each side
    // with its accumulators in registers).
    auto consume = [&](const TileLoads<kStep, kTiles>& b, const TileX<kStep>& xs, int64_t s, const float (&offset)[kTiles],
                       const uint32_t (&table)[kTiles]) {
        if constexpr (kPair) {
            if (s >= split) {
                tile_consume<kDtype>(b, xs, t, offset, table, s, s1, c2);
                return;
            }
        }
        tile_consume<kDtype>(b, xs, t, offset, table, s, s1, c);
    };
    const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int bx = g < kBatch ? g : kBatch - 1;
    const uint64_t stream = ptx::policy_evict_first(), keep = ptx::policy_evict_last();
    TileLoads<kStep, kTiles> b0, b1;
    tile_issue(b0, t, k, s0, s1, q, log2_blocksize, log2_nested_span, stream, keep);
    tile_issue(b1, t, k, s0 + kStep, s1, q, log2_blocksize, log2_nested_span, stream, keep);
    tile_prefetch_rest(t, k, s0 + 2 * kStep, s1, q);
    stage();
    float offset[kTiles];
    uint32_t table[kTiles];
#pragma unroll
    for (int u = 0; u < kTiles; ++u) {
        offset[u] = __ldg(t[u].w.nested_offset);
        table[u] = ptx::shared_address(t[u].s_nf4);
    }
    // Everything above reads weights only; x comes from the previous kernel (programmatic launch: cuda_common.cuh).
    grid_dependency_wait();
    launch_dependents_after_wait();
    __syncthreads();  // the tables are in shared memory
    prologue();       // block-wide, with its own barriers: a folded norm's rows into shared memory
    // Each step's activations are loaded just before its arithmetic: loading the next step's first (two steps' x in
    // registers) was slower on the H100 (bench/results/2026-12-07-round21, variant xa).
    TileX<kStep> x;
    for (int64_t s = s0; s < s1; s += 2 * kStep) {
        tile_load_x(x, xwords, s, s1, q, bx);
        consume(b0, x, s, offset, table);
        if (s + 2 * kStep < s1) tile_issue(b0, t, k, s + 2 * kStep, s1, q, log2_blocksize, log2_nested_span, stream, keep);
        if (s + kStep < s1) {
            tile_load_x(x, xwords, s + kStep, s1, q, bx);
            consume(b1, x, s + kStep, offset, table);
        }
        if (s + 3 * kStep < s1) tile_issue(b1, t, k, s + 3 * kStep, s1, q, log2_blocksize, log2_nested_span, stream, keep);
    }
}

template <int kDtype, int kBatch, int kTiles, class Stage, class XWords, class Prologue>
__device__ __forceinline__ void tile_warp_dot(const TileRows (&t)[kTiles], int64_t k, int64_t s0, int64_t s1,
                                              int log2_blocksize, int log2_nested_span, Stage&& stage,
                                              const XWords& xwords, Prologue&& prologue, float (&c)[kTiles][4]) {
    tile_warp_dot_pair<kDtype, kBatch, kTiles, false>(t, k, s0, s1, log2_blocksize, log2_nested_span,
                                                      static_cast<Stage&&>(stage), xwords, static_cast<Prologue&&>(prologue),
                                                      c, s1, c);
}

// The warps of a tile block for width k: 8, or 16 past 4096 (32 super-chunks), so that no warp has more than 4
// super-chunks (with one tile, all of them in flight before the wait). The k-split, and so the bits, follow from k.
__host__ __device__ constexpr int tile_warps(int64_t k) { return k > 4 * kSuperChunk * kWarps ? 2 * kWarps : kWarps; }

// The super-chunks of warp `warp` of a tile's kW: [s0, s1).
template <int kW>
__device__ __forceinline__ void warp_super_chunks(int64_t k, int warp, int64_t& s0, int64_t& s1) {
    const int64_t chunks = k / kSuperChunk, per = (chunks + kW - 1) / kW;
    s0 = warp * per < chunks ? warp * per : chunks;
    s1 = s0 + per < chunks ? s0 + per : chunks;
}

// Each warp's accumulators into s_acc[warp][lane][tile][4], then, per output (tile u, row r, column n), the sum of
// the warps' values in warp order: out(u, r, n, value) for the threads t < kTiles * 128 (u = t / 128, r = t / 8 % 16,
// n = t % 8). Block-wide. In two parts for the paired gated form, whose warps each store two warps' accumulators
// (tile_acc_store at slots 2w and 2w + 1) and whose threads each take outputs t, t + blockDim.x, ...
template <int kTiles>
__device__ __forceinline__ void tile_acc_store(const float (&c)[kTiles][4], float* s_acc, int slot) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int u = 0; u < kTiles; ++u)
#pragma unroll
        for (int j = 0; j < 4; ++j) s_acc[((slot * 32 + lane) * kTiles + u) * 4 + j] = c[u][j];
}

template <int kTiles, int kW, class Out>
__device__ __forceinline__ void tile_sums_finish(const float* s_acc, int threads, Out&& out) {
    __syncthreads();
    for (int t = threadIdx.x; t < kTiles * 128; t += threads) {
        const int u = t / 128, r = (t / 8) % 16, n = t % 8;
        const int src_lane = (r % 8) * 4 + n / 2, reg = (r / 8) * 2 + n % 2;
        float v = s_acc[(src_lane * kTiles + u) * 4 + reg];
#pragma unroll
        for (int w = 1; w < kW; ++w) v = __fadd_rn(v, s_acc[((w * 32 + src_lane) * kTiles + u) * 4 + reg]);
        out(u, r, n, v);
    }
}

template <int kTiles, int kW, class Out>
__device__ __forceinline__ void tile_sums(const float (&c)[kTiles][4], float* s_acc, Out&& out) {
    tile_acc_store<kTiles>(c, s_acc, threadIdx.x >> 5);
    tile_sums_finish<kTiles, kW>(s_acc, kW * 32, static_cast<Out&&>(out));
}

// s_acc per tile a block of kW warps holds.
template <int kW>
constexpr int kTileAccFloats = kW * 32 * 4;

// Block `block` (tile) of one member: rows [row0 + 16 block, + 16) of its weight, y[n * y_stride + r] for n < kBatch.
template <int kDtype, int kBatch, int kW, class XWords, class Prologue>
__device__ __forceinline__ void tile_member_block(const GroupMember& d, int64_t k, int log2_blocksize,
                                                  int log2_nested_span, int64_t block, float* s_nf4, float* s_map,
                                                  float* s_acc, const XWords& xwords, Prologue&& prologue) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2;
    const int64_t r0 = block * kTileRows;
    auto clamp = [&](int64_t r) { return d.row0 + (r < d.m ? r : d.m - 1); };
    const TileRows t[1] = {{d.w, clamp(r0 + g), clamp(r0 + g + 8), s_nf4, s_map}};
    int64_t s0, s1;
    warp_super_chunks<kW>(k, warp, s0, s1);
    float c[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    tile_warp_dot<kDtype, kBatch, 1>(t, k, s0, s1, log2_blocksize, log2_nested_span,
                                     [&] { stage_tables(d.w, s_nf4, s_map); }, xwords, prologue, c);
    tile_sums<1, kW>(c, s_acc, [&](int, int r, int n, float v) {
        if (n < kBatch && r0 + r < d.m) store_f32<kDtype>(d.y, n * d.y_stride + r0 + r, v);
    });
}

template <int kDtype, int kBatch, int kW>
__global__ void __launch_bounds__(kW * 32) nf4_tile_kernel(GroupMember d, const void* __restrict__ x, int64_t k,
                                                           int log2_blocksize, int log2_nested_span) {
    launch_dependents_early();
    __shared__ __align__(256) float s_nf4[16];
    __shared__ float s_map[256];
    __shared__ float s_acc[kTileAccFloats<kW>];
    extern __shared__ __align__(16) unsigned char s_x[];  // tile_stage_x_bytes
    with_plain_x<kDtype, kBatch>(x, k, s_x, [&](const auto& xwords, auto&& prologue) {
        tile_member_block<kDtype, kBatch, kW>(d, k, log2_blocksize, log2_nested_span, blockIdx.x, s_nf4, s_map, s_acc,
                                              xwords, prologue);
    });
}

// A grouped launch's activation source for the tiles: with_input's, with the 16-byte loaders.
template <int kDtype, int kBatch, bool kFold, int kW, class Body>
__device__ __forceinline__ void with_tile_input(const Group& g, unsigned char* s_x, float* s_scratch, Body&& body) {
    static_assert(!kFold || kW == kWarps, "the folded norm sums in the residual-norm kernels' 256-thread order");
    if constexpr (kFold)
        with_input<kDtype, kBatch, kFold, StagedXWords, PlainXWords>(g, s_x, s_scratch, static_cast<Body&&>(body));
    else
        with_plain_x<kDtype, kBatch>(g.x, g.k, s_x, static_cast<Body&&>(body));
}

// The grouped form: block b belongs to the member whose tiles hold it (first_block: prefix sums of tile counts).
template <int kDtype, int kBatch, bool kFold, int kW>
__global__ void __launch_bounds__(kW * 32) nf4_tile_group_kernel(Group g) {
    launch_dependents_early();
    __shared__ __align__(256) float s_nf4[16];
    __shared__ float s_map[256];
    __shared__ float s_acc[kTileAccFloats<kW>];
    __shared__ float s_scratch[kWarps];
    extern __shared__ __align__(16) unsigned char s_x[];
    const int64_t bid = blockIdx.x;
    const GroupMember d = member_of(g, bid);
    with_tile_input<kDtype, kBatch, kFold, kW>(g, s_x, s_scratch, [&](const auto& xwords, auto&& prologue) {
        tile_member_block<kDtype, kBatch, kW>(d, g.k, g.log2_blocksize, g.log2_nested_span, bid - d.first_block, s_nf4,
                                          s_map, s_acc, xwords, prologue);
    });
}

// The gated form: block `block` holds tile `block` of the gate (member 0) and the same rows of the up projection
// (member 1); every warp walks both over its super-chunks (one x load for the two), and the first 128 threads write
// out[n * m + r] = to_dtype(to_dtype(act(g)) * u) from the two sums rounded to the dtype, as gated_block does.
//
// kPaired: the block has kW / 2 warps, warp w walking the shares of warps 2w and 2w + 1 of kW (tile_warp_dot_pair),
// with the same sums in the same order, so the same bits as kW warps. Why: the gated blocks hold 8 warps of ~128
// registers, so an SM takes 2; Qwen3-1.7B's 384 gate/up tiles (Llama-3.2-1B's 512) then run in two waves, and the
// second wave's blocks issue their weight loads only after the first's leave, with no predecessor kernel to hide them
// behind (gate/up took 10.6 us a layer at batch 1 against q/k/v's 5.1 for 256 tiles, bench/results/2026-12-07-round26).
// Blocks of 4 warps at <= 128 registers fit 4 an SM (528 on an H100): one wave, whose warps issue the second half of
// their loads as the first half is consumed. H100, batch 1, 512 new tokens: Qwen3-1.7B 746 -> 760 tokens/s, Llama-3.2-1B
// 1,104 -> 1,115, the same digests (bench/results/2026-12-07-round30).
template <int kDtype, int kBatch, int kW, bool kPaired, class XWords, class Prologue>
__device__ __forceinline__ void tile_gated_block(const Group& g, sloth_gate_activation activation, void* __restrict__ out,
                                                 int64_t block, float (*s_nf4)[kNf4TableStride], float (*s_map)[256],
                                                 float* s_acc, float (*s_sum)[128], const XWords& xwords,
                                                 Prologue&& prologue) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gi = lane >> 2;
    const Nf4Weight& gate = g.member[0].w;
    const Nf4Weight& up = g.member[1].w;
    const int64_t m = g.member[0].m, r0 = block * kTileRows;
    const int64_t ra = r0 + gi < m ? r0 + gi : m - 1, rb = r0 + gi + 8 < m ? r0 + gi + 8 : m - 1;
    const TileRows t[2] = {{gate, g.member[0].row0 + ra, g.member[0].row0 + rb, s_nf4[0], s_map[0]},
                           {up, g.member[1].row0 + ra, g.member[1].row0 + rb, s_nf4[1], s_map[1]}};
    constexpr int kThreadsHere = kPaired ? kW * 16 : kW * 32;
    int64_t s0, s1, split;
    if constexpr (kPaired) {
        int64_t e0, e1;
        warp_super_chunks<kW>(g.k, 2 * warp, s0, split);
        warp_super_chunks<kW>(g.k, 2 * warp + 1, e0, e1);
        s1 = e1 > split ? e1 : split;  // warp 2w + 1's share starts where 2w's ends (or both are empty)
    } else {
        warp_super_chunks<kW>(g.k, warp, s0, s1);
        split = s1;
    }
    float c[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    float c2[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    tile_warp_dot_pair<kDtype, kBatch, 2, kPaired>(
        t, g.k, s0, s1, g.log2_blocksize, g.log2_nested_span,
        [&] {
            stage_tables(gate, s_nf4[0], s_map[0]);
            stage_tables(up, s_nf4[1], s_map[1]);
        },
        xwords, prologue, c, split, c2);
    // Both tiles' sums (u = t / 128), then the first 128 threads pair them.
    if constexpr (kPaired) {
        tile_acc_store<2>(c, s_acc, 2 * warp);
        tile_acc_store<2>(c2, s_acc, 2 * warp + 1);
    } else {
        tile_acc_store<2>(c, s_acc, warp);
    }
    tile_sums_finish<2, kW>(s_acc, kThreadsHere, [&](int u, int r, int n, float v) { s_sum[u][r * 8 + n] = v; });
    __syncthreads();
    if (threadIdx.x < 128) {
        const int r = threadIdx.x / 8, n = threadIdx.x % 8;
        const float gv = round_to<kDtype>(s_sum[0][r * 8 + n]), uv = round_to<kDtype>(s_sum[1][r * 8 + n]);
        if (n < kBatch && r0 + r < m)
            store_f32<kDtype>(out, n * m + r0 + r, gated_product<kDtype>(activation, gv, uv));
    }
}

template <int kDtype, int kBatch, bool kFold, int kW>
__global__ void __launch_bounds__(kW * 32) nf4_tile_gated_kernel(Group g, sloth_gate_activation activation,
                                                                 void* __restrict__ out) {
    launch_dependents_early();
    __shared__ __align__(256) float s_nf4[2][kNf4TableStride];
    __shared__ float s_map[2][256];
    __shared__ float s_acc[2 * kTileAccFloats<kW>];
    __shared__ float s_sum[2][128];  // the gate's and the up projection's sums, [r * 8 + n]
    __shared__ float s_scratch[kWarps];
    extern __shared__ __align__(16) unsigned char s_x[];
    with_tile_input<kDtype, kBatch, kFold, kW>(g, s_x, s_scratch, [&](const auto& xwords, auto&& prologue) {
        tile_gated_block<kDtype, kBatch, kW, false>(g, activation, out, blockIdx.x, s_nf4, s_map, s_acc, s_sum, xwords,
                                                    prologue);
    });
}

// The paired gated form (no folded norm): kW / 2 warps a block, bounded to 128 registers so that 512 threads fit an
// SM (4 blocks of kW = 8).
template <int kDtype, int kBatch, int kW>
__global__ void __launch_bounds__(kW * 16, 512 / (kW * 16)) nf4_tile_gated_pair_kernel(Group g, sloth_gate_activation activation,
                                                                                        void* __restrict__ out) {
    launch_dependents_early();
    __shared__ __align__(256) float s_nf4[2][kNf4TableStride];
    __shared__ float s_map[2][256];
    __shared__ float s_acc[2 * kTileAccFloats<kW>];
    __shared__ float s_sum[2][128];
    extern __shared__ __align__(16) unsigned char s_x[];  // tile_stage_x_bytes
    with_plain_x<kDtype, kBatch>(g.x, g.k, s_x, [&](const auto& xwords, auto&& prologue) {
        tile_gated_block<kDtype, kBatch, kW, true>(g, activation, out, blockIdx.x, s_nf4, s_map, s_acc, s_sum, xwords,
                                                   prologue);
    });
}

// ---- Host side.

// Whether a launch over x and these weights takes the tiles (see the top of this file); the same answer for a matrix
// alone, in a group and gated, so a row's bits do not depend on how it was launched.
template <int kDtype>
bool tiles_take(int64_t k, const void* x, const uint8_t* const* packed, int count) {
    if constexpr (kDtype == SLOTH_DTYPE_F32) {  // if constexpr: nvcc warns (#128) of code after a constant return
        (void)k, (void)x, (void)packed, (void)count;
        return false;
    } else {
        if (!nf4_gemv_tiles_on() || k % kSuperChunk != 0 || k > kTileMaxK || reinterpret_cast<uintptr_t>(x) % 16 != 0)
            return false;
        for (int i = 0; i < count; ++i)
            if (reinterpret_cast<uintptr_t>(packed[i]) % 16 != 0) return false;
        return mma_compiled();
    }
}

template <int kDtype, int kBatch, int kW>
sloth_status launch_tiles_w(const char* fn, const Nf4GemvArgs& a, cudaStream_t stream) {
    const int64_t blocks = ceil_div(a.m, static_cast<int64_t>(kTileRows));
    SLOTH_CHECK(require_one_launch(fn, blocks));
    GroupMember d{};
    d.w = Nf4Weight{a.packed, a.absmax_codes, a.nested_code_map, a.nested_absmax, a.nested_offset, a.nf4_code_table};
    d.row0 = 0;
    d.m = a.m;
    d.y = a.y;
    d.y_stride = a.m;
    const int lb = log2_exact(a.blocksize), ln = lb + log2_exact(a.nested_blocksize);
    SLOTH_KERNEL_LAUNCH(fn, "nf4_tile_kernel",
                        launch_kernel_smem(nf4_tile_kernel<kDtype, kBatch, kW>, static_cast<unsigned>(blocks), kW * 32,
                                           static_cast<size_t>(tile_stage_x_bytes(kBatch, a.k)), stream, d, a.x, a.k, lb, ln));
    return SLOTH_OK;
}

template <int kDtype, int kBatch>
sloth_status launch_tiles(const char* fn, const Nf4GemvArgs& a, cudaStream_t stream) {
    return tile_warps(a.k) == kWarps ? launch_tiles_w<kDtype, kBatch, kWarps>(fn, a, stream)
                                     : launch_tiles_w<kDtype, kBatch, 2 * kWarps>(fn, a, stream);
}

// g: group_of's view; its first_block are recomputed for tiles (16 rows a block). A folded norm only with 8 warps
// (nf4_group_fits folds up to k = kNf4FoldMaxK, where tile_warps is 8).
template <int kDtype, int kBatch, int kW>
sloth_status launch_tiles_group_w(const char* fn, const Nf4GemvGroupArgs& a, Group g, cudaStream_t stream) {
    constexpr bool kCanFold = kW == kWarps;
    if constexpr (!kCanFold) {  // if constexpr: nvcc flags code that a constant condition makes unreachable
        if (a.fold_norm)
            return fail(SLOTH_ERROR_INTERNAL, "%s: a folded norm at k = %lld (past kNf4FoldMaxK)", fn,
                        static_cast<long long>(a.k));
    }
    // Dynamic shared memory: the folded norm's rows, or x staged by the tile kernels (tile_stage_x_bytes; 0: none).
    const size_t smem = a.fold_norm ? static_cast<size_t>(nf4_fold_smem_bytes(a))
                                         : static_cast<size_t>(tile_stage_x_bytes(kBatch, a.k));
    if (a.gated) {
        const int64_t blocks = ceil_div(a.member[0].m, static_cast<int64_t>(kTileRows));
        SLOTH_CHECK(require_one_launch(fn, blocks));
        if (!a.fold_norm) {  // the paired blocks (kW / 2 warps)
            SLOTH_KERNEL_LAUNCH(fn, "nf4_tile_gated_pair_kernel",
                                launch_kernel_smem(nf4_tile_gated_pair_kernel<kDtype, kBatch, kW>, static_cast<unsigned>(blocks),
                                                   kW * 16, smem, stream, g, a.activation, a.gated_out));
            return SLOTH_OK;
        }
        if constexpr (kCanFold) {  // the folded norm: kW warps (its sums follow the residual-norm kernels' 256 threads)
            SLOTH_KERNEL_LAUNCH(fn, "nf4_tile_gated_kernel",
                                launch_kernel_smem(nf4_tile_gated_kernel<kDtype, kBatch, true, kW>,
                                                   static_cast<unsigned>(blocks), kW * 32, smem, stream, g,
                                                   a.activation, a.gated_out));
        }
        return SLOTH_OK;
    }
    int64_t total = 0;
    for (int i = 0; i < a.count; ++i) {
        g.member[i].first_block = static_cast<int32_t>(total < 0x7FFFFFFF ? total : 0x7FFFFFFF);
        total += ceil_div(a.member[i].m, static_cast<int64_t>(kTileRows));
    }
    SLOTH_CHECK(require_one_launch(fn, total));
    SLOTH_KERNEL_LAUNCH(fn, "nf4_tile_group_kernel",
                        launch_kernel_smem(a.fold_norm ? nf4_tile_group_kernel<kDtype, kBatch, kCanFold, kW>
                                                       : nf4_tile_group_kernel<kDtype, kBatch, false, kW>,
                                           static_cast<unsigned>(total), kW * 32, smem, stream, g));
    return SLOTH_OK;
}

template <int kDtype, int kBatch>
sloth_status launch_tiles_group(const char* fn, const Nf4GemvGroupArgs& a, const Group& g, cudaStream_t stream) {
    return tile_warps(a.k) == kWarps ? launch_tiles_group_w<kDtype, kBatch, kWarps>(fn, a, g, stream)
                                     : launch_tiles_group_w<kDtype, kBatch, 2 * kWarps>(fn, a, g, stream);
}

}  // namespace
}  // namespace sloth::cuda::nf4
