// One part of the decode attention kernels (decode_attention_parts.h): f16 activations, group bounds 5 to 8 and 16.
#include "decode_attention_kernels.cuh"

namespace sloth::cuda {
SLOTH_DECODE_ATTENTION_INSTANTIATE(SLOTH_DTYPE_F16, 5)
SLOTH_DECODE_ATTENTION_INSTANTIATE(SLOTH_DTYPE_F16, 6)
SLOTH_DECODE_ATTENTION_INSTANTIATE(SLOTH_DTYPE_F16, 7)
SLOTH_DECODE_ATTENTION_INSTANTIATE(SLOTH_DTYPE_F16, 8)
SLOTH_DECODE_ATTENTION_INSTANTIATE(SLOTH_DTYPE_F16, 16)
}  // namespace sloth::cuda
