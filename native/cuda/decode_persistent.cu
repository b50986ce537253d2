// The persistent decode step's entry points (decode_kernels.h): which shapes it covers, and the dispatch to the
// instantiation of a (dtype, head_dim, group bound) triple (decode_persistent_part_*.cu).
#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "decode_persistent_parts.h"

namespace sloth::cuda {
namespace {

// The staged inputs ([1, widest input] in the dtype) may take this much of a block's shared memory.
constexpr int64_t kMaxStagedBytes = 64 * 1024;

sloth_status unsupported(const char* fn, const char* why) {
    return fail(SLOTH_ERROR_UNSUPPORTED, "%s: the persistent decode step does not cover this decoder: %s", fn, why);
}

sloth_status check(const char* fn, const PersistentStepArgs& a) {
    if (a.dtype != SLOTH_DTYPE_BF16 && a.dtype != SLOTH_DTYPE_F16) return unsupported(fn, "the dtype is not bf16 or f16");
    if (a.batch != 1) return unsupported(fn, "batch > 1");
    if (a.head_dim != 64 && a.head_dim != 128) return unsupported(fn, "head_dim is not 64 or 128");
    if (a.heads % a.kv_heads != 0 || a.heads / a.kv_heads > 8) return unsupported(fn, "more than 8 query heads per KV head");
    if (a.hidden % 32 != 0) return unsupported(fn, "hidden is not a multiple of 32");
    if (!a.layer || a.layers < 1) return unsupported(fn, "no layers");
    for (int64_t l = 0; l < a.layers; ++l) {
        const PersistentLayerArgs& L = a.layer[l];
        if (!nf4_group_fits(L.qkv) || !nf4_group_fits(L.o) || !nf4_group_fits(L.down) || !nf4_group_fits(L.gate_up) ||
            !L.gate_up.gated || L.o.count != 1 || L.down.count != 1 || L.qkv.k != a.hidden || L.gate_up.k != a.hidden)
            return unsupported(fn, "a projection is not one the grouped NF4 GEMV takes");
        if (L.o.k * 2 > kMaxStagedBytes || L.down.k * 2 > kMaxStagedBytes)
            return unsupported(fn, "an input row is wider than the staged shared memory");
        if (L.attention.merge_in_walk) return unsupported(fn, "merge_in_walk");
    }
    return SLOTH_OK;
}

// f(persistent::<function><kDtype, kMaxG, kP>) for the instantiation that covers a (after check).
template <class F>
sloth_status dispatch(const PersistentStepArgs& a, F&& f) {
    const bool wide = a.heads / a.kv_heads > 4, bf16 = a.dtype == SLOTH_DTYPE_BF16;
    if (a.head_dim == 64) {
        if (bf16) return wide ? f(std::integral_constant<int, SLOTH_DTYPE_BF16>{}, std::integral_constant<int, 8>{}, std::integral_constant<int, 4>{})
                              : f(std::integral_constant<int, SLOTH_DTYPE_BF16>{}, std::integral_constant<int, 4>{}, std::integral_constant<int, 4>{});
        return wide ? f(std::integral_constant<int, SLOTH_DTYPE_F16>{}, std::integral_constant<int, 8>{}, std::integral_constant<int, 4>{})
                    : f(std::integral_constant<int, SLOTH_DTYPE_F16>{}, std::integral_constant<int, 4>{}, std::integral_constant<int, 4>{});
    }
    if (bf16) return wide ? f(std::integral_constant<int, SLOTH_DTYPE_BF16>{}, std::integral_constant<int, 8>{}, std::integral_constant<int, 2>{})
                          : f(std::integral_constant<int, SLOTH_DTYPE_BF16>{}, std::integral_constant<int, 4>{}, std::integral_constant<int, 2>{});
    return wide ? f(std::integral_constant<int, SLOTH_DTYPE_F16>{}, std::integral_constant<int, 8>{}, std::integral_constant<int, 2>{})
                : f(std::integral_constant<int, SLOTH_DTYPE_F16>{}, std::integral_constant<int, 4>{}, std::integral_constant<int, 2>{});
}

}  // namespace

sloth_status decode_persistent_prepare(const char* fn, const PersistentStepArgs& a, int32_t device, void* stream,
                                       int32_t* blocks) {
    *blocks = 0;
    SLOTH_CHECK(check(fn, a));
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    return dispatch(a, [&](auto dt, auto g, auto p) {
        return persistent::persistent_prepare<decltype(dt)::value, decltype(g)::value, decltype(p)::value>(fn, a, device, stream, blocks);
    });
}

sloth_status decode_persistent_step(const char* fn, const PersistentStepArgs& a, int32_t blocks, int32_t device, void* stream) {
    if (blocks < 1) return fail(SLOTH_ERROR_INTERNAL, "%s: the persistent step was not prepared", fn);
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    return dispatch(a, [&](auto dt, auto g, auto p) {
        return persistent::persistent_step<decltype(dt)::value, decltype(g)::value, decltype(p)::value>(fn, a, blocks, stream);
    });
}

}  // namespace sloth::cuda
