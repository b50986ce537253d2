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

template <int kDtype>
sloth_status prep_for_group(const char* fn, const QkPrepArgs& p, const DecodeAttentionArgs& a, cudaStream_t s, bool* taken) {
    switch (a.heads / a.kv_heads) {  // the cluster form's groups: at most 8
        case 1: return decode_attention_prep_launch<kDtype, 1>(fn, p, a, s, taken);
        case 2: return decode_attention_prep_launch<kDtype, 2>(fn, p, a, s, taken);
        case 3: return decode_attention_prep_launch<kDtype, 3>(fn, p, a, s, taken);
        case 4: return decode_attention_prep_launch<kDtype, 4>(fn, p, a, s, taken);
        case 5: return decode_attention_prep_launch<kDtype, 5>(fn, p, a, s, taken);
        case 6: return decode_attention_prep_launch<kDtype, 6>(fn, p, a, s, taken);
        case 7: return decode_attention_prep_launch<kDtype, 7>(fn, p, a, s, taken);
        case 8: return decode_attention_prep_launch<kDtype, 8>(fn, p, a, s, taken);
        default: *taken = false; return SLOTH_OK;
    }
}

}  // namespace

sloth_status decode_attention_prep_fused(const char* fn, const QkPrepArgs& p, const DecodeAttentionArgs& a,
                                         int32_t device, void* stream) {
    bool taken = false;
    SLOTH_CHECK(launch_for_dtype(fn, device, stream, a.dtype,
                                 [&](auto dt, cudaStream_t s) { return prep_for_group<decltype(dt)::value>(fn, p, a, s, &taken); }));
    if (taken) return SLOTH_OK;
    // Not fused (the switch off, another shape, or the cluster size refused): the two kernels.
    SLOTH_CHECK(decode_qk_prep(fn, p, device, stream));
    return decode_attention(fn, a, device, stream);
}

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
