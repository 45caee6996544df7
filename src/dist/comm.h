// weft/src/dist/comm.h v6 — collectives on one process group, the same calls for CPU (MPI) and GPU (NCCL).
//
// Counts are in elements of the tensors' dtype. Tensors are contiguous; reductions are sums unless said.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace weft {

enum class ReduceOp { sum, max };

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;                    // this process's position in the group
  virtual int size() const = 0;                    // number of processes in the group
  virtual const std::string& name() const = 0;     // the group's kind, for error messages ("tp", "dp", ...)

  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum) = 0;  // in place, every rank gets the result
  // in [size·n] → out [n]: out on rank r = Σ over ranks of in[r·n : (r+1)·n]. out may be that slice of in.
  virtual void reduce_scatter(Tensor& out, const Tensor& in) = 0;
  // in [n] → out [size·n], concatenated in rank order. in may be this rank's slice of out.
  virtual void all_gather(Tensor& out, const Tensor& in) = 0;
  // Overlapped collectives: start_* queue the collective behind the device work issued so far and return at
  // once; work that touches its tensors must come after wait_started(). On GPUs they run on the group's own
  // stream beside the compute stream; the default runs them at once (the CPU has nothing to overlap). The
  // reductions multiply their result by `scale` (NCCL folds it into the collective: a mean costs no extra pass).
  virtual void start_all_reduce(Tensor& t, double scale);
  virtual void start_reduce_scatter(Tensor& out, const Tensor& in, double scale);
  virtual void start_all_gather(Tensor& out, const Tensor& in);
  virtual void wait_started() {}
  // A part of them: started_mark() names the collectives started so far; wait_started_until(mark) orders the device
  // work queued after it behind those only (the later ones may still run). wait_started() forgets the marks.
  virtual int started_mark() { return 0; }
  virtual void wait_started_until(int /*mark*/) {}
  // How long compute waits for the overlapped collectives (log.comm_wait): while counting, a GPU group times its
  // compute stream's waits above on the device, and the run-at-once default counts the host's time in start_*.
  // take_wait_ms() returns the milliseconds counted since its last call, once the device has passed them.
  void count_waits(bool on) { counting_waits_ = on; }
  virtual double take_wait_ms();
  virtual void broadcast(Tensor& t, int root) = 0;  // t on every rank = t on root
  // Point-to-point messages between two ranks arrive in the order they were posted. A send completes only once
  // the peer receives it (MPI_Ssend; an NCCL send holds its stream likewise), so callers post sends together
  // with the receives that unblock their peers.
  virtual void send(const Tensor& t, int peer) = 0;  // peer is a group rank
  virtual void recv(Tensor& t, int peer) = 0;        // t must have the sender's size
  // Posts every send and receive at once and returns when all have completed (one NCCL group; MPI Issend/Irecv
  // and Waitall). Tensors are handles: a received one is written in place.
  virtual void exchange(const std::vector<std::pair<Tensor, int>>& sends,
                        const std::vector<std::pair<Tensor, int>>& recvs) = 0;
  // Sends `out` to rank `to` while receiving `in` from rank `from`: one step of a ring shift.
  void send_recv(const Tensor& out, int to, Tensor& in, int from) { exchange({{out, to}}, {{in, from}}); }
  // Sends consecutive chunks of in, send_counts[r] elements to rank r; receives recv_counts[r] elements from
  // rank r into out, packed in rank order.
  virtual void all_to_all_v(Tensor& out, const std::vector<int64_t>& recv_counts, const Tensor& in,
                            const std::vector<int64_t>& send_counts) = 0;
  virtual void barrier() = 0;

 protected:
  bool counting_waits_ = false;
  double waited_ms_ = 0;  // the run-at-once collectives' host time while counting
};

// A group over the given world ranks, made collectively: every world rank calls it with the same `groups`
// partition and gets the group it belongs to. Implemented with MPI_Comm_split.
std::unique_ptr<Comm> make_mpi_comm(const std::string& name, const std::vector<std::vector<int>>& groups);

}  // namespace weft
