// One part of the NF4 GEMV kernels (nf4_gemv_parts.h): f32 activations, batch 5 to 8.
#include "nf4_gemv_kernels.cuh"

namespace sloth::cuda {
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_F32, 5)
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_F32, 6)
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_F32, 7)
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_F32, 8)
}  // namespace sloth::cuda
