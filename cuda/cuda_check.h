// weft/cuda/cuda_check.h v1 — CUDA_CHECK and friends: every runtime and library call checked, with file:line.
#pragma once
#include <cuda_runtime.h>

#include "util/error.h"

// CUDA_CHECK(call): throws weft::Error naming the call, the CUDA error and file:line.
#define CUDA_CHECK(call)                                                                                     \
  do {                                                                                                       \
    cudaError_t cuda_status_ = (call);                                                                       \
    if (cuda_status_ != cudaSuccess)                                                                         \
      ::weft::fail(::weft::str("CUDA error in ", #call, " (", __FILE__, ":", __LINE__, "): ",                \
                               cudaGetErrorString(cuda_status_)));                                           \
  } while (0)

// CUDA_CHECK_LAUNCH(): checks the launch that just happened (bad configuration, missing kernel image).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
