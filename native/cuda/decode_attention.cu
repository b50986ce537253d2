// Attention of one new query per sequence over the KV cache: the entry point. The kernels and their design are in
// decode_attention_kernels.cuh, compiled in parts (decode_attention_parts.h); this file picks the part for the dtype
// and the query heads per KV head.
#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "decode_attention_parts.h"
#include "mma.cuh"

namespace sloth::cuda {
namespace {

// The group size as a compile-time bound (registers per lane grow with it): exact up to 8, else 16.
template <int kDtype>
sloth_status launch_for_group(const char* fn, const DecodeAttentionArgs& a, cudaStream_t s) {
    static_assert(kDecodeMaxGroup == 16, "one case per bound below");
    switch (a.heads / a.kv_heads) {
        case 1: return decode_attention_launch<kDtype, 1>(fn, a, s);
        case 2: return decode_attention_launch<kDtype, 2>(fn, a, s);
        case 3: return decode_attention_launch<kDtype, 3>(fn, a, s);
        case 4: return decode_attention_launch<kDtype, 4>(fn, a, s);
        case 5: return decode_attention_launch<kDtype, 5>(fn, a, s);
        case 6: return decode_attention_launch<kDtype, 6>(fn, a, s);
        case 7: return decode_attention_launch<kDtype, 7>(fn, a, s);
        case 8: return decode_attention_launch<kDtype, 8>(fn, a, s);
        default: return decode_attention_launch<kDtype, 16>(fn, a, s);
    }
}

}  // namespace

sloth_status decode_attention(const char* fn, const DecodeAttentionArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) { return launch_for_group<decltype(dt)::value>(fn, a, s); });
}

bool decode_attention_clustered(const DecodeAttentionArgs& a) {
    // This translation unit is built for the same architectures as the parts, so its probe answers for theirs.
    return decode_cluster_shape(a.heads, a.kv_heads, a.head_dim, a.dtype, a.batch, a.max_length, a.merge_in_walk) &&
           clusters_compiled();
}

}  // namespace sloth::cuda
