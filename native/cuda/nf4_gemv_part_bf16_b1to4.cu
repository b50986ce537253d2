// One part of the NF4 GEMV kernels (nf4_gemv_parts.h): bf16 activations, batch 1 to 4.
#include "nf4_gemv_kernels.cuh"

namespace sloth::cuda {
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_BF16, 1)
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_BF16, 2)
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_BF16, 3)
SLOTH_NF4_GEMV_INSTANTIATE(SLOTH_DTYPE_BF16, 4)
}  // namespace sloth::cuda
