// Attention of one new query per sequence over the KV cache: the entry point. The kernels and their design are in
// decode_attention_kernels.cuh, compiled in parts (decode_attention_parts.h); this file picks the part for the dtype
// and the query heads per KV head.
#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "decode_attention_parts.h"
#include "mma.cuh"

#include <type_traits>

namespace sloth::cuda {
namespace {

// Calls launch(std::integral_constant<int, G>{}) with the group size as a compile-time bound G (registers per lane
// grow with it): exact up to 8, else 16. The walk's and the fused preparation's launches both dispatch here.
template <class Launch>
sloth_status with_group_bound(const DecodeAttentionArgs& a, Launch&& launch) {
    static_assert(kDecodeMaxGroup == 16, "one case per bound below");
    switch (a.heads / a.kv_heads) {
        case 1: return launch(std::integral_constant<int, 1>{});
        case 2: return launch(std::integral_constant<int, 2>{});
        case 3: return launch(std::integral_constant<int, 3>{});
        case 4: return launch(std::integral_constant<int, 4>{});
        case 5: return launch(std::integral_constant<int, 5>{});
        case 6: return launch(std::integral_constant<int, 6>{});
        case 7: return launch(std::integral_constant<int, 7>{});
        case 8: return launch(std::integral_constant<int, 8>{});
        default: return launch(std::integral_constant<int, 16>{});
    }
}

}  // namespace

sloth_status decode_attention_prep_fused(const char* fn, const QkPrepArgs& p, const DecodeAttentionArgs& a,
                                         int32_t device, void* stream) {
    bool taken = false;
    SLOTH_CHECK(launch_for_dtype(fn, device, stream, a.dtype,
                                 [&](auto dt, cudaStream_t s) {
                                     return with_group_bound(a, [&](auto g) {  // a group past 8: not taken
                                         return decode_attention_prep_launch<decltype(dt)::value, decltype(g)::value>(fn, p, a, s, &taken);
                                     });
                                 }));
    if (taken) return SLOTH_OK;
    // Not fused (the switch off, another shape, or the cluster size refused): the two kernels.
    SLOTH_CHECK(decode_qk_prep(fn, p, device, stream));
    return decode_attention(fn, a, device, stream);
}

sloth_status decode_attention(const char* fn, const DecodeAttentionArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) {
                                return with_group_bound(a, [&](auto g) {
                                    return decode_attention_launch<decltype(dt)::value, decltype(g)::value>(fn, a, s);
                                });
                            });
}

bool decode_attention_clustered(const DecodeAttentionArgs& a) {
    // This translation unit is built for the same architectures as the parts, so its probe answers for theirs.
    return decode_cluster_shape(a.heads, a.kv_heads, a.head_dim, a.dtype, a.batch, a.max_length, a.merge_in_walk) &&
           clusters_compiled();
}

}  // namespace sloth::cuda
