// One part of the decode attention kernels (decode_attention_parts.h): bf16 activations, group bounds 1 to 4.
#include "decode_attention_kernels.cuh"

namespace sloth::cuda {
SLOTH_DECODE_ATTENTION_INSTANTIATE(SLOTH_DTYPE_BF16, 1)
SLOTH_DECODE_ATTENTION_INSTANTIATE(SLOTH_DTYPE_BF16, 2)
SLOTH_DECODE_ATTENTION_INSTANTIATE(SLOTH_DTYPE_BF16, 3)
SLOTH_DECODE_ATTENTION_INSTANTIATE(SLOTH_DTYPE_BF16, 4)
}  // namespace sloth::cuda
