// The persistent decode step's instantiations (decode_persistent.cuh), one (dtype, head_dim) pair per translation unit
// (decode_persistent_part_*.cu) so that nvcc compiles them in parallel: each holds the whole decoder's code.
// kMaxG: query heads per KV head, rounded up to 4 or 8; kP: keys per warp of the attention walk (4: head_dim 64,
// 2: head_dim 128).
#pragma once

#include "../src/decode_kernels.h"

namespace sloth::cuda::persistent {

template <int kDtype, int kMaxG, int kP>
sloth_status persistent_prepare(const char* fn, const PersistentStepArgs& a, int32_t device, void* stream, int32_t* blocks);

template <int kDtype, int kMaxG, int kP>
sloth_status persistent_step(const char* fn, const PersistentStepArgs& a, int32_t blocks, void* stream);

}  // namespace sloth::cuda::persistent
