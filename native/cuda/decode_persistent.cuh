// The persistent decode step (sloth_decode_fusion SLOTH_DECODE_FUSE_PERSISTENT): the whole decoder of one step, from the
// embedding to the final norm, as ONE kernel whose blocks stay resident and pass grid-wide barriers between phases,
// instead of ~9 launches per layer. The LM head follows as the dense GEMV's own launch (it is bandwidth-bound: 0.5 GB
// of bf16 weights at batch 1, where a launch costs nothing next to it).
//
// Why it was built: at batch 1 every kernel of the step is bound by latency, not bandwidth. A Llama-3.2-1B step is 148
// launches at ~8.6 us each on the H100 (783 tokens/s against a ~3,261 weight-bandwidth bound; round 17), and rounds
// 7-17 of per-kernel work moved it by a few percent. The hope: a phase boundary as a grid barrier (~1 us) instead of a
// kernel boundary.
// What it measured (H100, bench/results/2026-12-07-round18): SLOWER than the launches, so it is a switch, off by
// default. Batch 1, 256 new tokens: Llama-3.2-1B 1.83 ms a step against the launches' 1.19, Qwen3-1.7B 3.02 against
// 1.83. (The first version also asked L2 to prefetch the next phases' weights: 2.00 and 3.19 ms, slower, so it went.)
// With every phase's work
// left out, the 113 barriers alone take 0.50 ms (4.4 us each: the last block's arrival, reset and release are four
// dependent L2 round trips), and each phase is slower than its kernel: a block walks its virtual blocks one after the
// other, each paying a whole load latency, where the kernel had all of them resident at once (gate/up: 23 us a layer).
// What would change that: a barrier of one fire-and-forget arrival on a counter that only grows (red.release, polled
// with ld.acquire), per-dependency flags instead of whole-grid barriers, and GEMV phases that keep the next virtual
// block's weights in flight (or in shared memory, by bulk copies) while computing the current one.
//
// Phases per layer, each a loop of the grid's blocks over the "virtual blocks" of the kernel it replaces (the same
// device code: nf4_gemv_kernels.cuh's member_block / gated_block, decode_ops.cuh's qk_prep_head,
// decode_attention_kernels.cuh's attention_block / combine_block), so every value has the bits of the launch path:
//   1. the residual add + RMSNorm (every block normalizes the row into shared memory itself; block 0 writes the new
//      stream) and the q/k/v GEMVs;  2. q/k norms, RoPE, the cache write;  3. the attention's partials;
//   4. their merge;  5. the o projection (its input staged in shared memory);  6. the residual add + pre-MLP norm and
//   the gated gate/up GEMV;  7. the down projection.
// Then the final norm (block 0, into y for the LM head) and the length increment (block 0, after every block has passed
// the last phase that reads the length).
//
// Memory: what one block writes, another reads after the next barrier. The barrier's release/acquire at GPU scope
// makes those writes visible to ordinary loads; nothing written in the kernel is read through the read-only path
// (the attention's cache rows come through ld.global.cg: attention_block's kCoherent). The grid is at most what stays
// co-resident (the occupancy query), launched cooperatively, so a barrier never waits for a block that cannot run.
// Covered: batch 1, bf16/f16, head_dim 64 or 128, at most 8 query heads per KV head, every projection NF4 with shared
// block sizes, no bias, no unmerged LoRA; anything else takes the launch path (decode_persistent_prepare says why).
#pragma once

#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "decode_attention_kernels.cuh"
#include "decode_ops.cuh"
#include "decode_persistent_parts.h"
#include "nf4_gemv_kernels.cuh"
#include "ptx.cuh"

#include <vector>

namespace sloth::cuda::persistent {
namespace {

constexpr int kThreads = nf4::kThreads;
static_assert(kThreads >= attn::kThreads && kThreads >= kQkPrepThreads, "the phases' kernels fit in one block");
constexpr int kMaxBlocksPerSm = 4;

// One layer as the kernel reads it (a device table built once by prepare()).
struct Layer {
    nf4::Group qkv, o, gate_up, down;
    int64_t qkv_blocks, o_blocks, gate_up_blocks, down_blocks;
    int32_t gate_up_slices;
    QkPrepArgs prep;
    DecodeAttentionArgs att;
    int64_t chunk, splits;
    const void* norm[4];  // input, post-attention, pre-MLP, post-MLP
    void* act;            // the gated GEMV's output, the down projection's input
};
static_assert(sizeof(Layer) <= kPersistentLayerBytes, "the decoder's workspace reserves kPersistentLayerBytes a layer");

// Every block waits here until every block has arrived; what any block wrote before is then visible to every block's
// ordinary loads. Thread 0 of each block: a fence (its block's writes, ordered before it by the block barrier),
// one arrival; the last to arrive resets the count and publishes the next generation (release), the others spin on
// it (acquire). The count returns to zero at every barrier, so every launch and graph replay starts from zero.
__device__ __forceinline__ void grid_barrier(unsigned* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned* const count = bar;
        unsigned* const gen = bar + 1;
        unsigned g;
        asm volatile("ld.relaxed.gpu.u32 %0, [%1];" : "=r"(g) : "l"(gen) : "memory");
        __threadfence();
        if (atomicAdd(count, 1u) == gridDim.x - 1) {
            atomicExch(count, 0u);
            __threadfence();
            asm volatile("st.release.gpu.u32 [%0], %1;" ::"l"(gen), "r"(g + 1u) : "memory");
        } else {
            unsigned now;
            do {
                asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(now) : "l"(gen) : "memory");
            } while (now == g);
        }
    }
    __syncthreads();
}

// bytes of activations at src (written by other blocks) into the block's shared memory, through L2.
__device__ __forceinline__ void stage(const void* src, int64_t bytes, unsigned char* s_x) {
    for (int64_t i = static_cast<int64_t>(threadIdx.x) * 16; i < bytes; i += kThreads * 16)
        *reinterpret_cast<uint4*>(s_x + i) = ptx::load_l2_v4(static_cast<const char*>(src) + i);
    __syncthreads();
}

// f(v) for the virtual blocks v of a phase that are this block's, with a block barrier before each (the phases'
// bodies reuse shared memory).
template <class F>
__device__ __forceinline__ void for_blocks(int64_t n, F&& f) {
    for (int64_t v = blockIdx.x; v < n; v += gridDim.x) {
        __syncthreads();
        f(v);
    }
}

template <int kDtype, int kBatch, int kMaxG, int kP>
__global__ void __launch_bounds__(kThreads, 2) step_kernel(PersistentStepArgs a) {
    __shared__ __align__(256) float s_nf4[2][nf4::kNf4TableStride];
    __shared__ float s_map[2][256];
    __shared__ float s_part[nf4::kWarps * kBatch];
    __shared__ float s_scratch[nf4::kWarps];
    __shared__ float s_att[attn::shared_floats(kMaxG)];
    __shared__ float s_red[kMaxG][attn::kWarps];
    __shared__ float s_max[kMaxG];
    __shared__ int s_last;
    __shared__ float s_w[attn::kCombineMax];
    __shared__ float s_red32[32];
    __shared__ float s_head[kDecodeMaxHeadDim];
    extern __shared__ __align__(16) unsigned char s_x[];  // [kBatch, widest input] in the dtype
    constexpr int kSize = kDtype == SLOTH_DTYPE_F32 ? 4 : 2;
    const Layer* const layers = static_cast<const Layer*>(a.table);
    const nf4::StagedX<kDtype> x_hidden{s_x, a.hidden};

    for (int64_t b = blockIdx.x; b < kBatch; b += gridDim.x)
        embed_row<kDtype>(a.ids, a.embed, a.hidden, a.vocab, a.embed_scale, a.h, b);
    grid_barrier(a.barrier);

    void* h = a.h;
    void* h_other = a.h2;
    const void* delta = nullptr;
    const void* delta_norm = nullptr;
    // The residual add (with a delta) and the norm into s_x; block 0 writes the new stream into the other buffer.
    auto norm_into_smem = [&](const void* weight) {
        const nf4::GroupNorm n{h, delta, delta_norm, weight, h_other, a.y, a.eps, a.unit_offset};
        nf4::norm_prologue<kDtype, kBatch>(nf4::NormValues<kDtype>{n, a.hidden}, s_x, s_scratch);
        if (delta) {
            void* t = h;
            h = h_other;
            h_other = t;
        }
    };
    // A one-member GEMV whose input x (a [kBatch, g.k] row written by other blocks) is staged in shared memory first.
    auto staged_gemv = [&](const nf4::Group& g, int64_t blocks, const void* x) {
        stage(x, kBatch * g.k * kSize, s_x);
        const nf4::StagedX<kDtype> xs{s_x, g.k};
        for_blocks(blocks, [&](int64_t v) { nf4::member_block<kDtype, kBatch>(g, g.member[0], v, s_nf4[0], s_map[0], s_part, xs, [] {}); });
    };
    for (int64_t l = 0; l < a.layers; ++l) {
        const Layer& L = layers[l];
        // 1. norm + q/k/v
        if (!(a.omitted & SLOTH_DECODE_PART_NORM)) norm_into_smem(L.norm[0]);
        for_blocks(a.omitted & SLOTH_DECODE_PART_QKV ? 0 : L.qkv_blocks, [&](int64_t v) {
            const nf4::GroupMember d = nf4::member_of(L.qkv, v);
            nf4::member_block<kDtype, kBatch>(L.qkv, d, v - d.first_block, s_nf4[0], s_map[0], s_part, x_hidden, [] {});
        });
        grid_barrier(a.barrier);
        // 2. q/k preparation and the cache write
        const int64_t heads = L.prep.heads + 2 * L.prep.kv_heads;
        for_blocks(a.omitted & SLOTH_DECODE_PART_QK_PREP ? 0 : kBatch * heads, [&](int64_t v) {
            qk_prep_head<kDtype>(L.prep, v / heads, v % heads, qk_prep_preload<kDtype>(L.prep, v / heads, v % heads), s_head, s_scratch);
        });
        grid_barrier(a.barrier);
        // 3. the attention's partials: split-major, so the splits in use come first
        const int64_t rows = kBatch * L.att.kv_heads;
        const bool attend = !(a.omitted & SLOTH_DECODE_PART_ATTENTION);
        // The launch path's walk: on tensor cores where these kernels are compiled for sm_80+ (mma_compiled() on the
        // host, which sized L.chunk and L.splits for it), else the sub-warp walk.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
        constexpr int kWalk = kP;
#else
        constexpr int kWalk = attn::kMmaKeys;
#endif
        for_blocks(attend ? rows * L.splits : 0, [&](int64_t v) {
            attn::attention_block<kDtype, kMaxG, 8 / kP, kWalk, true>(L.att, L.chunk, L.splits, v % rows, v / rows, s_att,
                                                                       s_red, s_max, &s_last);
        });
        grid_barrier(a.barrier);
        // 4. their merge
        for_blocks(attend ? kBatch * L.att.heads : 0, [&](int64_t v) { attn::combine_block<kDtype>(L.att, L.chunk, L.splits, v, s_w, s_red32); });
        grid_barrier(a.barrier);
        // 5. o
        if (!(a.omitted & SLOTH_DECODE_PART_O)) staged_gemv(L.o, L.o_blocks, a.attn);
        grid_barrier(a.barrier);
        // 6. norm + gate/up and the gated activation
        delta = a.o;
        delta_norm = L.norm[1];
        if (!(a.omitted & SLOTH_DECODE_PART_NORM)) norm_into_smem(L.norm[2]);
        for_blocks(a.omitted & SLOTH_DECODE_PART_GATE_UP ? 0 : L.gate_up_blocks, [&](int64_t v) {
            switch (L.gate_up_slices) {  // uniform
                case 1: nf4::gated_block<kDtype, kBatch, 1>(L.gate_up, a.activation, L.act, v, s_nf4, s_map, s_part, x_hidden, [] {}); break;
                case 2: nf4::gated_block<kDtype, kBatch, 2>(L.gate_up, a.activation, L.act, v, s_nf4, s_map, s_part, x_hidden, [] {}); break;
                default: nf4::gated_block<kDtype, kBatch, 4>(L.gate_up, a.activation, L.act, v, s_nf4, s_map, s_part, x_hidden, [] {}); break;
            }
        });
        grid_barrier(a.barrier);
        // 7. down
        if (!(a.omitted & SLOTH_DECODE_PART_DOWN)) staged_gemv(L.down, L.down_blocks, L.act);
        grid_barrier(a.barrier);
        delta = a.o;
        delta_norm = L.norm[3];
    }
    if (blockIdx.x == 0) {  // the final norm into y (the LM head's input) and the length increment
        norm_into_smem(a.final_norm);
        if (threadIdx.x == 0) *a.length += 1;
    }
}

// The widest input a phase stages in shared memory: [batch, max(hidden, heads * head_dim, intermediate)].
int64_t smem_bytes(const PersistentStepArgs& a) {
    int64_t k = a.hidden;
    for (int64_t l = 0; l < a.layers; ++l) {
        const PersistentLayerArgs& L = a.layer[l];
        k = L.o.k > k ? L.o.k : k;
        k = L.down.k > k ? L.down.k : k;
    }
    return a.batch * k * dtype_size(a.dtype);
}

}  // namespace

// Builds the device table of the layers (copied on the stream, waited for) and the grid: the co-resident blocks, at
// most kMaxBlocksPerSm per SM. The shape checks are the dispatcher's (decode_persistent.cu).
template <int kDtype, int kMaxG, int kP>
sloth_status persistent_prepare(const char* fn, const PersistentStepArgs& a, int32_t device, void* stream, int32_t* blocks) {
    std::vector<Layer> table(static_cast<size_t>(a.layers));
    const bool tensor_cores = mma_compiled();  // the attention phase walks as the launch path would (see step_kernel)
    for (int64_t l = 0; l < a.layers; ++l) {
        const PersistentLayerArgs& src = a.layer[l];
        Layer& L = table[static_cast<size_t>(l)];
        L.qkv = nf4::group_of(src.qkv, &L.qkv_blocks);
        L.o = nf4::group_of(src.o, &L.o_blocks);
        L.down = nf4::group_of(src.down, &L.down_blocks);
        int64_t unused = 0;
        L.gate_up = nf4::group_of(src.gate_up, &unused);
        L.gate_up_slices = L.gate_up.member[0].slices;
        L.gate_up_blocks = ceil_div(src.gate_up.member[0].m, static_cast<int64_t>(nf4::kWarps / L.gate_up_slices / 2));
        L.act = src.gate_up.gated_out;
        L.prep = src.prep;
        L.att = src.attention;
        L.chunk = decode_chunk(src.attention.batch, src.attention.max_length, tensor_cores);
        L.splits = decode_splits(src.attention.batch, src.attention.max_length, tensor_cores);
        for (int i = 0; i < 4; ++i) L.norm[i] = src.norm[i];
    }
    const auto s = static_cast<cudaStream_t>(stream);
    SLOTH_CUDA_CHECK(fn, cudaMemcpyAsync(a.table, table.data(), table.size() * sizeof(Layer), cudaMemcpyHostToDevice, s));
    SLOTH_CUDA_CHECK(fn, cudaStreamSynchronize(s));  // the host table goes when this returns
    const auto k = step_kernel<kDtype, 1, kMaxG, kP>;
    const int64_t smem = smem_bytes(a);
    SLOTH_CUDA_CHECK(fn, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    int per_sm = 0, sms = 0;
    SLOTH_CUDA_CHECK(fn, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, kThreads, static_cast<size_t>(smem)));
    SLOTH_CUDA_CHECK(fn, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    if (per_sm < 1)
        return fail(SLOTH_ERROR_UNSUPPORTED, "%s: the persistent step does not fit on one SM (%lld bytes of staged input)",
                    fn, static_cast<long long>(smem));
    *blocks = sms * (per_sm < kMaxBlocksPerSm ? per_sm : kMaxBlocksPerSm);
    return SLOTH_OK;
}

// One step: the kernel, launched cooperatively (every block co-resident, or the launch fails).
template <int kDtype, int kMaxG, int kP>
sloth_status persistent_step(const char* fn, const PersistentStepArgs& a, int32_t blocks, void* stream) {
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeCooperative;
    attribute[0].val.cooperative = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(static_cast<unsigned>(blocks));
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = static_cast<size_t>(smem_bytes(a));
    config.stream = static_cast<cudaStream_t>(stream);
    config.attrs = attribute;
    config.numAttrs = 1;
    SLOTH_KERNEL_LAUNCH(fn, "persistent step_kernel", cudaLaunchKernelEx(&config, step_kernel<kDtype, 1, kMaxG, kP>, a));
    return SLOTH_OK;
}

}  // namespace sloth::cuda::persistent

// Explicit instantiation of one (dtype, group bound, keys per warp) triple, inside namespace sloth::cuda::persistent.
#define SLOTH_PERSISTENT_INSTANTIATE(dtype, max_group, keys)                                                              \
    template sloth_status persistent_prepare<dtype, max_group, keys>(const char*, const PersistentStepArgs&, int32_t,   \
                                                                       void*, int32_t*);                                \
    template sloth_status persistent_step<dtype, max_group, keys>(const char*, const PersistentStepArgs&, int32_t, void*);
