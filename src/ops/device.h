// weft/src/ops/device.h v3 — what the GPU backend adds at run time, without src/ depending on cuda/.
//
// main() fills this in when weft was built with CUDA; commands that need a GPU call enable() first, so runs on the
// CPU never create a CUDA context.
#pragma once
#include <string>
#include "dist/process_grid.h"

namespace weft {

struct DeviceSupport {
  // Sets up the CUDA backend on this process's GPU (node-local rank modulo the visible GPUs); returns false when
  // weft was built without CUDA or no GPU is visible.
  bool (*enable)(int local_rank) = nullptr;
  // Communicators whose device tensors go through NCCL.
  CommFactory comm_factory = nullptr;
  // GEMMs pick the fastest of cuBLASLt's candidate algorithms by timing (train.gemm_autotune); set by enable.
  void (*set_gemm_autotune)(bool on) = nullptr;
  // "CUDA runtime 13.0 (driver 13.0), cuBLASLt 130000, NCCL 2.28.3" (set by the CUDA backend; null without it).
  std::string (*versions)() = nullptr;
  // Bytes of the enabled GPU's memory not yet in use (set by enable).
  size_t (*memory_free)() = nullptr;
};

DeviceSupport& device_support();

// Enables the GPU backend or fails with one line saying why (`what` names the deck key or flag that asked for it).
void require_gpu(const std::string& what);

// This process's rank among the ranks on its node, and how many ranks its node runs.
int node_local_rank();
int node_local_size();

}  // namespace weft
