// weft/cuda/event_marks.h v1 — numbered points in a stream's work that other streams can wait for: CUDA events
// recorded in turn and reused once forgotten (nccl_comm.cpp's started collectives, cuda_ops.cu's side queue).
#pragma once
#include <cuda_runtime.h>

#include <vector>

#include "cuda_check.h"

namespace weft::cuda {

class EventMarks {
 public:
  EventMarks() = default;
  EventMarks(const EventMarks&) = delete;
  EventMarks& operator=(const EventMarks&) = delete;
  ~EventMarks() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  // Marks the work queued on `stream` so far; returns the mark's number.
  int record(cudaStream_t stream) {
    if (live_ == events_.size()) {
      cudaEvent_t e = nullptr;
      CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      events_.push_back(e);
    }
    CUDA_CHECK(cudaEventRecord(events_[live_], stream));
    return static_cast<int>(live_++);
  }
  // The event of a mark not yet forgotten.
  cudaEvent_t event(int mark) const {
    WEFT_ASSERT(mark >= 0 && static_cast<size_t>(mark) < live_);
    return events_[mark];
  }
  // Forgets every mark; their events are recorded again by later marks (a wait already queued keeps the record it
  // was queued behind).
  void forget() { live_ = 0; }

 private:
  std::vector<cudaEvent_t> events_;  // the first live_ of them are marks in use
  size_t live_ = 0;
};

}  // namespace weft::cuda
