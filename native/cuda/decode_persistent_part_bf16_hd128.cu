// The persistent decode step for bf16, head_dim 128 (decode_persistent_parts.h).
#include "decode_persistent.cuh"

namespace sloth::cuda::persistent {
SLOTH_PERSISTENT_INSTANTIATE(SLOTH_DTYPE_BF16, 4, 2)
SLOTH_PERSISTENT_INSTANTIATE(SLOTH_DTYPE_BF16, 8, 2)
}  // namespace sloth::cuda::persistent
