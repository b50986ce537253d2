// The persistent decode step for f16, head_dim 64 (decode_persistent_parts.h).
#include "decode_persistent.cuh"

namespace sloth::cuda::persistent {
SLOTH_PERSISTENT_INSTANTIATE(SLOTH_DTYPE_F16, 4, 4)
SLOTH_PERSISTENT_INSTANTIATE(SLOTH_DTYPE_F16, 8, 4)
}  // namespace sloth::cuda::persistent
