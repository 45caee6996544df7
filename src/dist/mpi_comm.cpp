// weft/src/dist/mpi_comm.cpp v3 — the MPI implementation of Comm, for CPU tensors.
#include <mpi.h>

#include <algorithm>
#include <climits>

#include "dist/comm.h"
#include "dist/mpi_env.h"

namespace weft {
namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::bf16:
    case DType::f16:
    case DType::u16: return MPI_UINT16_T;
    case DType::u8: return MPI_UINT8_T;
  }
  return MPI_BYTE;
}

// Open MPI 4 counts are ints: long messages go in chunks of at most this many elements.
constexpr int64_t kChunk = int64_t(1) << 30;

int as_count(int64_t n, const char* what) {
  WEFT_CHECK(n <= INT_MAX, what, ": ", n, " elements exceed the MPI count limit");
  return static_cast<int>(n);
}

class MpiComm final : public Comm {
 public:
  MpiComm(std::string name, MPI_Comm comm) : name_(std::move(name)), comm_(comm) {
    MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiComm() override { MPI_Comm_free(&comm_); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  void all_reduce(Tensor& t, ReduceOp op) override {
    check_host(t);
    WEFT_CHECK(t.dtype() != DType::bf16 && t.dtype() != DType::f16, "MPI all_reduce of ", t.describe(),
               ": reductions need f32, f64 or integer tensors");
    if (size_ == 1) return;
    char* p = static_cast<char*>(t.data_ptr());
    const size_t es = dtype_size(t.dtype());
    for (int64_t off = 0; off < t.numel(); off += kChunk) {
      int n = static_cast<int>(std::min(kChunk, t.numel() - off));
      MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + off * es, n, mpi_type(t.dtype()),
                              op == ReduceOp::sum ? MPI_SUM : MPI_MAX, comm_));
    }
  }

  void reduce_scatter(Tensor& out, const Tensor& in) override {
    check_host(out);
    check_host(in);
    WEFT_CHECK(in.numel() == out.numel() * size_ && in.dtype() == out.dtype(), "reduce_scatter on ", name_,
               ": in ", in.describe(), " must be ", size_, " × out ", out.describe());
    if (size_ == 1) {
      if (out.data_ptr() != in.data_ptr()) copy(out, in);
      return;
    }
    // MPI has no in-place form that leaves the result in this rank's slice: reduce from a copy.
    const Tensor source = is_own_slice(out, in) ? in.clone() : in;
    MPI_CHECK(MPI_Reduce_scatter_block(source.data_ptr(), out.data_ptr(), as_count(out.numel(), "reduce_scatter"),
                                       mpi_type(in.dtype()), MPI_SUM, comm_));
  }

  void all_gather(Tensor& out, const Tensor& in) override {
    check_host(out);
    check_host(in);
    WEFT_CHECK(out.numel() == in.numel() * size_ && in.dtype() == out.dtype(), "all_gather on ", name_, ": out ",
               out.describe(), " must be ", size_, " × in ", in.describe());
    if (size_ == 1) {
      if (out.data_ptr() != in.data_ptr()) copy(out, in);
      return;
    }
    MPI_CHECK(MPI_Allgather(is_own_slice(in, out) ? MPI_IN_PLACE : in.data_ptr(), as_count(in.numel(), "all_gather"),
                            mpi_type(in.dtype()),
                            out.data_ptr(), as_count(in.numel(), "all_gather"), mpi_type(in.dtype()), comm_));
  }

  void broadcast(Tensor& t, int root) override {
    check_host(t);
    if (size_ == 1) return;
    each_chunk(t, [&](void* p, int n) { MPI_CHECK(MPI_Bcast(p, n, mpi_type(t.dtype()), root, comm_)); });
  }

  // Synchronous sends give the CPU backend NCCL's blocking semantics, so a schedule that would hang on GPUs hangs
  // (and fails its test) here too.
  void send(const Tensor& t, int peer) override {
    check_host(t);
    each_chunk(t, [&](void* p, int n) { MPI_CHECK(MPI_Ssend(p, n, mpi_type(t.dtype()), peer, 0, comm_)); });
  }

  void exchange(const std::vector<std::pair<Tensor, int>>& sends,
                const std::vector<std::pair<Tensor, int>>& recvs) override {
    std::vector<MPI_Request> requests;
    for (const auto& [t, peer] : sends) {
      check_host(t);
      requests.emplace_back();
      MPI_CHECK(MPI_Issend(t.data_ptr(), as_count(t.numel(), "exchange"), mpi_type(t.dtype()), peer, 0, comm_,
                           &requests.back()));
    }
    for (const auto& [t, peer] : recvs) {
      check_host(t);
      requests.emplace_back();
      MPI_CHECK(MPI_Irecv(t.data_ptr(), as_count(t.numel(), "exchange"), mpi_type(t.dtype()), peer, 0, comm_,
                          &requests.back()));
    }
    MPI_CHECK(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE));
  }
  void recv(Tensor& t, int peer) override {
    check_host(t);
    each_chunk(t, [&](void* p, int n) {
      MPI_Status st;
      MPI_CHECK(MPI_Recv(p, n, mpi_type(t.dtype()), peer, 0, comm_, &st));
      int got = 0;
      MPI_CHECK(MPI_Get_count(&st, mpi_type(t.dtype()), &got));
      WEFT_CHECK(got == n, "recv on ", name_, " from rank ", peer, ": expected ", n, " elements, got ", got);
    });
  }

  void all_to_all_v(Tensor& out, const std::vector<int64_t>& recv_counts, const Tensor& in,
                    const std::vector<int64_t>& send_counts) override {
    check_host(out);
    check_host(in);
    WEFT_CHECK(static_cast<int>(recv_counts.size()) == size_ && static_cast<int>(send_counts.size()) == size_,
               "all_to_all_v on ", name_, ": need one count per rank");
    std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
    int64_t so = 0, ro = 0;
    for (int r = 0; r < size_; ++r) {
      sc[r] = as_count(send_counts[r], "all_to_all_v");
      rc[r] = as_count(recv_counts[r], "all_to_all_v");
      sd[r] = as_count(so, "all_to_all_v");
      rd[r] = as_count(ro, "all_to_all_v");
      so += send_counts[r];
      ro += recv_counts[r];
    }
    WEFT_CHECK(so <= in.numel() && ro <= out.numel(), "all_to_all_v on ", name_, ": counts exceed the buffers");
    MPI_CHECK(MPI_Alltoallv(in.data_ptr(), sc.data(), sd.data(), mpi_type(in.dtype()), out.data_ptr(), rc.data(),
                            rd.data(), mpi_type(out.dtype()), comm_));
  }

  void barrier() override { MPI_CHECK(MPI_Barrier(comm_)); }

 private:
  void check_host(const Tensor& t) const {
    WEFT_CHECK(t.device() == Device::cpu, "MPI communicator ", name_, " handles CPU tensors only, got ",
               t.describe());
  }
  // part is this rank's slice of whole (an in-place reduce-scatter or all-gather).
  bool is_own_slice(const Tensor& part, const Tensor& whole) const {
    return part.data_ptr() == static_cast<const char*>(whole.data_ptr()) + size_t(rank_) * part.nbytes();
  }
  static void copy(Tensor& out, const Tensor& in) { std::memcpy(out.data_ptr(), in.data_ptr(), in.nbytes()); }
  template <typename F>
  static void each_chunk(const Tensor& t, F&& f) {
    char* p = static_cast<char*>(t.data_ptr());
    const size_t es = dtype_size(t.dtype());
    for (int64_t off = 0; off < t.numel(); off += kChunk)
      f(p + off * es, static_cast<int>(std::min(kChunk, t.numel() - off)));
  }

  std::string name_;
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Comm> make_mpi_comm(const std::string& name, const std::vector<std::vector<int>>& groups) {
  int world_rank = 0;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  int color = -1, key = 0;
  for (size_t g = 0; g < groups.size(); ++g)
    for (size_t i = 0; i < groups[g].size(); ++i)
      if (groups[g][i] == world_rank) {
        color = static_cast<int>(g);
        key = static_cast<int>(i);
      }
  WEFT_CHECK(color >= 0, "rank ", world_rank, " is in no ", name, " group");
  MPI_Comm comm;
  MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, key, &comm));
  return std::make_unique<MpiComm>(name, comm);
}

}  // namespace weft
