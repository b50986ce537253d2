// The persistent decode step for bf16, head_dim 64 (decode_persistent_parts.h).
#include "decode_persistent.cuh"

namespace sloth::cuda::persistent {
SLOTH_PERSISTENT_INSTANTIATE(SLOTH_DTYPE_BF16, 4, 4)
SLOTH_PERSISTENT_INSTANTIATE(SLOTH_DTYPE_BF16, 8, 4)
}  // namespace sloth::cuda::persistent
