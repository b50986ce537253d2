// Inline-PTX building blocks for streaming kernels. Each says why it exists; each has a path for sm_75 (T4), which
// lacks L2 cache-policy hints and packed bf16 conversion.
#pragma once
#include <cstdint>

namespace sloth::cuda::ptx {

// An L2 policy that marks lines as first to evict: the weight is read exactly once, so it should not push
// reusable data (the small tables, the next GEMM's operands) out of L2.
__device__ __forceinline__ uint64_t policy_evict_first() {
    uint64_t policy = 0;
#if __CUDA_ARCH__ >= 800
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
#endif
    return policy;
}

// An L2 policy that keeps lines resident: absmax codes and tables are re-read by many thread blocks.
__device__ __forceinline__ uint64_t policy_evict_last() {
    uint64_t policy = 0;
#if __CUDA_ARCH__ >= 800
    asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
#endif
    return policy;
}

// 4-byte read-only load with the same streaming treatment (one packed word = 8 NF4 values).
__device__ __forceinline__ uint32_t load_stream_u32(const void* p, uint64_t policy) {
    uint32_t v;
#if __CUDA_ARCH__ >= 800
    asm("ld.global.nc.L1::no_allocate.L2::cache_hint.u32 %0, [%1], %2;" : "=r"(v) : "l"(p), "l"(policy));
#else
    (void)policy;
    asm("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
#endif
    return v;
}

// 16-byte read-only load that skips L1 (no reuse within the SM) and streams through L2 with `policy`.
__device__ __forceinline__ uint4 load_stream_v4(const void* p, uint64_t policy) {
    uint4 v;
#if __CUDA_ARCH__ >= 800
    asm("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p), "l"(policy));
#else
    (void)policy;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
#endif
    return v;
}

// 16-byte read-only load that skips L1, with L2's default policy (data read once by its block, such as a KV cache row
// in the decode attention, that the next step reads again).
__device__ __forceinline__ uint4 load_stream_v4(const void* p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// 16-byte load from L2 (ld.global.cg: never a stale L1 line), an ordinary load, not a read-only one: for data that
// other blocks of the same grid wrote (the persistent decode step, decode_persistent.cuh). volatile and clobbering
// memory: the compiler may not move it across the grid barrier that makes those writes visible.
__device__ __forceinline__ uint4 load_l2_v4(const void* p) {
    uint4 v;
    asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p)
                 : "memory");
    return v;
}

// 16-byte read-only load that DOES allocate in L1: data every warp of the SM re-reads (the GEMV's activations).
__device__ __forceinline__ uint4 load_cached_v4(const void* p) {
    uint4 v;
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// One byte through the read-only path, kept in L2 (shared by the threads of neighbouring blocks).
__device__ __forceinline__ uint32_t load_u8_keep(const uint8_t* p, uint64_t policy) {
    uint16_t v;
#if __CUDA_ARCH__ >= 800
    asm("ld.global.nc.L2::cache_hint.u8 %0, [%1], %2;" : "=h"(v) : "l"(p), "l"(policy));
#else
    (void)policy;
    asm("ld.global.nc.u8 %0, [%1];" : "=h"(v) : "l"(p));
#endif
    return v;
}

// Asks L2 for the line holding p, nothing returned (prefetch.global.L2): data a kernel will load later, requested
// before its grid-dependency wait so that the DRAM round trip overlaps the predecessor kernel.
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// 16-byte streaming store (.cs: evict-first, likely accessed once): the output is not re-read by this kernel.
__device__ __forceinline__ void store_stream_v4(void* p, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    asm volatile("st.global.cs.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}

// Two floats to packed bf16x2, round to nearest even; `lo` lands in the low half (the lower address).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#if __CUDA_ARCH__ >= 800
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));  // operand a -> upper half
    return r;
#else
    // sm_75 has no bf16 conversion: round to nearest even on the bit pattern (NaN stays a quiet NaN).
    auto to_bf16 = [](float f) -> uint32_t {
        const uint32_t u = __float_as_uint(f);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u >> 16) | 0x0040u;
        return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    };
    return to_bf16(lo) | (to_bf16(hi) << 16);
#endif
}

// Two floats to packed f16x2, round to nearest even; `lo` in the low half.
__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
    uint32_t r;
#if __CUDA_ARCH__ >= 800
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
    uint16_t l, h;  // the packed form needs sm_80; two scalar conversions round identically
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(l) : "f"(lo));
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(hi));
    r = static_cast<uint32_t>(l) | (static_cast<uint32_t>(h) << 16);
#endif
    return r;
}

// The 32-bit shared-window address of a pointer into shared memory (for ld.shared with a 32-bit register).
__device__ __forceinline__ uint32_t shared_address(const void* p) {
    uint32_t r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}

// A float from shared memory at a 32-bit shared-window address. volatile: the compiler must not hoist it above the
// barrier after which the value is valid (it does not know what the asm reads).
__device__ __forceinline__ float load_shared_f32(uint32_t address) {
    float v;
    asm volatile("ld.shared.f32 %0, [%1];" : "=f"(v) : "r"(address));
    return v;
}

// Byte permute (prmt.b32, default mode): byte i of the result is byte ((selector >> 4 i) & 7) of the 8 bytes {b, a}
// (a: bytes 0-3, b: bytes 4-7).
template <uint32_t kSelector>
__device__ __forceinline__ uint32_t byte_perm(uint32_t a, uint32_t b) {
    uint32_t r;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "n"(kSelector));
    return r;
}

// 16 bytes global -> shared without passing through registers (cp.async.cg, sm_80+; both addresses 16-byte aligned),
// then the commit of this thread's copies so far as one group, and the wait until at most kPending groups are in
// flight (the block's __syncthreads after it makes them visible to every thread).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
#else
    (void)dst, (void)src;
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
#endif
}
// 16 bytes from shared memory at a 32-bit shared-window address.
__device__ __forceinline__ uint4 load_shared_v4(uint32_t address) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(address));
    return v;
}

// One float to bf16 / f16 bits with the same rounding as the packed forms.
__device__ __forceinline__ uint16_t to_bf16_bits(float f) { return static_cast<uint16_t>(pack_bf16x2(f, 0.0f)); }
__device__ __forceinline__ uint16_t to_f16_bits(float f) { return static_cast<uint16_t>(pack_f16x2(f, 0.0f)); }

// ---- Thread-block clusters (sm_90+; the callers launch with a cluster shape only where the code was built for sm_90).
// Every non-exited thread of the cluster arrives (release at cluster scope, the instruction's default: this thread's
// earlier writes, shared and global) and waits for the others (acquire, the default): afterwards a block reads what
// any block of its cluster wrote before the barrier.
__device__ __forceinline__ void cluster_barrier() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
#endif
}
// The float at shared-window address `address` of this block's layout, in the shared memory of block `rank` of the
// cluster (mapa + ld.shared::cluster: distributed shared memory).
__device__ __forceinline__ float load_cluster_f32(uint32_t address, uint32_t rank) {
    float v = 0.0f;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(address), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
#else
    (void)address, (void)rank;
#endif
    return v;
}

}  // namespace sloth::cuda::ptx
