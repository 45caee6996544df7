// weft/src/dist/comm.h v1 — collectives on one process group, the same calls for CPU (MPI) and GPU (NCCL).
//
// Counts are in elements of the tensors' dtype. Tensors are contiguous; reductions are sums unless said.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace weft {

enum class ReduceOp { sum, max };

// A send in flight; wait() returns once its buffer may be reused.
class SendRequest {
 public:
  virtual ~SendRequest() = default;
  virtual void wait() = 0;
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;                    // this process's position in the group
  virtual int size() const = 0;                    // number of processes in the group
  virtual const std::string& name() const = 0;     // the group's kind, for error messages ("tp", "dp", ...)

  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum) = 0;  // in place, every rank gets the result
  // in [size·n] → out [n]: out on rank r = Σ over ranks of in[r·n : (r+1)·n].
  virtual void reduce_scatter(Tensor& out, const Tensor& in) = 0;
  // in [n] → out [size·n], concatenated in rank order.
  virtual void all_gather(Tensor& out, const Tensor& in) = 0;
  virtual void broadcast(Tensor& t, int root) = 0;  // t on every rank = t on root
  virtual void send(const Tensor& t, int peer, int tag = 0) = 0;  // blocking; peer is a group rank
  virtual void recv(Tensor& t, int peer, int tag = 0) = 0;        // blocking; t must have the sender's size
  // Starts a send and returns at once; the tensor is kept alive until the request completes. Messages between
  // two ranks are matched by tag (MPI) — pipeline schedules tag each by micro-batch and model chunk.
  virtual std::unique_ptr<SendRequest> isend(const Tensor& t, int peer, int tag) = 0;
  // Sends `out` to rank `to` while receiving `in` (same size) from rank `from`: one step of a ring shift.
  virtual void send_recv(const Tensor& out, int to, Tensor& in, int from) = 0;
  // Sends consecutive chunks of in, send_counts[r] elements to rank r; receives recv_counts[r] elements from
  // rank r into out, packed in rank order.
  virtual void all_to_all_v(Tensor& out, const std::vector<int64_t>& recv_counts, const Tensor& in,
                            const std::vector<int64_t>& send_counts) = 0;
  virtual void barrier() = 0;
};

// A group over the given world ranks, made collectively: every world rank calls it with the same `groups`
// partition and gets the group it belongs to. Implemented with MPI_Comm_split.
std::unique_ptr<Comm> make_mpi_comm(const std::string& name, const std::vector<std::vector<int>>& groups);

}  // namespace weft
