// weft/src/ops/device.cpp v1 — the run-time GPU hook.
#include "ops/device.h"

#include <mpi.h>

#include <utility>

#include "dist/mpi_env.h"

namespace weft {

DeviceSupport& device_support() {
  static DeviceSupport s;
  return s;
}

namespace {

// This process's rank and the size of its node's group.
std::pair<int, int> node_group() {
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int rank = 0, size = 1;
  MPI_CHECK(MPI_Comm_rank(node, &rank));
  MPI_CHECK(MPI_Comm_size(node, &size));
  MPI_Comm_free(&node);
  return {rank, size};
}

}  // namespace

int node_local_rank() { return node_group().first; }
int node_local_size() { return node_group().second; }

void require_gpu(const std::string& what) {
  if (!device_support().enable)
    throw ConfigError(str(what, " needs the CUDA backend, but this weft was built without it (WEFT_CUDA=OFF or no nvcc)"));
  if (!device_support().enable(node_local_rank()))
    throw ConfigError(str(what, " needs a GPU, and none is visible (CUDA_VISIBLE_DEVICES?)"));
}

}  // namespace weft
