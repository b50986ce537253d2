// Gemma 2's soft-capped attention in one pass per direction (flash-attention style): the [rows, keys] scores live only
// in registers, tile by tile, and never reach memory. slothsharp.h states the math; this is how it runs.
//
// Tiles. A block is 4 warps (128 threads). Query tiles are kBr = 64 rows (16 per warp), key tiles kBc = 64 keys.
// q, k, v, out and grad_out tiles sit in dynamic shared memory as [64][kD + 8] 16-bit elements (kD = head_dim rounded
// up to 64, 128 or 256, the columns past head_dim zero; the 8-element pad shifts consecutive rows by 16 bytes so that
// ldmatrix's eight row addresses hit distinct banks). A [64][68]-byte tile holds the mask (0 past the rows or keys).
// Products run on the tensor cores: mma.sync m16n8k16 (bf16 or f16 inputs, float32 accumulators), operands from
// shared memory through ldmatrix (.trans where the shared tile is [k][n]), the probabilities and score gradients
// handed from the accumulator layout to the A-operand layout in registers (the C fragment of two n8 tiles is the A
// fragment of one k16 step). Fragment layout (PTX ISA, mma.m16n8k16, 16-bit A/B): g = lane / 4, c = lane % 4;
// A regs {rows g, g+8} x {cols 2c, 2c+1} then +8 cols; B regs {rows 2c, 2c+1, then +8} x col g; C {rows g, g+8} x
// {cols 2c, 2c+1}.
// Forward: a block per (b, h, query tile), query tiles latest first (a causal mask gives them the most keys). Per key
// tile: the mask tile is loaded and, if no (row, key) of the tile is allowed, the tile is skipped (__syncthreads_or,
// uniform over the block: a causal mask skips about half); else K and V are loaded, S = Q K^T, t = tanh(S c),
// z = cap t (in log2 units), -inf where masked, the online softmax (per row the running max and sum, float32; the
// accumulator rescaled by exp2(m_old - m_new)), P rounded to the dtype, O += P V. Out = O / l, lse = m + log(l).
// Backward: delta_i = sum(dO * O) (one warp per row); then dK/dV per (b, h, key tile), each warp owning 16 keys and
// looping over the query tiles (S^T = K Q^T, P^T, dV += P^T dO, dP^T = V dO^T, G^T = P^T (dP^T - delta) (1 - t^2)
// scale rounded, dK += G^T Q); then dQ per (b, h, query tile) looping over the key tiles (S, dP = dO V^T, G, dQ += G K).
// For head_dim > 64 the dK/dV pass runs twice, once for dV and once for dK (a 16 x 256 float32 accumulator is 128
// registers per thread; two would spill), recomputing S. Every output element is summed by one thread in a fixed order:
// deterministic, no atomics.
// Architecture: the tensor-core path needs sm_80 (bf16 mma); below that the kernels compile empty and the entry points
// answer SLOTH_ERROR_UNSUPPORTED (softcap_flash_supported says so first: the managed side falls back to the blocks
// path). Shared memory: up to 140 KB per block for head_dim 256 (cudaFuncSetAttribute), checked against the device's
// opt-in limit. No allocation (the caller gives lse and delta), no sync, 64-bit offsets.
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "mma.cuh"

#include <math_constants.h>

namespace sloth::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kBr = 64;             // query rows per tile
constexpr int kBc = 64;             // keys per tile
constexpr int kMaskStride = kBc + 16;  // bytes per mask-tile row: 16-byte aligned rows for cp.async, rows 80 bytes apart
                                       // so a warp's reads of rows g = 0..7 fall in distinct banks
constexpr float kLog2e = 1.4426950408889634f;

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define SLOTH_FLASH_MMA 1  // the host pass and sm_80+: the kernels' bodies and their helpers
#endif

template <int kD>
struct Shape {
    static constexpr int kStride = kD + 8;                                 // elements per shared row
    static constexpr int kTileBytes = 64 * kStride * 2;                    // one [64][kStride] 16-bit tile
    static constexpr int kMaskBytes = kBr * kMaskStride;                   // the mask tile
    static constexpr int kForwardBytes = 3 * kTileBytes + kMaskBytes;      // Q, K, V, mask
    static constexpr int kBackwardBytes = 4 * kTileBytes + kMaskBytes + 2 * kBr * 4;  // Q, dO, K, V, mask, lse, delta
};

#ifdef SLOTH_FLASH_MMA
constexpr float kLn2 = 0.6931471805599453f;

// ---- PTX wrappers (sm_80+; compiled out for older targets with the kernel bodies that call them) ----

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t address) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t address) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
}

// 16 bytes global -> shared without passing through registers (cp.async, sm_80+): a thread can have many in flight,
// where a load-then-store loop waited for each load (the first GPU run: the tile loads, not the MMAs, bounded the
// kernels). src_bytes < 16 fills the rest of the 16 bytes with zeros; 0 reads nothing (src must still be a valid,
// aligned address). Both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, uint32_t src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}

// Waits for every cp.async this thread issued (the block's __syncthreads after it makes them visible to all).
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// c += a b for one 16 x 8 x 16 step (mma.cuh's product, the A fragment as one array).
template <int kDtype>
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_16816<kDtype>(c, a[0], a[1], a[2], a[3], b0, b1);
}

// ---- Fragment addressing (byte addresses in the shared window; tiles are [64][kStride] 16-bit, row-major) ----

// The A operand (16 x 16) at (row0, col0) of a row-major [m][k] tile: ldmatrix x4 matrices (r, c), (r+8, c),
// (r, c+8), (r+8, c+8) give a0..a3 in the mma's order.
template <int kStride>
__device__ __forceinline__ uint32_t a_address(uint32_t tile, int row0, int col0, int lane) {
    const int m = lane >> 3;
    return tile + 2u * static_cast<uint32_t>((row0 + (lane & 7) + ((m & 1) << 3)) * kStride + col0 + ((m & 2) << 2));
}

// B operands of two n8 tiles (n0, n0 + 8) for k16 step k0 from a tile stored [n][k] (rows = n): matrices (n0, k0),
// (n0, k0+8), (n0+8, k0), (n0+8, k0+8) give {b0, b1} of tile n0, then of tile n0 + 8.
template <int kStride>
__device__ __forceinline__ uint32_t b_address(uint32_t tile, int n0, int k0, int lane) {
    const int m = lane >> 3;
    return tile + 2u * static_cast<uint32_t>((n0 + (lane & 7) + ((m & 2) << 2)) * kStride + k0 + ((m & 1) << 3));
}

// The same from a tile stored [k][n] (rows = k), loaded with .trans: matrices (k0, n0), (k0+8, n0), (k0, n0+8),
// (k0+8, n0+8).
template <int kStride>
__device__ __forceinline__ uint32_t bt_address(uint32_t tile, int k0, int n0, int lane) {
    const int m = lane >> 3;
    return tile + 2u * static_cast<uint32_t>((k0 + (lane & 7) + ((m & 1) << 3)) * kStride + n0 + ((m & 2) << 2));
}

// acc[16 x 8 * kN] += A[16 x 16 * kK] B, A from a row-major shared tile at row0, B from a shared tile stored [n][k].
template <int kDtype, int kStride, int kK, int kN>
__device__ __forceinline__ void mma_ss(float (&acc)[kN][4], uint32_t a_tile, int row0, uint32_t b_tile, int lane) {
#pragma unroll
    for (int kk = 0; kk < kK; ++kk) {
        uint32_t a[4];
        ldsm_x4(a, a_address<kStride>(a_tile, row0, kk * 16, lane));
#pragma unroll
        for (int n = 0; n < kN; n += 2) {
            uint32_t b[4];
            ldsm_x4(b, b_address<kStride>(b_tile, n * 8, kk * 16, lane));
            mma<kDtype>(acc[n], a, b[0], b[1]);
            mma<kDtype>(acc[n + 1], a, b[2], b[3]);
        }
    }
}

// acc[16 x 8 * kN] += A B with A the 16 x 64 register operand (kBc / 16 k-steps, see to_a) and B from a shared tile
// stored [k][n] (k = the 64 rows of the tile).
template <int kDtype, int kStride, int kN>
__device__ __forceinline__ void mma_rs(float (&acc)[kN][4], const uint32_t (&a)[4][4], uint32_t b_tile, int lane) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int n = 0; n < kN; n += 2) {
            uint32_t b[4];
            ldsm_x4_trans(b, bt_address<kStride>(b_tile, kk * 16, n * 8, lane));
            mma<kDtype>(acc[n], a[kk], b[0], b[1]);
            mma<kDtype>(acc[n + 1], a[kk], b[2], b[3]);
        }
    }
}

// The C fragments of a 16 x 64 float32 tile (8 n8 tiles) rounded to the dtype as the A operand of 4 k16 steps.
template <int kDtype>
__device__ __forceinline__ void to_a(const float (&x)[8][4], uint32_t (&a)[4][4]) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        a[kk][0] = pack2<kDtype>(x[2 * kk][0], x[2 * kk][1]);
        a[kk][1] = pack2<kDtype>(x[2 * kk][2], x[2 * kk][3]);
        a[kk][2] = pack2<kDtype>(x[2 * kk + 1][0], x[2 * kk + 1][1]);
        a[kk][3] = pack2<kDtype>(x[2 * kk + 1][2], x[2 * kk + 1][3]);
    }
}

// ---- Global <-> shared ----

// Rows [row0, row0 + 64) of a [count][d] matrix into a [64][kStride] tile, zero past count and past d: 16-byte
// cp.async copies, issued only (the caller waits with cp_async_wait_all before the __syncthreads that precedes any
// read). d is a multiple of 16, so a chunk of 8 elements is wholly inside or outside a row.
template <int kD>
__device__ __forceinline__ void load_tile(uint16_t* tile, const uint16_t* src, int64_t row0, int64_t count, int64_t d) {
    constexpr int kChunks = kD / 8;  // 16-byte chunks per row
    const uint32_t base = ptx::shared_address(tile);
    static_assert(64 * kChunks % kThreads == 0, "whole rounds of chunks");
#pragma unroll
    for (int round = 0; round < 64 * kChunks / kThreads; ++round) {
        const int e = threadIdx.x + round * kThreads;
        const int r = e / kChunks, col = (e % kChunks) * 8;
        const bool in = row0 + r < count && col < d;
        cp_async16(base + 2u * static_cast<uint32_t>(r * Shape<kD>::kStride + col), in ? src + (row0 + r) * d + col : src,
                   in ? 16u : 0u);
    }
}

// The mask tile [query i0 + r][key j0 + c] (1 = allowed; 0 past rows or keys); returns whether this thread saw an
// allowed entry. mask_bh: the mask of this (b, h) (NULL: every key).
// A 16-byte aligned mask with 16-byte aligned rows (every contiguous [.., T, L] mask with L % 16 == 0) is copied in
// 16-key chunks by cp.async (zero-filled past the keys), waited for, and scanned from shared memory; any other mask
// (and none) byte by byte. Every thread of the block calls it (the aligned path synchronizes the block).
__device__ __forceinline__ bool load_mask(uint8_t* tile, const uint8_t* mask_bh, int64_t row_stride, int64_t rows,
                                          int64_t keys, int64_t i0, int64_t j0) {
    if (mask_bh != nullptr && (reinterpret_cast<uintptr_t>(mask_bh) & 15u) == 0 && (row_stride & 15) == 0) {
        static_assert(kBr * (kBc / 16) == 2 * kThreads && kMaskStride % 16 == 0, "two 16-byte chunks per thread");
        const uint32_t base = ptx::shared_address(tile);
#pragma unroll
        for (int round = 0; round < 2; ++round) {
            const int e = threadIdx.x + round * kThreads;
            const int r = e >> 2, col = (e & 3) * 16;
            const int64_t i = i0 + r, j = j0 + col;
            const int64_t n = i < rows ? (keys - j < 0 ? 0 : keys - j > 16 ? 16 : keys - j) : 0;
            cp_async16(base + static_cast<uint32_t>(r * kMaskStride + col), n > 0 ? mask_bh + i * row_stride + j : mask_bh,
                       static_cast<uint32_t>(n));
        }
        cp_async_wait_all();
        __syncthreads();
        const uint8_t* row = tile + (threadIdx.x >> 1) * kMaskStride + (threadIdx.x & 1) * 32;
        const uint4 x = *reinterpret_cast<const uint4*>(row), y = *reinterpret_cast<const uint4*>(row + 16);
        return (x.x | x.y | x.z | x.w | y.x | y.y | y.z | y.w) != 0u;
    }
    bool any = false;
    for (int e = threadIdx.x; e < kBr * kBc; e += kThreads) {
        const int r = e / kBc, c = e % kBc;
        const int64_t i = i0 + r, j = j0 + c;
        uint8_t ok = 0;
        if (i < rows && j < keys) ok = mask_bh == nullptr || mask_bh[i * row_stride + j] != 0;
        tile[r * kMaskStride + c] = ok;
        any |= ok != 0;
    }
    return any;
}

__device__ __forceinline__ const uint8_t* mask_of(const SoftcapFlashArgs& a, int64_t bh) {
    return a.allowed ? a.allowed + (bh / a.heads) * a.mask_batch_stride + (bh % a.heads) * a.mask_head_stride : nullptr;
}

// Where a query-tile block (forward, dQ) works: its (b * heads + h), its first row (query tiles latest first: a causal
// mask gives them the most keys), and that head's K, V and mask.
struct QueryTile {
    int64_t bh, i0;
    const uint16_t* k;
    const uint16_t* v;
    const uint8_t* mask;
};

__device__ __forceinline__ QueryTile query_tile(const SoftcapFlashArgs& a) {
    const int64_t tiles = (a.rows + kBr - 1) / kBr;
    const int64_t bh = blockIdx.x / tiles;
    const int64_t at = bh * a.keys * a.head_dim;
    return QueryTile{bh, (tiles - 1 - static_cast<int64_t>(blockIdx.x) % tiles) * kBr,
                     static_cast<const uint16_t*>(a.k) + at, static_cast<const uint16_t*>(a.v) + at, mask_of(a, bh)};
}

// Block-wide, once per key tile j0 of a query-tile block: the mask tile into ms and, unless none of its (row, key)
// pairs is allowed (false: the tile is skipped, nothing else loaded), the K and V tiles, all in shared memory on return.
template <int kD>
__device__ __forceinline__ bool stage_key_tile(const SoftcapFlashArgs& a, const QueryTile& t, int64_t j0, uint8_t* ms,
                                               uint16_t* ks, uint16_t* vs) {
    __syncthreads();  // the previous tile's K, V and mask reads are done
    const bool any = load_mask(ms, t.mask, a.mask_row_stride, a.rows, a.keys, t.i0, j0);
    if (!__syncthreads_or(any)) return false;
    load_tile<kD>(ks, t.k, j0, a.keys, a.head_dim);
    load_tile<kD>(vs, t.v, j0, a.keys, a.head_dim);
    cp_async_wait_all();
    __syncthreads();
    return true;
}

// Stores a 16 x kD float32 accumulator (rows row0 + g, + 8 of a [count][d] matrix) in the dtype, times `factor[half]`;
// `poison[half]` writes NaN instead.
template <int kDtype, int kD>
__device__ __forceinline__ void store_rows(void* dst, int64_t row0, int64_t count, int64_t d, const float (&acc)[kD / 8][4],
                                           const float (&factor)[2], const bool (&poison)[2], int lane) {
    const int g = lane >> 2, c = lane & 3;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int64_t row = row0 + g + half * 8;
        if (row >= count) continue;
#pragma unroll
        for (int n = 0; n < kD / 8; ++n) {
            const int col = n * 8 + 2 * c;
            if (col >= d) continue;
            const float x0 = poison[half] ? CUDART_NAN_F : acc[n][2 * half] * factor[half];
            const float x1 = poison[half] ? CUDART_NAN_F : acc[n][2 * half + 1] * factor[half];
            *reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(dst) + row * d + col) = pack2<kDtype>(x0, x1);
        }
    }
}

#endif  // SLOTH_FLASH_MMA

// ---- Forward ----

template <int kDtype, int kD>
__global__ void __launch_bounds__(kThreads) softcap_flash_forward_kernel(const SoftcapFlashArgs a, float c_scale,
                                                                          float cap_log2e) {
#ifdef SLOTH_FLASH_MMA
    using S = Shape<kD>;
    extern __shared__ __align__(16) unsigned char smem[];
    uint16_t* qs = reinterpret_cast<uint16_t*>(smem);
    uint16_t* ks = qs + 64 * S::kStride;
    uint16_t* vs = ks + 64 * S::kStride;
    uint8_t* ms = reinterpret_cast<uint8_t*>(vs + 64 * S::kStride);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const QueryTile tile = query_tile(a);
    const int64_t bh = tile.bh, i0 = tile.i0, d = a.head_dim;
    const uint32_t qa = ptx::shared_address(qs), ka = ptx::shared_address(ks), va = ptx::shared_address(vs);
    load_tile<kD>(qs, static_cast<const uint16_t*>(a.q) + bh * a.rows * d, i0, a.rows, d);

    float o[kD / 8][4];
#pragma unroll
    for (int n = 0; n < kD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m2[2] = {-CUDART_INF_F, -CUDART_INF_F};  // running max of z * log2(e) per row (g, g + 8)
    float l[2] = {0.0f, 0.0f};                      // this thread's part of the row sums
    for (int64_t j0 = 0; j0 < a.keys; j0 += kBc) {
        if (!stage_key_tile<kD>(a, tile, j0, ms, ks, vs)) continue;
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
        mma_ss<kDtype, S::kStride, kD / 16, 8>(s, qa, warp * 16, ka, lane);
        // Soft-cap and mask, in log2 units; the tile's row max.
        float mx[2] = {m2[0], m2[1]};
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int r = warp * 16 + g + (e >> 1) * 8, col = n * 8 + 2 * c + (e & 1);
                const float z = tanhf(s[n][e] * c_scale) * cap_log2e;
                s[n][e] = ms[r * kMaskStride + col] ? z : -CUDART_INF_F;
                mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
            }
        float base[2], alpha[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xFFFFFFFFu, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xFFFFFFFFu, mx[h], 2));
            base[h] = mx[h] == -CUDART_INF_F ? 0.0f : mx[h];  // a row with nothing allowed yet stays at 0
            alpha[h] = exp2f(m2[h] - base[h]);
            m2[h] = mx[h];
            l[h] *= alpha[h];
        }
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                s[n][e] = exp2f(s[n][e] - base[e >> 1]);
                l[e >> 1] += s[n][e];
            }
#pragma unroll
        for (int n = 0; n < kD / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[n][e] *= alpha[e >> 1];
        uint32_t p[4][4];
        to_a<kDtype>(s, p);
        mma_rs<kDtype, S::kStride, kD / 8>(o, p, va, lane);
    }
    cp_async_wait_all();  // a block whose key tiles were all skipped still has its own tiles' copies in flight
    float inv[2];
    bool poison[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        l[h] += __shfl_xor_sync(0xFFFFFFFFu, l[h], 1);
        l[h] += __shfl_xor_sync(0xFFFFFFFFu, l[h], 2);
        poison[h] = !(l[h] > 0.0f);
        inv[h] = poison[h] ? 0.0f : 1.0f / l[h];
        const int64_t row = i0 + warp * 16 + g + h * 8;
        if (c == 0 && row < a.rows)
            a.lse[bh * a.rows + row] = poison[h] ? -CUDART_INF_F : (m2[h] + log2f(l[h])) * kLn2;
    }
    store_rows<kDtype, kD>(a.out, bh * a.rows + i0 + warp * 16, bh * a.rows + a.rows, d, o, inv, poison, lane);
#else
    (void)a, (void)c_scale, (void)cap_log2e;
#endif
}

// ---- Backward ----

// delta[r] = sum_d grad_out[r, d] * out[r, d]: one warp per row (lanes sum strided columns in order, then a butterfly).
template <int kDtype>
__global__ void __launch_bounds__(kThreads) softcap_flash_delta_kernel(const SoftcapFlashArgs a) {
    const int lane = threadIdx.x & 31;
    const int64_t total = a.batch * a.heads * a.rows;
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * 4 + (threadIdx.x >> 5); r < total;
         r += static_cast<int64_t>(gridDim.x) * 4) {
        float sum = 0.0f;
        for (int64_t col = lane; col < a.head_dim; col += 32)
            sum = __fadd_rn(sum, __fmul_rn(load_f32<kDtype>(a.grad_out, r * a.head_dim + col),
                                           load_f32<kDtype>(a.out, r * a.head_dim + col)));
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) sum = __fadd_rn(sum, __shfl_xor_sync(0xFFFFFFFFu, sum, off));
        if (lane == 0) a.delta[r] = sum;
    }
}

// dK and/or dV for one (b, h, key tile): warp w owns keys j0 + 16 w .. + 15 (rows of the transposed products).
template <int kDtype, int kD, bool kDk, bool kDv>
__global__ void __launch_bounds__(kThreads) softcap_flash_dkdv_kernel(const SoftcapFlashArgs a, float c_scale,
                                                                       float cap_log2e) {
#ifdef SLOTH_FLASH_MMA
    using S = Shape<kD>;
    extern __shared__ __align__(16) unsigned char smem[];
    uint16_t* ks = reinterpret_cast<uint16_t*>(smem);
    uint16_t* vs = ks + 64 * S::kStride;  // used with kDk
    uint16_t* qs = vs + 64 * S::kStride;
    uint16_t* dos = qs + 64 * S::kStride;
    uint8_t* ms = reinterpret_cast<uint8_t*>(dos + 64 * S::kStride);  // [query][key]
    float* lse2 = reinterpret_cast<float*>(ms + S::kMaskBytes);       // lse * log2(e) of the query tile
    float* dl = lse2 + kBr;                                           // delta of the query tile
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int64_t tiles = (a.keys + kBc - 1) / kBc;
    const int64_t bh = blockIdx.x / tiles;
    const int64_t j0 = static_cast<int64_t>(blockIdx.x) % tiles * kBc;
    const int64_t d = a.head_dim;
    const uint16_t* q = static_cast<const uint16_t*>(a.q) + bh * a.rows * d;
    const uint16_t* dout = static_cast<const uint16_t*>(a.grad_out) + bh * a.rows * d;
    const float* lse = a.lse + bh * a.rows;
    const float* delta = a.delta + bh * a.rows;
    const uint8_t* mask_bh = mask_of(a, bh);
    const uint32_t ka = ptx::shared_address(ks), va = ptx::shared_address(vs), qa = ptx::shared_address(qs),
                   da = ptx::shared_address(dos);
    const float one[2] = {1.0f, 1.0f};

    // A row of this (b, h) without an allowed key makes its dV NaN, as on the eager path (its NaN probabilities reach
    // every key); its score gradients are 0 there (masked_fill's backward), so it adds nothing to dK (delta := 0 below,
    // every p of it is 0).
    bool empty = false;
    for (int64_t i = threadIdx.x; i < a.rows; i += kThreads) empty |= lse[i] == -CUDART_INF_F;
    const bool poisoned = __syncthreads_or(empty);

    load_tile<kD>(ks, static_cast<const uint16_t*>(a.k) + bh * a.keys * d, j0, a.keys, d);
    if (kDk) load_tile<kD>(vs, static_cast<const uint16_t*>(a.v) + bh * a.keys * d, j0, a.keys, d);
    float acc[kD / 8][4];
#pragma unroll
    for (int n = 0; n < kD / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float acc2[kDk && kDv ? kD / 8 : 1][4];  // dV when both are computed (acc is dK then)
#pragma unroll
    for (int n = 0; n < (kDk && kDv ? kD / 8 : 1); ++n) acc2[n][0] = acc2[n][1] = acc2[n][2] = acc2[n][3] = 0.0f;

    for (int64_t i0 = 0; i0 < a.rows && !(poisoned && !kDk); i0 += kBr) {
        __syncthreads();
        // The mask tile transposed to [query][key] order is the same bytes as load_mask's [row][key]: r = query.
        const bool any = load_mask(ms, mask_bh, a.mask_row_stride, a.rows, a.keys, i0, j0);
        if (!__syncthreads_or(any)) continue;
        load_tile<kD>(qs, q, i0, a.rows, d);
        load_tile<kD>(dos, dout, i0, a.rows, d);
        if (threadIdx.x < kBr) {
            const int64_t i = i0 + threadIdx.x;
            lse2[threadIdx.x] = i < a.rows ? lse[i] * kLog2e : 0.0f;
            dl[threadIdx.x] = i < a.rows && lse[i] != -CUDART_INF_F ? delta[i] : 0.0f;
        }
        cp_async_wait_all();
        __syncthreads();
        // S^T (16 keys x 64 queries) = K Q^T; then t, and P^T = exp2(z - lse2) (0 where masked).
        float t[8][4];
#pragma unroll
        for (int n = 0; n < 8; ++n) t[n][0] = t[n][1] = t[n][2] = t[n][3] = 0.0f;
        mma_ss<kDtype, S::kStride, kD / 16, 8>(t, ka, warp * 16, qa, lane);
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) t[n][e] = tanhf(t[n][e] * c_scale);
        auto probability = [&](int n, int e) {
            const int key = warp * 16 + g + (e >> 1) * 8, query = n * 8 + 2 * c + (e & 1);
            return ms[query * kMaskStride + key] ? exp2f(t[n][e] * cap_log2e - lse2[query]) : 0.0f;
        };
        if constexpr (kDv) {
            float p[8][4];
#pragma unroll
            for (int n = 0; n < 8; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) p[n][e] = probability(n, e);
            uint32_t pa[4][4];
            to_a<kDtype>(p, pa);
            if constexpr (kDk) mma_rs<kDtype, S::kStride, kD / 8>(acc2, pa, da, lane);
            else mma_rs<kDtype, S::kStride, kD / 8>(acc, pa, da, lane);
        }
        if constexpr (kDk) {
            // dP^T = V dO^T; G^T = P^T (dP^T - delta) (1 - t^2) scale, rounded; dK += G^T Q.
            float dp[8][4];
#pragma unroll
            for (int n = 0; n < 8; ++n) dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.0f;
            mma_ss<kDtype, S::kStride, kD / 16, 8>(dp, va, warp * 16, da, lane);
#pragma unroll
            for (int n = 0; n < 8; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int query = n * 8 + 2 * c + (e & 1);
                    dp[n][e] = probability(n, e) * (dp[n][e] - dl[query]) * (1.0f - t[n][e] * t[n][e]) * a.scale;
                }
            uint32_t ga[4][4];
            to_a<kDtype>(dp, ga);
            mma_rs<kDtype, S::kStride, kD / 8>(acc, ga, qa, lane);
        }
    }
    cp_async_wait_all();  // a block whose key tiles were all skipped still has its own tiles' copies in flight
    const bool clean[2] = {false, false}, poison[2] = {poisoned, poisoned};
    const int64_t row0 = bh * a.keys + j0 + warp * 16, end = bh * a.keys + a.keys;
    if (kDk) store_rows<kDtype, kD>(a.grad_k, row0, end, d, acc, one, clean, lane);
    else store_rows<kDtype, kD>(a.grad_v, row0, end, d, acc, one, poison, lane);
    if constexpr (kDk && kDv) store_rows<kDtype, kD>(a.grad_v, row0, end, d, acc2, one, poison, lane);
#else
    (void)a, (void)c_scale, (void)cap_log2e;
#endif
}

// dQ for one (b, h, query tile): warp w owns rows i0 + 16 w .. + 15; loops over the key tiles.
template <int kDtype, int kD>
__global__ void __launch_bounds__(kThreads) softcap_flash_dq_kernel(const SoftcapFlashArgs a, float c_scale,
                                                                     float cap_log2e) {
#ifdef SLOTH_FLASH_MMA
    using S = Shape<kD>;
    extern __shared__ __align__(16) unsigned char smem[];
    uint16_t* qs = reinterpret_cast<uint16_t*>(smem);
    uint16_t* dos = qs + 64 * S::kStride;
    uint16_t* ks = dos + 64 * S::kStride;
    uint16_t* vs = ks + 64 * S::kStride;
    uint8_t* ms = reinterpret_cast<uint8_t*>(vs + 64 * S::kStride);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const QueryTile tile = query_tile(a);
    const int64_t bh = tile.bh, i0 = tile.i0, d = a.head_dim;
    const uint32_t qa = ptx::shared_address(qs), da = ptx::shared_address(dos), ka = ptx::shared_address(ks),
                   va = ptx::shared_address(vs);
    load_tile<kD>(qs, static_cast<const uint16_t*>(a.q) + bh * a.rows * d, i0, a.rows, d);
    load_tile<kD>(dos, static_cast<const uint16_t*>(a.grad_out) + bh * a.rows * d, i0, a.rows, d);
    // A row without an allowed key (lse = -inf, delta NaN) gets dQ = 0, as on the eager path: its p are all 0 (masked)
    // and with delta := 0 so are its g.
    float lse2[2], dl[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int64_t row = i0 + warp * 16 + g + h * 8;
        const float lse = row < a.rows ? a.lse[bh * a.rows + row] : 0.0f;
        const bool empty = lse == -CUDART_INF_F;
        lse2[h] = empty ? 0.0f : lse * kLog2e;
        dl[h] = row < a.rows && !empty ? a.delta[bh * a.rows + row] : 0.0f;
    }
    float acc[kD / 8][4];
#pragma unroll
    for (int n = 0; n < kD / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    for (int64_t j0 = 0; j0 < a.keys; j0 += kBc) {
        if (!stage_key_tile<kD>(a, tile, j0, ms, ks, vs)) continue;
        float t[8][4], dp[8][4];
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) t[n][e] = dp[n][e] = 0.0f;
        mma_ss<kDtype, S::kStride, kD / 16, 8>(t, qa, warp * 16, ka, lane);
        mma_ss<kDtype, S::kStride, kD / 16, 8>(dp, da, warp * 16, va, lane);
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int r = warp * 16 + g + (e >> 1) * 8, col = n * 8 + 2 * c + (e & 1);
                const float tt = tanhf(t[n][e] * c_scale);
                const float p = ms[r * kMaskStride + col] ? exp2f(tt * cap_log2e - lse2[e >> 1]) : 0.0f;
                dp[n][e] = p * (dp[n][e] - dl[e >> 1]) * (1.0f - tt * tt) * a.scale;
            }
        uint32_t ga[4][4];
        to_a<kDtype>(dp, ga);
        mma_rs<kDtype, S::kStride, kD / 8>(acc, ga, ka, lane);
    }
    cp_async_wait_all();  // a block whose key tiles were all skipped still has its own tiles' copies in flight
    const float one[2] = {1.0f, 1.0f};
    const bool clean[2] = {false, false};
    store_rows<kDtype, kD>(a.grad_q, bh * a.rows + i0 + warp * 16, bh * a.rows + a.rows, d, acc, one, clean, lane);
#else
    (void)a, (void)c_scale, (void)cap_log2e;
#endif
}

// ---- Launch ----

int bucket(int64_t head_dim) { return head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : 256; }

int backward_bytes(int kd) {
    return kd == 64 ? Shape<64>::kBackwardBytes : kd == 128 ? Shape<128>::kBackwardBytes : Shape<256>::kBackwardBytes;
}

// Whether this device runs the kernels for dtype and head_dim, and if not why (for the message).
sloth_status check_supported(const char* fn, sloth_dtype dtype, int64_t head_dim, int32_t device, bool& ok,
                             const char*& why) {
    ok = false;
    why = nullptr;
    if (dtype != SLOTH_DTYPE_BF16 && dtype != SLOTH_DTYPE_F16) {
        why = "the CUDA kernels take bf16 and f16 only";
        return SLOTH_OK;
    }
    if (head_dim < 16 || head_dim % 16 != 0 || head_dim > SLOTH_SOFTCAP_FLASH_MAX_HEAD_DIM) {
        why = "the CUDA kernels take a head_dim that is a multiple of 16, up to 256";
        return SLOTH_OK;
    }
    int major = 0, optin = 0;
    SLOTH_CUDA_CHECK(fn, cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    SLOTH_CUDA_CHECK(fn, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    cudaFuncAttributes attributes{};
    SLOTH_CUDA_CHECK(fn, cudaFuncGetAttributes(&attributes, softcap_flash_forward_kernel<SLOTH_DTYPE_BF16, 64>));
    if (major < 8 || attributes.ptxVersion < 80) {
        why = "the tensor-core kernels need sm_80 or newer (and code built for it)";
        return SLOTH_OK;
    }
    if (optin < backward_bytes(bucket(head_dim))) {
        why = "the device has too little shared memory per block for this head_dim";
        return SLOTH_OK;
    }
    ok = true;
    return SLOTH_OK;
}

sloth_status require_supported(const char* fn, const SoftcapFlashArgs& a, int32_t device) {
    bool ok = false;
    const char* why = nullptr;
    SLOTH_CHECK(check_supported(fn, a.dtype, a.head_dim, device, ok, why));
    if (!ok)
        return fail(SLOTH_ERROR_UNSUPPORTED, "%s: unsupported on CUDA device %d (dtype %d, head_dim %lld): %s", fn,
                    device, static_cast<int>(a.dtype), static_cast<long long>(a.head_dim), why);
    return SLOTH_OK;
}

// kernel<<<blocks, kThreads, bytes, s>>>(args...) with the dynamic shared memory limit raised first.
template <class Kernel, class... Args>
sloth_status launch(const char* fn, const char* name, Kernel kernel, int64_t blocks, int bytes, cudaStream_t s,
                    Args... args) {
    if (blocks == 0) return SLOTH_OK;
    SLOTH_CHECK(require_one_launch(fn, blocks));
    SLOTH_CUDA_CHECK(fn, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    kernel<<<static_cast<unsigned>(blocks), kThreads, static_cast<size_t>(bytes), s>>>(args...);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return cuda_fail(fn, name, e);
    return SLOTH_OK;
}

template <int kDtype, int kD>
sloth_status forward(const char* fn, const SoftcapFlashArgs& a, cudaStream_t s) {
    const int64_t blocks = a.batch * a.heads * ((a.rows + kBr - 1) / kBr);
    return launch(fn, "launch of softcap_flash_forward_kernel", softcap_flash_forward_kernel<kDtype, kD>, blocks,
                  Shape<kD>::kForwardBytes, s, a, a.scale / a.cap, a.cap * kLog2e);
}

template <int kDtype, int kD>
sloth_status backward(const char* fn, const SoftcapFlashArgs& a, cudaStream_t s) {
    const float c_scale = a.scale / a.cap, cap_log2e = a.cap * kLog2e;
    const int64_t bhs = a.batch * a.heads;
    if (a.rows > 0) {
        softcap_flash_delta_kernel<kDtype><<<grid_for(bhs * a.rows, 4), kThreads, 0, s>>>(a);
        SLOTH_LAUNCH_CHECK(fn, "softcap_flash_delta_kernel");
    }
    const int64_t key_blocks = bhs * ((a.keys + kBc - 1) / kBc);
    constexpr int kBytes = Shape<kD>::kBackwardBytes;
    if constexpr (kD <= 64) {
        SLOTH_CHECK(launch(fn, "launch of softcap_flash_dkdv_kernel", softcap_flash_dkdv_kernel<kDtype, kD, true, true>,
                           key_blocks, kBytes, s, a, c_scale, cap_log2e));
    } else {
        SLOTH_CHECK(launch(fn, "launch of softcap_flash_dkdv_kernel", softcap_flash_dkdv_kernel<kDtype, kD, false, true>,
                           key_blocks, kBytes, s, a, c_scale, cap_log2e));
        SLOTH_CHECK(launch(fn, "launch of softcap_flash_dkdv_kernel", softcap_flash_dkdv_kernel<kDtype, kD, true, false>,
                           key_blocks, kBytes, s, a, c_scale, cap_log2e));
    }
    const int64_t row_blocks = bhs * ((a.rows + kBr - 1) / kBr);
    return launch(fn, "launch of softcap_flash_dq_kernel", softcap_flash_dq_kernel<kDtype, kD>, row_blocks, kBytes, s, a,
                  c_scale, cap_log2e);
}

// Runs body<kDtype, kD>(fn, a, s) for the 16-bit dtype and the head_dim bucket (the exports validated the rest).
template <template <int, int> class Body>
sloth_status dispatch(const char* fn, const SoftcapFlashArgs& a, int32_t device, void* stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CHECK(require_supported(fn, a, device));
    const auto s = static_cast<cudaStream_t>(stream);
    const int kd = bucket(a.head_dim);
    if (a.dtype == SLOTH_DTYPE_BF16) {
        if (kd == 64) return Body<SLOTH_DTYPE_BF16, 64>::run(fn, a, s);
        if (kd == 128) return Body<SLOTH_DTYPE_BF16, 128>::run(fn, a, s);
        return Body<SLOTH_DTYPE_BF16, 256>::run(fn, a, s);
    }
    if (kd == 64) return Body<SLOTH_DTYPE_F16, 64>::run(fn, a, s);
    if (kd == 128) return Body<SLOTH_DTYPE_F16, 128>::run(fn, a, s);
    return Body<SLOTH_DTYPE_F16, 256>::run(fn, a, s);
}

template <int kDtype, int kD>
struct Forward {
    static sloth_status run(const char* fn, const SoftcapFlashArgs& a, cudaStream_t s) { return forward<kDtype, kD>(fn, a, s); }
};

template <int kDtype, int kD>
struct Backward {
    static sloth_status run(const char* fn, const SoftcapFlashArgs& a, cudaStream_t s) { return backward<kDtype, kD>(fn, a, s); }
};

}  // namespace

sloth_status softcap_flash_forward(const char* fn, const SoftcapFlashArgs& a, int32_t device, void* stream) {
    return dispatch<Forward>(fn, a, device, stream);
}

sloth_status softcap_flash_backward(const char* fn, const SoftcapFlashArgs& a, int32_t device, void* stream) {
    return dispatch<Backward>(fn, a, device, stream);
}

sloth_status softcap_flash_supported(const char* fn, sloth_dtype dtype, int64_t head_dim, int32_t device, int32_t* out) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    bool ok = false;
    const char* why = nullptr;
    SLOTH_CHECK(check_supported(fn, dtype, head_dim, device, ok, why));
    *out = ok ? 1 : 0;
    return SLOTH_OK;
}

}  // namespace sloth::cuda
