// One part of the NF4 GEMV kernels (nf4_gemv_parts.h): bf16 activations, batch 5 to 8.
#include "nf4_gemv_kernels.cuh"

namespace sloth::cuda {
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_BF16, 5)
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_BF16, 6)
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_BF16, 7)
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_BF16, 8)
}  // namespace sloth::cuda
