// weft/cuda/nccl_comm.cpp v7 — the communicator for GPU runs: NCCL for device tensors, MPI for host tensors.
//
// Each process group gets an NCCL communicator made from an ncclUniqueId that the group's first rank creates and
// MPI broadcasts. Collectives are queued on weft's compute stream, so they are ordered with the kernels around
// them without host synchronisation; overlapped ones (start_*) go on the group's own stream, fenced by events.
// Host tensors (loss sums, norms) keep going through MPI.
#include <cuda_bf16.h>
#include <nccl.h>

#include <cstring>
#include <memory>
#include <vector>

#include "cuda_check.h"
#include "event_marks.h"
#include "stream.h"
#include "dist/comm.h"
#include "nccl_comm.h"

#define NCCL_CHECK(call)                                                                                    \
  do {                                                                                                      \
    ncclResult_t nccl_status_ = (call);                                                                     \
    if (nccl_status_ != ncclSuccess)                                                                        \
      ::weft::fail(::weft::str("NCCL error in ", #call, " (", __FILE__, ":", __LINE__, "): ",              \
                               ncclGetErrorString(nccl_status_)));                                          \
  } while (0)

namespace weft {
namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
    case DType::u16: fail("NCCL has no 16-bit integer type: u16 tensors (split masters' low halves) do not travel");
  }
  return ncclUint8;
}

// Σ scale·x as an NCCL reduction (a plain sum when scale is 1). An operator may go once the call using it has
// been enqueued.
struct ScaledSum {
  ncclRedOp_t op = ncclSum;
  ncclComm_t comm;
  ScaledSum(DType t, double scale, ncclComm_t c) : comm(c) {
    if (scale == 1.0) return;
    WEFT_CHECK(t == DType::f32 || t == DType::f64 || t == DType::bf16,
               "scaled NCCL reductions take f32, f64 or bf16 tensors");
    // bf16 gradients (train.grad_dtype). The scale, a mean's 1/n, rounds to bf16: exact for n a power of two,
    // else off by up to 0.2 % (1/3 → 0.33398), one factor for every gradient, which Adam's step does not see
    // beyond its eps and the clip threshold.
    if (t == DType::bf16) {
      __nv_bfloat16 s = __float2bfloat16(static_cast<float>(scale));
      NCCL_CHECK(ncclRedOpCreatePreMulSum(&op, &s, ncclBfloat16, ncclScalarHostImmediate, comm));
    } else if (t == DType::f32) {
      float s = static_cast<float>(scale);
      NCCL_CHECK(ncclRedOpCreatePreMulSum(&op, &s, ncclFloat32, ncclScalarHostImmediate, comm));
    } else {
      NCCL_CHECK(ncclRedOpCreatePreMulSum(&op, &scale, ncclFloat64, ncclScalarHostImmediate, comm));
    }
  }
  ~ScaledSum() {
    if (op != ncclSum) ncclRedOpDestroy(op, comm);
  }
};

class HybridComm final : public Comm {
 public:
  HybridComm(std::unique_ptr<Comm> host) : host_(std::move(host)) {
    ncclUniqueId id{};
    if (host_->rank() == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    Tensor bytes = Tensor::empty({static_cast<int64_t>(sizeof id)}, DType::u8);
    std::memcpy(bytes.data_ptr(), &id, sizeof id);
    host_->broadcast(bytes, 0);
    std::memcpy(&id, bytes.data_ptr(), sizeof id);
    NCCL_CHECK(ncclCommInitRank(&nccl_, host_->size(), id, host_->rank()));
  }
  ~HybridComm() override {
    for (const auto* waits : {&timed_waits_, &spare_waits_})
      for (const TimedWait& w : *waits) {
        cudaEventDestroy(w.before);
        cudaEventDestroy(w.after);
      }
    if (side_) {
      cudaEventDestroy(issued_);
      cudaEventDestroy(finished_);
      cudaStreamDestroy(side_);
    }
    if (nccl_) ncclCommDestroy(nccl_);
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const std::string& name() const override { return host_->name(); }

  void all_reduce(Tensor& t, ReduceOp op) override {
    if (on_host(t)) return host_->all_reduce(t, op);
    if (size() == 1) return;
    all_reduce_on(t, op == ReduceOp::sum ? ncclSum : ncclMax, cuda::stream());
  }
  void reduce_scatter(Tensor& out, const Tensor& in) override {
    if (on_host(in)) return host_->reduce_scatter(out, in);
    reduce_scatter_on(out, in, ncclSum, cuda::stream());
  }
  void all_gather(Tensor& out, const Tensor& in) override {
    if (on_host(in)) return host_->all_gather(out, in);
    all_gather_on(out, in, cuda::stream());
  }
  void start_all_reduce(Tensor& t, double scale) override {
    if (on_host(t) || size() == 1) return Comm::start_all_reduce(t, scale);
    const ScaledSum op(t.dtype(), scale, nccl_);
    all_reduce_on(t, op.op, side_stream());
  }
  void start_reduce_scatter(Tensor& out, const Tensor& in, double scale) override {
    if (on_host(in)) return Comm::start_reduce_scatter(out, in, scale);
    const ScaledSum op(in.dtype(), scale, nccl_);
    reduce_scatter_on(out, in, op.op, side_stream());
  }
  void start_all_gather(Tensor& out, const Tensor& in) override {
    if (on_host(in)) return Comm::start_all_gather(out, in);
    all_gather_on(out, in, side_stream());
  }
  void wait_started() override {
    marks_.forget();
    if (!side_) return;
    CUDA_CHECK(cudaEventRecord(finished_, side_));
    compute_waits_for(finished_);
  }
  // A mark is an event recorded on the group's stream; the events are reused once wait_started() forgets them (a
  // wait already queued keeps the record it was queued behind).
  int started_mark() override {
    if (!side_) return -1;  // nothing was ever started
    return marks_.record(side_);
  }
  void wait_started_until(int mark) override {
    if (mark < 0) return;
    compute_waits_for(marks_.event(mark));
  }
  // The counted waits' device time, read once the last of them has passed (the host waits for that here).
  double take_wait_ms() override {
    double ms = Comm::take_wait_ms();  // collectives on host tensors
    if (!timed_waits_.empty()) CUDA_CHECK(cudaEventSynchronize(timed_waits_.back().after));
    for (const TimedWait& w : timed_waits_) {
      float held = 0;
      CUDA_CHECK(cudaEventElapsedTime(&held, w.before, w.after));
      ms += held;
    }
    spare_waits_.insert(spare_waits_.end(), timed_waits_.begin(), timed_waits_.end());
    timed_waits_.clear();
    return ms;
  }
  void broadcast(Tensor& t, int root) override {
    if (on_host(t)) return host_->broadcast(t, root);
    NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.dtype()), root, nccl_, cuda::stream()));
  }
  void send(const Tensor& t, int peer) override {
    if (on_host(t)) return host_->send(t, peer);
    NCCL_CHECK(ncclSend(t.data_ptr(), t.numel(), nccl_type(t.dtype()), peer, nccl_, cuda::stream()));
  }
  void recv(Tensor& t, int peer) override {
    if (on_host(t)) return host_->recv(t, peer);
    NCCL_CHECK(ncclRecv(t.data_ptr(), t.numel(), nccl_type(t.dtype()), peer, nccl_, cuda::stream()));
  }
  void exchange(const std::vector<std::pair<Tensor, int>>& sends,
                const std::vector<std::pair<Tensor, int>>& recvs) override {
    if (sends.empty() && recvs.empty()) return;
    const Tensor& any = sends.empty() ? recvs[0].first : sends[0].first;
    if (on_host(any)) return host_->exchange(sends, recvs);
    NCCL_CHECK(ncclGroupStart());
    for (const auto& [t, peer] : sends)
      NCCL_CHECK(ncclSend(t.data_ptr(), t.numel(), nccl_type(t.dtype()), peer, nccl_, cuda::stream()));
    for (const auto& [t, peer] : recvs)
      NCCL_CHECK(ncclRecv(t.data_ptr(), t.numel(), nccl_type(t.dtype()), peer, nccl_, cuda::stream()));
    NCCL_CHECK(ncclGroupEnd());
  }
  void all_to_all_v(Tensor& out, const std::vector<int64_t>& recv_counts, const Tensor& in,
                    const std::vector<int64_t>& send_counts) override {
    if (on_host(in)) return host_->all_to_all_v(out, recv_counts, in, send_counts);
    const size_t es = dtype_size(in.dtype());
    int64_t so = 0, ro = 0;
    NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < size(); ++r) {
      NCCL_CHECK(ncclSend(static_cast<char*>(in.data_ptr()) + so * es, send_counts[r], nccl_type(in.dtype()), r, nccl_,
                          cuda::stream()));
      NCCL_CHECK(ncclRecv(static_cast<char*>(out.data_ptr()) + ro * es, recv_counts[r], nccl_type(out.dtype()), r,
                          nccl_, cuda::stream()));
      so += send_counts[r];
      ro += recv_counts[r];
    }
    NCCL_CHECK(ncclGroupEnd());
  }
  void barrier() override {
    CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
    host_->barrier();
  }

 private:
  static bool on_host(const Tensor& t) { return t.device() == Device::cpu; }
  // The device collectives, queued on `stream` (the compute stream, or the group's own for start_*).
  void all_reduce_on(Tensor& t, ncclRedOp_t op, cudaStream_t stream) {
    NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.dtype()), op, nccl_, stream));
  }
  void reduce_scatter_on(Tensor& out, const Tensor& in, ncclRedOp_t op, cudaStream_t stream) {
    WEFT_CHECK(in.numel() == out.numel() * size(), "reduce_scatter on ", name(), ": sizes do not match");
    NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), out.numel(), nccl_type(in.dtype()), op, nccl_, stream));
  }
  void all_gather_on(Tensor& out, const Tensor& in, cudaStream_t stream) {
    WEFT_CHECK(out.numel() == in.numel() * size(), "all_gather on ", name(), ": sizes do not match");
    NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), nccl_type(in.dtype()), nccl_, stream));
  }
  // The compute stream waits for `done` (an event on the group's stream); while counting, between two timing
  // events whose interval is how long the stream was held.
  void compute_waits_for(cudaEvent_t done) {
    if (!counting_waits_) {
      CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(), done, 0));
      return;
    }
    TimedWait w{};
    if (spare_waits_.empty()) {
      CUDA_CHECK(cudaEventCreate(&w.before));
      CUDA_CHECK(cudaEventCreate(&w.after));
    } else {
      w = spare_waits_.back();
      spare_waits_.pop_back();
    }
    CUDA_CHECK(cudaEventRecord(w.before, cuda::stream()));
    CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(), done, 0));
    CUDA_CHECK(cudaEventRecord(w.after, cuda::stream()));
    timed_waits_.push_back(w);
  }
  // The group's own stream, made to wait for everything issued on the compute stream so far.
  cudaStream_t side_stream() {
    if (!side_) {
      // The highest priority: a collective's kernels then take SMs as soon as the backward's free some, instead of
      // queueing behind the next GEMM while the peer's half of the collective waits.
      int least = 0, greatest = 0;
      CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
      CUDA_CHECK(cudaStreamCreateWithPriority(&side_, cudaStreamNonBlocking, greatest));
      CUDA_CHECK(cudaEventCreateWithFlags(&issued_, cudaEventDisableTiming));
      CUDA_CHECK(cudaEventCreateWithFlags(&finished_, cudaEventDisableTiming));
    }
    CUDA_CHECK(cudaEventRecord(issued_, cuda::stream()));
    CUDA_CHECK(cudaStreamWaitEvent(side_, issued_, 0));
    return side_;
  }
  std::unique_ptr<Comm> host_;
  ncclComm_t nccl_ = nullptr;
  cudaStream_t side_ = nullptr;
  cudaEvent_t issued_ = nullptr, finished_ = nullptr;  // compute → side and side → compute fences
  cuda::EventMarks marks_;  // started_mark's marks on the group's stream
  struct TimedWait {
    cudaEvent_t before, after;
  };
  std::vector<TimedWait> timed_waits_, spare_waits_;  // counted waits not yet read, and their events for reuse
};

}  // namespace

std::unique_ptr<Comm> make_nccl_comm(const std::string& name, const std::vector<std::vector<int>>& groups) {
  return std::make_unique<HybridComm>(make_mpi_comm(name, groups));
}

}  // namespace weft
