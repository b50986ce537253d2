// mma.sync m16n8k16 (16-bit inputs, float32 accumulators), shared by the kernels that use tensor cores at decode
// shapes (the NF4 tile GEMVs, the wide NF4 GEMM, the decode attention's tensor-core walk), and the check that a
// translation unit's kernels were compiled for a GPU that has it.
#pragma once

#include "slothsharp.h"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

namespace sloth::cuda {
namespace {

// c += A (16 x 16, rows) · B (16 x 8, columns), A and B in the 16-bit dtype, c in float32. Lane l = (g = l / 4,
// q = l % 4): a0: row g, k 2q..2q+1; a1: row g+8, k 2q..; a2: row g, k 2q+8..; a3: row g+8, k 2q+8..; b0: k 2q..,
// column g; b1: k 2q+8.., column g; c0/c1: row g, columns 2q, 2q+1; c2/c3: row g+8 (PTX ISA, "Matrix fragments for
// mma.m16n8k16"). Each 32-bit register holds two consecutive k (or column) values, the lower one in the low half.
template <int kDtype>
__device__ __forceinline__ void mma_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                          uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (kDtype == SLOTH_DTYPE_BF16) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    } else {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
#else
    (void)c, (void)a0, (void)a1, (void)a2, (void)a3, (void)b0, (void)b1;
#if defined(__CUDA_ARCH__)
    asm volatile("trap;");  // never launched: every launcher asks mma_compiled() first
#endif
#endif
}

__global__ void mma_probe_kernel() {}

// The PTX version this translation unit's kernels were compiled for on the current device (a compute_75 build
// JIT-compiled on an H100 reports 75), asked once per device; 0 where it cannot be asked. The probe lives in an unnamed
// namespace, so each translation unit asks about its own code.
inline int compiled_ptx() {
    constexpr int kDevices = 64;
    static std::atomic<int> known[kDevices];  // 0: not asked yet, else the version + 1
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kDevices) return 0;
    int v = known[device].load(std::memory_order_relaxed);
    if (v == 0) {
        cudaFuncAttributes attributes{};
        v = 1 + (cudaFuncGetAttributes(&attributes, mma_probe_kernel) == cudaSuccess ? attributes.ptxVersion : 0);
        known[device].store(v, std::memory_order_relaxed);
    }
    return v - 1;
}

// Whether this translation unit's kernels were compiled for sm_80+ (mma.sync with bf16 exists there only).
inline bool mma_compiled() { return compiled_ptx() >= 80; }

// Whether they were compiled for sm_90+ (thread-block clusters: ptx.cuh's cluster_barrier), which implies the device
// is sm_90+ too.
inline bool clusters_compiled() { return compiled_ptx() >= 90; }

}  // namespace
}  // namespace sloth::cuda
