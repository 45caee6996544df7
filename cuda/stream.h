// weft/cuda/stream.h v1 — the one stream all of weft's device work is ordered on (NCCL collectives included).
#pragma once
#include <cuda_runtime.h>

namespace weft::cuda {

cudaStream_t stream();

}  // namespace weft::cuda
