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
//  - Split over k across blocks (nf4_wide_splits: about kNf4WideTargetBlocks blocks, at least 2 super-chunks each), so
//    the small projections (k/v: 512-1024 rows, 4-8 blocks of rows) still fill the GPU. With more than one split each
//    block writes float32 partials and a second launch adds them in split order; with one, the block writes y.
// The split depends on (m, k) alone and each output column of an mma depends on its own B column only, so a row's
// bits do not depend on the batch size or on which other rows are in the batch. They differ from the batch-1..8 tile
// GEMV's in the float32 summation order only (a different split over k).
#include "nf4_gemv_kernels.cuh"

namespace sloth::cuda::nf4 {
namespace {

constexpr int kWideWarps = static_cast<int>(kNf4WideRows / kTileRows);  // 8
constexpr int kWideThreads = kWideWarps * 32;
constexpr int kWideRowBytes = kSuperChunk * 2;  // x bytes of one activation row per super-chunk (16-bit dtypes)
static_assert(kWideThreads == kThreads, "stage_tables fills the code map with one thread an entry");

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

// grid (ceil(m / 128), splits), kWideThreads threads; dynamic shared memory: two stages of 8 kNT rows of 256 bytes.
// Split y.blockIdx takes super-chunks [per y, per y + per). splits == 1: y[b * m + r] in the dtype; else
// partial[(split * batch + b) * m + r] in float32.
template <int kDtype, int kNT>
__global__ void __launch_bounds__(kWideThreads) nf4_wide_kernel(Nf4Weight w, int64_t m, const void* __restrict__ x,
                                                                int64_t batch, int64_t k, int log2_blocksize,
                                                                int log2_nested_span, int64_t per, float* partial,
                                                                void* y) {
    __shared__ __align__(256) float s_nf4[kNf4TableStride];
    __shared__ float s_map[256];
    extern __shared__ __align__(16) unsigned char s_x[];
    constexpr uint32_t kStageBytes = 8u * kNT * kWideRowBytes;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kNf4WideRows + warp * kTileRows;
    auto clamp = [&](int64_t r) { return r < m ? r : m - 1; };
    const TileRows t[1] = {{w, clamp(r0 + g), clamp(r0 + g + 8), s_nf4, s_map}};
    const int64_t chunks = k / kSuperChunk, s0 = static_cast<int64_t>(blockIdx.y) * per;
    const int64_t s1 = s0 + per < chunks ? s0 + per : chunks;
    const uint64_t stream = ptx::policy_evict_first(), keep = ptx::policy_evict_last();
    TileLoads<1, 1> b0, b1;
    tile_issue(b0, t, k, s0, s1, q, log2_blocksize, log2_nested_span, stream, keep);
    tile_issue(b1, t, k, s0 + 1, s1, q, log2_blocksize, log2_nested_span, stream, keep);
    stage_tables(w, s_nf4, s_map);
    const float offset = __ldg(w.nested_offset);
    const uint32_t table = ptx::shared_address(s_nf4), stages = ptx::shared_address(s_x);
    // Everything above reads weights only; x comes from the previous kernel (programmatic launch: cuda_common.cuh).
    grid_dependency_wait();
    allow_dependent_launch();
    wide_stage_x(x, batch, k, s0, stages);
    const int tiles = static_cast<int>((batch + 7) / 8);  // n-tiles in use (block-uniform)
    float c[kNT][4];
#pragma unroll
    for (int n = 0; n < kNT; ++n) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
    // Super-chunk s from the weights in `cur` and x in stage (s - s0) % 2; then `cur` takes super-chunk s + 2.
    auto step = [&](TileLoads<1, 1>& cur, int64_t s) {
        if (s + 1 < s1) {
            wide_stage_x(x, batch, k, s + 1, stages + static_cast<uint32_t>((s + 1 - s0) & 1) * kStageBytes);
            ptx::cp_async_wait<1>();
        } else {
            ptx::cp_async_wait<0>();
        }
        __syncthreads();  // this super-chunk's x is in shared memory for every warp (and the tables, the first time)
        uint32_t pa[4][4], pb[4][4];
        {
            const float scale_a = tile_scale(t[0], cur.code[0][0][0], cur.nested[0][0][0], offset);
            const float scale_b = tile_scale(t[0], cur.code[0][0][1], cur.nested[0][0][1], offset);
            const uint4& wa = cur.w[0][0][0];
            const uint4& wb = cur.w[0][0][1];
            decode8_packed<kDtype>(wa.x, scale_a, table, pa[0]);
            decode8_packed<kDtype>(wa.y, scale_a, table, pa[1]);
            decode8_packed<kDtype>(wa.z, scale_a, table, pa[2]);
            decode8_packed<kDtype>(wa.w, scale_a, table, pa[3]);
            decode8_packed<kDtype>(wb.x, scale_b, table, pb[0]);
            decode8_packed<kDtype>(wb.y, scale_b, table, pb[1]);
            decode8_packed<kDtype>(wb.z, scale_b, table, pb[2]);
            decode8_packed<kDtype>(wb.w, scale_b, table, pb[3]);
        }
        tile_issue(cur, t, k, s + 2, s1, q, log2_blocksize, log2_nested_span, stream, keep);
        const uint32_t stage = stages + static_cast<uint32_t>((s - s0) & 1) * kStageBytes;
#pragma unroll
        for (int n = 0; n < kNT; ++n) {
            if (n >= tiles) break;
            const int r = 8 * n + g;
            const uint32_t row = stage + static_cast<uint32_t>(r * kWideRowBytes);
#pragma unroll
            for (int v = 0; v < 4; ++v) {
                const uint4 xv = ptx::load_shared_v4(row + static_cast<uint32_t>(wide_chunk(r, 4 * q + v) * 16));
                // Word v holds columns 8v .. 8v + 7 of the lane's 32: mma 2v takes 8v + 0..3, mma 2v + 1 8v + 4..7.
                mma_16816<kDtype>(c[n], pa[v][0], pb[v][0], pa[v][1], pb[v][1], xv.x, xv.y);
                mma_16816<kDtype>(c[n], pa[v][2], pb[v][2], pa[v][3], pb[v][3], xv.z, xv.w);
            }
        }
        __syncthreads();  // every warp is done with this stage before the copy two super-chunks on overwrites it
    };
    for (int64_t s = s0; s < s1; s += 2) {
        step(b0, s);
        if (s + 1 < s1) step(b1, s + 1);
    }
    // c[n]: c0/c1 row g, activation rows 8n + 2q, 8n + 2q + 1; c2/c3 row g + 8 (PTX ISA's m16n8 accumulator layout).
    const bool whole = gridDim.y == 1;
#pragma unroll
    for (int n = 0; n < kNT; ++n)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int64_t b = 8 * n + 2 * q + (j & 1), r = r0 + g + 8 * (j >> 1);
            if (b >= batch || r >= m) continue;
            if (whole) store_f32<kDtype>(y, b * m + r, c[n][j]);
            else partial[(static_cast<int64_t>(blockIdx.y) * batch + b) * m + r] = c[n][j];
        }
}

// y[i] = the splits' partials of element i added in split order, rounded to the dtype once.
template <int kDtype>
__global__ void nf4_wide_reduce_kernel(const float* __restrict__ partial, int64_t splits, int64_t n, void* y) {
    grid_dependency_wait();
    allow_dependent_launch();
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = partial[i];
    for (int64_t s = 1; s < splits; ++s) v = __fadd_rn(v, partial[s * n + i]);
    store_f32<kDtype>(y, i, v);
}

template <int kDtype, int kNT>
sloth_status launch_wide(const char* fn, const Nf4GemvArgs& a, float* partial, cudaStream_t stream) {
    const int64_t splits = nf4_wide_splits(a.m, a.k), chunks = a.k / kSuperChunk;
    const int64_t per = (chunks + splits - 1) / splits;
    const int64_t row_blocks = ceil_div(a.m, kNf4WideRows);
    SLOTH_CHECK(require_one_launch(fn, row_blocks));
    Nf4Weight w{a.packed, a.absmax_codes, a.nested_code_map, a.nested_absmax, a.nested_offset, a.nf4_code_table};
    const int lb = log2_exact(a.blocksize), ln = lb + log2_exact(a.nested_blocksize);
    const size_t smem = 2u * 8u * kNT * kWideRowBytes;
    const dim3 grid(static_cast<unsigned>(row_blocks), static_cast<unsigned>(splits));
    SLOTH_KERNEL_LAUNCH(fn, "nf4_wide_kernel",
                        launch_kernel_smem(nf4_wide_kernel<kDtype, kNT>, grid, kWideThreads, smem, stream, w, a.m, a.x,
                                           a.batch, a.k, lb, ln, per, partial, a.y));
    if (splits > 1) {
        const int64_t n = a.batch * a.m;
        SLOTH_KERNEL_LAUNCH(fn, "nf4_wide_reduce_kernel",
                            launch_kernel(nf4_wide_reduce_kernel<kDtype>, grid_for(n, 256), 256, stream, partial, splits,
                                          n, a.y));
    }
    return SLOTH_OK;
}

template <int kDtype>
sloth_status launch_wide_for_batch(const char* fn, const Nf4GemvArgs& a, float* partial, cudaStream_t stream) {
    if (a.batch <= 16) return launch_wide<kDtype, 2>(fn, a, partial, stream);
    if (a.batch <= 32) return launch_wide<kDtype, 4>(fn, a, partial, stream);
    return launch_wide<kDtype, 8>(fn, a, partial, stream);
}

}  // namespace
}  // namespace sloth::cuda::nf4

namespace sloth::cuda {

bool nf4_wide_takes(const Nf4GemvArgs& a) {
    if (a.batch <= SLOTH_NF4_GEMV_MAX_BATCH || a.batch > kNf4WideMaxBatch) return false;
    const uint8_t* packed[1] = {a.packed};
    switch (a.dtype) {
        case SLOTH_DTYPE_BF16: return nf4::tiles_take<SLOTH_DTYPE_BF16>(a.k, a.x, packed, 1);
        case SLOTH_DTYPE_F16: return nf4::tiles_take<SLOTH_DTYPE_F16>(a.k, a.x, packed, 1);
        default: return false;
    }
}

sloth_status nf4_gemm_wide(const char* fn, const Nf4GemvArgs& a, float* partial, int32_t device, void* stream) {
    if (!nf4_wide_takes(a))
        return fail(SLOTH_ERROR_INTERNAL, "%s: the wide NF4 GEMM does not take batch %lld, k %lld", fn,
                    static_cast<long long>(a.batch), static_cast<long long>(a.k));
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) -> sloth_status {
        constexpr int kD = decltype(dt)::value;
        if constexpr (kD == SLOTH_DTYPE_F32) {
            return fail(SLOTH_ERROR_INTERNAL, "%s: the wide NF4 GEMM has no float32 form", fn);
        } else {
            return nf4::launch_wide_for_batch<kD>(fn, a, partial, s);
        }
    });
}

}  // namespace sloth::cuda
