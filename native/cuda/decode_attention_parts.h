// The decode attention kernels (decode_attention_kernels.cuh) are compiled in five translation units (float32; bf16
// and f16 each with group bounds 1-4 and 5-16: decode_attention_part_*.cu), because as one file they took 126 s of
// nvcc for sm_90 alone (bench/results/2026-12-06-h100-round10/call1-h100/native-build.log); ninja builds the parts
// side by side. decode_attention.cu dispatches to them.
#pragma once

#include "../src/decode_kernels.h"

#include <cuda_runtime.h>

namespace sloth::cuda {

// Defined in decode_attention_kernels.cuh; each (kDtype, kMaxG) is explicitly instantiated by one part.
template <int kDtype, int kMaxG>
sloth_status decode_attention_launch(const char* fn, const DecodeAttentionArgs& a, cudaStream_t s);
// The fused q/k preparation and attention where it takes the launch (*taken); nothing launched otherwise.
template <int kDtype, int kMaxG>
sloth_status decode_attention_prep_launch(const char* fn, const QkPrepArgs& p, const DecodeAttentionArgs& a,
                                          cudaStream_t s, bool* taken);

}  // namespace sloth::cuda
