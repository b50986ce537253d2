// The NF4 GEMV kernels (nf4_gemv_kernels.cuh) are compiled in six translation units, one per dtype and half of the
// batch range (nf4_gemv_part_*.cu), because as one file they were the build's critical path: 196 s of nvcc for
// sm_90 alone (bench/results/2026-12-06-h100-round10/call1-h100/native-build.log), 384 kernel instantiations
// (3 dtypes x 8 batch sizes x 16 variants) that ninja now compiles side by side. nf4_gemv.cu dispatches to them.
#pragma once

#include "../src/decode_kernels.h"

#include <cuda_runtime.h>

namespace sloth::cuda {

// Defined in nf4_gemv_kernels.cuh; each (kDtype, kBatch) is explicitly instantiated by one part.
template <int kDtype, int kBatch>
sloth_status nf4_gemv_launch(const char* fn, const Nf4GemvArgs& a, cudaStream_t stream);
template <int kDtype, int kBatch>
sloth_status nf4_gemv_group_launch(const char* fn, const Nf4GemvGroupArgs& a, cudaStream_t stream);

}  // namespace sloth::cuda
