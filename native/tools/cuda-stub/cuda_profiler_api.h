// Stub declarations for clang's CUDA front end (native/tools/cuda_syntax_check.sh, as cuda_runtime.h here): the profiler API.
#pragma once
#include "cuda_runtime.h"
cudaError_t cudaProfilerStart();
cudaError_t cudaProfilerStop();
