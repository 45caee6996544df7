// weft/cuda/nccl_comm.h v1 — communicators for runs on GPUs (NCCL for device tensors, MPI for host tensors).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/comm.h"

namespace weft {

// Like make_mpi_comm, collectively over the world; device tensors then travel through NCCL.
std::unique_ptr<Comm> make_nccl_comm(const std::string& name, const std::vector<std::vector<int>>& groups);

}  // namespace weft
