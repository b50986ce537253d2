// The decoding engine's element-wise and row-wise kernels (CPU twins: cpu/decode_ops_cpu.cpp): embedding gather,
// q/k preparation (bias, per-head RMSNorm, RoPE, cache write), residual add + RMSNorm (Gemma's sandwich post-norm
// fused in), gated activation over strided rows, bias add, logits conversion and the length increment. Every
// per-step value (ids, positions, the cache length) is read from device memory, so a captured graph replays
// correctly. All are small next to the GEMVs: one block per row (or per head), float32 arithmetic with the
// roundings of the reference.
#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "decode_norm.cuh"
#include "decode_ops.cuh"
#include "gate_activation.cuh"

namespace sloth::cuda {
namespace {

constexpr int kRowThreads = 256;

template <int kDtype>
__global__ void embed_kernel(const int64_t* ids, const void* table, int64_t hidden, int64_t vocab, float scale, void* out) {
    grid_dependency_wait();
    allow_dependent_launch();
    embed_row<kDtype>(ids, table, hidden, vocab, scale, out, blockIdx.x);
}

template <int kDtype>
__global__ void __launch_bounds__(kQkPrepThreads) qk_prep_kernel(QkPrepArgs a) {
    launch_dependents_early();
    __shared__ float v[kDecodeMaxHeadDim];
    __shared__ float scratch[kQkPrepThreads / 32];
    // Before the wait: nothing the step's kernels write (the length and positions change between steps only, and
    // the previous step's increment has completed by the time this one starts: the step's embedding allows its
    // dependents to launch only after its own wait, whatever kEarlyDependentLaunch says). With the residual norm's weights below, about +10% at batch 1
    // on Qwen3-1.7B (bench/results/2026-12-07-round30, by difference).
    const QkPrepPre pre = qk_prep_preload<kDtype>(a, blockIdx.x, blockIdx.y);
    grid_dependency_wait();
    launch_dependents_after_wait();
    qk_prep_head<kDtype>(a, blockIdx.x, blockIdx.y, pre, v, scratch);
}

template <int kDtype>
__global__ void __launch_bounds__(kRowThreads) residual_norm_kernel(ResidualNormArgs a) {
    launch_dependents_early();
    __shared__ float scratch[kRowThreads / 32];
    grid_dependency_wait();
    launch_dependents_after_wait();
    const int64_t base = static_cast<int64_t>(blockIdx.x) * a.cols;
    float drstd = 0.0f;
    if (a.delta && a.delta_norm) {
        float ss = 0.0f;
        for (int64_t j = threadIdx.x; j < a.cols; j += blockDim.x) {
            const float d = load_f32<kDtype>(a.delta, base + j);
            ss = __fadd_rn(ss, __fmul_rn(d, d));
        }
        drstd = rstd_from(block_sum(ss, scratch), a.cols, a.eps);
    }
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < a.cols; j += blockDim.x) {
        float h = load_f32<kDtype>(a.h, base + j);
        if (a.delta) {
            float d = load_f32<kDtype>(a.delta, base + j);
            if (a.delta_norm) d = norm_value<kDtype>(d, drstd, load_f32<kDtype>(a.delta_norm, j), a.unit_offset);
            h = round_to<kDtype>(__fadd_rn(h, d));
            store_f32<kDtype>(a.h, base + j, h);  // read back below by this same thread only
        }
        ss = __fadd_rn(ss, __fmul_rn(h, h));
    }
    const float rstd = rstd_from(block_sum(ss, scratch), a.cols, a.eps);
    for (int64_t j = threadIdx.x; j < a.cols; j += blockDim.x)
        store_f32<kDtype>(a.y, base + j,
                          norm_value<kDtype>(load_f32<kDtype>(a.h, base + j), rstd, load_f32<kDtype>(a.weight, j), a.unit_offset));
}

// The same computation with the row held in registers (kPer values per thread, element j = threadIdx.x + 256 i, the
// order residual_norm_kernel sums in, so the two give the same bits): every load is issued at once instead of three
// dependent passes over global memory (9 us per call at batch 1 on the H100 before; the decoder calls it twice per
// layer).
template <int kDtype, int kPer>
__global__ void __launch_bounds__(kRowThreads) residual_norm_reg_kernel(ResidualNormArgs a) {
    launch_dependents_early();
    __shared__ float scratch[kRowThreads / 32];
    const int64_t base = static_cast<int64_t>(blockIdx.x) * a.cols;
    float h[kPer], d[kPer], w[kPer], dw[kPer];
    // The norm weights are parameters: loaded before the wait, off the launch's dependent path (after the sums they
    // were one more round trip to L2).
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        const int64_t j = threadIdx.x + static_cast<int64_t>(kRowThreads) * i;
        w[i] = j < a.cols ? load_f32<kDtype>(a.weight, j) : 0.0f;
        dw[i] = a.delta_norm && j < a.cols ? load_f32<kDtype>(a.delta_norm, j) : 0.0f;
    }
    grid_dependency_wait();
    launch_dependents_after_wait();
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        const int64_t j = threadIdx.x + static_cast<int64_t>(kRowThreads) * i;
        h[i] = j < a.cols ? load_f32<kDtype>(a.h, base + j) : 0.0f;
        d[i] = a.delta && j < a.cols ? load_f32<kDtype>(a.delta, base + j) : 0.0f;
    }
    if (a.delta) {
        if (a.delta_norm) {
            float ss = 0.0f;
#pragma unroll
            for (int i = 0; i < kPer; ++i)
                if (threadIdx.x + static_cast<int64_t>(kRowThreads) * i < a.cols) ss = __fadd_rn(ss, __fmul_rn(d[i], d[i]));
            const float drstd = rstd_from(block_sum(ss, scratch), a.cols, a.eps);
#pragma unroll
            for (int i = 0; i < kPer; ++i) {
                const int64_t j = threadIdx.x + static_cast<int64_t>(kRowThreads) * i;
                if (j < a.cols) d[i] = norm_value<kDtype>(d[i], drstd, dw[i], a.unit_offset);
            }
        }
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
            const int64_t j = threadIdx.x + static_cast<int64_t>(kRowThreads) * i;
            if (j >= a.cols) continue;
            h[i] = round_to<kDtype>(__fadd_rn(h[i], d[i]));
            store_f32<kDtype>(a.h, base + j, h[i]);
        }
    }
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i)
        if (threadIdx.x + static_cast<int64_t>(kRowThreads) * i < a.cols) ss = __fadd_rn(ss, __fmul_rn(h[i], h[i]));
    const float rstd = rstd_from(block_sum(ss, scratch), a.cols, a.eps);
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        const int64_t j = threadIdx.x + static_cast<int64_t>(kRowThreads) * i;
        if (j < a.cols) store_f32<kDtype>(a.y, base + j, norm_value<kDtype>(h[i], rstd, w[i], a.unit_offset));
    }
}

template <int kDtype>
__global__ void gated_act_kernel(GatedActArgs a) {
    launch_dependents_early();
    grid_dependency_wait();
    launch_dependents_after_wait();
    const int64_t n = a.rows * a.cols;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t r = i / a.cols, j = i % a.cols;
        const float g = load_f32<kDtype>(a.gate, r * a.stride + j), u = load_f32<kDtype>(a.up, r * a.stride + j);
        store_f32<kDtype>(a.out, i, gated_product<kDtype>(a.activation, g, u));
    }
}

template <int kDtype>
__global__ void bias_add_kernel(BiasAddArgs a) {
    launch_dependents_early();
    grid_dependency_wait();
    launch_dependents_after_wait();
    const int64_t n = a.rows * a.cols;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        store_f32<kDtype>(a.y, i, __fadd_rn(load_f32<kDtype>(a.y, i), load_f32<kDtype>(a.bias, i % a.cols)));
}

template <int kDtype>
__global__ void logits_finish_kernel(LogitsFinishArgs a) {
    launch_dependents_early();
    grid_dependency_wait();
    launch_dependents_after_wait();
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float v = load_f32<kDtype>(a.src, i);
        a.out[i] = a.softcap > 0.0f ? __fmul_rn(a.softcap, tanhf(__fdiv_rn(v, a.softcap))) : v;
    }
}

__global__ void increment_kernel(int64_t* length) {
    grid_dependency_wait();
    allow_dependent_launch();
    *length += 1;
}

}  // namespace

sloth_status decode_embed(const char* fn, const EmbedArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        SLOTH_CHECK(require_one_launch(fn, a.batch));
        SLOTH_KERNEL_LAUNCH(fn, "embed_kernel", launch_kernel(embed_kernel<decltype(dt)::value>, static_cast<unsigned>(a.batch), kRowThreads, s,
                                                              a.ids, a.table, a.hidden, a.vocab, a.scale, a.out));
        return SLOTH_OK;
    });
}

sloth_status decode_qk_prep(const char* fn, const QkPrepArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        SLOTH_CHECK(require_one_launch(fn, a.batch));
        const dim3 grid(static_cast<unsigned>(a.batch), static_cast<unsigned>(a.heads + 2 * a.kv_heads));
        SLOTH_KERNEL_LAUNCH(fn, "qk_prep_kernel", launch_kernel(qk_prep_kernel<decltype(dt)::value>, grid, kQkPrepThreads, s, a));
        return SLOTH_OK;
    });
}

sloth_status decode_residual_norm(const char* fn, const ResidualNormArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        SLOTH_CHECK(require_one_launch(fn, a.rows));
        constexpr int kD = decltype(dt)::value;
        const unsigned grid = static_cast<unsigned>(a.rows);
        void (*kernel)(ResidualNormArgs) = a.cols <= 4 * kRowThreads    ? residual_norm_reg_kernel<kD, 4>
                                           : a.cols <= 8 * kRowThreads  ? residual_norm_reg_kernel<kD, 8>
                                           : a.cols <= 16 * kRowThreads ? residual_norm_reg_kernel<kD, 16>
                                           : a.cols <= 32 * kRowThreads ? residual_norm_reg_kernel<kD, 32>
                                                                        : residual_norm_kernel<kD>;
        SLOTH_KERNEL_LAUNCH(fn, "residual_norm_kernel", launch_kernel(kernel, grid, kRowThreads, s, a));
        return SLOTH_OK;
    });
}

sloth_status decode_gated_act(const char* fn, const GatedActArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        SLOTH_KERNEL_LAUNCH(fn, "gated_act_kernel", launch_kernel(gated_act_kernel<decltype(dt)::value>, grid_for(a.rows * a.cols, kRowThreads),
                                                                  kRowThreads, s, a));
        return SLOTH_OK;
    });
}

sloth_status decode_bias_add(const char* fn, const BiasAddArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        SLOTH_KERNEL_LAUNCH(fn, "bias_add_kernel", launch_kernel(bias_add_kernel<decltype(dt)::value>, grid_for(a.rows * a.cols, kRowThreads),
                                                                 kRowThreads, s, a));
        return SLOTH_OK;
    });
}

sloth_status decode_logits_finish(const char* fn, const LogitsFinishArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        SLOTH_KERNEL_LAUNCH(fn, "logits_finish_kernel", launch_kernel(logits_finish_kernel<decltype(dt)::value>, grid_for(a.n, kRowThreads),
                                                                      kRowThreads, s, a));
        return SLOTH_OK;
    });
}

sloth_status decode_increment(const char* fn, int64_t* length, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, SLOTH_DTYPE_F32, [&](auto, cudaStream_t s) {
        SLOTH_KERNEL_LAUNCH(fn, "increment_kernel", launch_kernel(increment_kernel, 1, 1, s, length));
        return SLOTH_OK;
    });
}

sloth_status programmatic_launch_supported(const char* fn, int32_t device, bool* supported) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    cudaFuncAttributes attributes{};
    SLOTH_CUDA_CHECK(fn, cudaFuncGetAttributes(&attributes, increment_kernel));
    *supported = attributes.ptxVersion >= 90;  // griddepcontrol is compiled in from sm_90 PTX on
    return SLOTH_OK;
}

}  // namespace sloth::cuda
