// y[b, r] = x[b, :] · W[r, :] for a few activation rows with W in NF4: the entry points. The kernels and their design
// are in nf4_gemv_kernels.cuh, compiled in parts (nf4_gemv_parts.h); this file picks the part for the dtype and the
// batch size.
#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "nf4_gemv_parts.h"

#include <type_traits>

namespace sloth::cuda {
namespace {

// The batch as a compile-time constant: f(std::integral_constant<int, batch>) for 1 <= batch <= 8 (checked by the
// callers: the export, or nf4_group_fits).
template <class F>
sloth_status for_batch(const char* fn, int64_t batch, F&& f) {
    static_assert(SLOTH_NF4_GEMV_MAX_BATCH == 8, "one case per batch size below");
    switch (batch) {
        case 1: return f(std::integral_constant<int, 1>{});
        case 2: return f(std::integral_constant<int, 2>{});
        case 3: return f(std::integral_constant<int, 3>{});
        case 4: return f(std::integral_constant<int, 4>{});
        case 5: return f(std::integral_constant<int, 5>{});
        case 6: return f(std::integral_constant<int, 6>{});
        case 7: return f(std::integral_constant<int, 7>{});
        case 8: return f(std::integral_constant<int, 8>{});
        default: return fail(SLOTH_ERROR_INTERNAL, "%s: batch = %lld passed validation", fn, static_cast<long long>(batch));
    }
}

}  // namespace

sloth_status nf4_gemv(const char* fn, const Nf4GemvArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        return for_batch(fn, a.batch, [&](auto nb) { return nf4_gemv_launch<decltype(dt)::value, decltype(nb)::value>(fn, a, s); });
    });
}

sloth_status nf4_gemv_group(const char* fn, const Nf4GemvGroupArgs& a, int32_t device, void* stream) {
    if (!nf4_group_fits(a))
        return fail(SLOTH_ERROR_INTERNAL, "%s: an NF4 GEMV group that nf4_group_fits refuses (count %d, batch %lld, k %lld)",
                    fn, a.count, static_cast<long long>(a.batch), static_cast<long long>(a.k));
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        return for_batch(fn, a.batch,
                         [&](auto nb) { return nf4_gemv_group_launch<decltype(dt)::value, decltype(nb)::value>(fn, a, s); });
    });
}

}  // namespace sloth::cuda
