// The persistent decode step for f16, head_dim 128 (decode_persistent_parts.h).
#include "decode_persistent.cuh"

namespace sloth::cuda::persistent {
SLOTH_PERSISTENT_INSTANTIATE(SLOTH_DTYPE_F16, 4, 2)
SLOTH_PERSISTENT_INSTANTIATE(SLOTH_DTYPE_F16, 8, 2)
}  // namespace sloth::cuda::persistent
