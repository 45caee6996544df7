// weft/src/parallel/expert_dispatch.cpp v1 — permutation, all-to-all and regrouping of expert rows; token dropping.
#include "parallel/expert_dispatch.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ops/ops.h"

namespace weft {

ExpertDispatcher::ExpertDispatcher(Comm* ep, int64_t num_experts)
    : ep_(ep && ep->size() > 1 ? ep : nullptr), experts_(num_experts) {
  if (ep_) ep_size_ = ep_->size(), ep_rank_ = ep_->rank();
  WEFT_CHECK(num_experts % ep_size_ == 0, "expert parallelism: ", num_experts, " experts do not split over ep = ",
             ep_size_, " ranks");
  local_ = num_experts / ep_size_;
  first_ = ep_rank_ * local_;
}

ExpertDispatcher::Plan ExpertDispatcher::plan(const Tensor& experts, int64_t pad) const {
  Plan p;
  p.pad = pad;
  p.rows = Tensor::empty(experts.shape(), DType::i32, experts.device());
  ops_for(experts).moe_dispatch_plan(p.rows, p.send, experts, experts_, pad);
  if (!ep_) {
    p.recv = p.local_rows = p.send;
    p.received = std::accumulate(p.send.begin(), p.send.end(), int64_t(0));
    return p;
  }
  // Each rank tells every other how many rows it sends to each of that rank's experts.
  const Tensor send = Tensor::from_vector(p.send, {experts_});
  Tensor recv = Tensor::empty({experts_}, DType::i64);
  ep_->all_to_all_v(recv, std::vector<int64_t>(ep_size_, local_), send, std::vector<int64_t>(ep_size_, local_));
  p.recv.assign(recv.data<int64_t>(), recv.data<int64_t>() + experts_);
  p.local_rows.assign(static_cast<size_t>(local_), 0);
  for (int s = 0; s < ep_size_; ++s)
    for (int64_t e = 0; e < local_; ++e) p.local_rows[e] += p.recv[s * local_ + e];
  p.received = std::accumulate(p.local_rows.begin(), p.local_rows.end(), int64_t(0));
  // Received rows come source by source, each source's by local expert; their places grouped by local expert.
  std::vector<int64_t> start(static_cast<size_t>(local_), 0);
  for (int64_t e = 1; e < local_; ++e) start[e] = start[e - 1] + p.local_rows[e - 1];
  std::vector<int32_t> place;
  place.reserve(static_cast<size_t>(p.received));
  for (int s = 0; s < ep_size_; ++s)
    for (int64_t e = 0; e < local_; ++e)
      for (int64_t i = 0; i < p.recv[s * local_ + e]; ++i) place.push_back(static_cast<int32_t>(start[e]++));
  p.regroup = Tensor::from_vector(place, {p.received, 1}).to(experts.device());
  return p;
}

Tensor ExpertDispatcher::exchange_forward(const Tensor& sent, const Plan& plan) const {
  if (!ep_) return sent;
  const int64_t cols = sent.size(1);
  std::vector<int64_t> send_counts(ep_size_, 0), recv_counts(ep_size_, 0);
  for (int r = 0; r < ep_size_; ++r)
    for (int64_t e = 0; e < local_; ++e) {
      send_counts[r] += plan.send[r * local_ + e] * cols;
      recv_counts[r] += plan.recv[r * local_ + e] * cols;
    }
  Tensor received = Tensor::empty({plan.received, cols}, sent.dtype(), sent.device());
  ep_->all_to_all_v(received, recv_counts, sent, send_counts);
  Tensor grouped = Tensor::empty(received.shape(), sent.dtype(), sent.device());
  ops_for(sent).moe_permute(grouped, received, plan.regroup);
  return grouped;
}

Tensor ExpertDispatcher::exchange_backward(const Tensor& grouped, const Plan& plan) const {
  if (!ep_) return grouped;
  const int64_t cols = grouped.size(1);
  Tensor received = Tensor::empty(grouped.shape(), grouped.dtype(), grouped.device());
  ops_for(grouped).moe_unpermute(received, grouped, plan.regroup);
  std::vector<int64_t> send_counts(ep_size_, 0), recv_counts(ep_size_, 0);
  for (int r = 0; r < ep_size_; ++r)
    for (int64_t e = 0; e < local_; ++e) {
      send_counts[r] += plan.recv[r * local_ + e] * cols;
      recv_counts[r] += plan.send[r * local_ + e] * cols;
    }
  const int64_t rows = std::accumulate(plan.send.begin(), plan.send.end(), int64_t(0));
  Tensor sent = Tensor::empty({rows, cols}, grouped.dtype(), grouped.device());
  ep_->all_to_all_v(sent, recv_counts, received, send_counts);
  return sent;
}

Tensor ExpertDispatcher::dispatch(const Tensor& x, const Plan& plan) const {
  const int64_t rows = std::accumulate(plan.send.begin(), plan.send.end(), int64_t(0));
  Tensor sent = Tensor::empty({rows, x.size(1)}, x.dtype(), x.device());
  Ops& ops = ops_for(x);
  if (plan.pad > 0) ops.zero(sent);  // padding rows (no pair maps to them) are zeros
  ops.moe_permute(sent, x, plan.rows);
  return exchange_forward(sent, plan);
}

Tensor ExpertDispatcher::combine(const Tensor& y, const Plan& plan) const {
  const Tensor sent = exchange_backward(y, plan);
  Tensor out = Tensor::empty({plan.rows.size(0), y.size(1)}, y.dtype(), y.device());
  ops_for(y).moe_unpermute(out, sent, plan.rows);
  return out;
}

Tensor ExpertDispatcher::dispatch_pairs(const Tensor& v, const Plan& plan) const {
  const int64_t rows = std::accumulate(plan.send.begin(), plan.send.end(), int64_t(0));
  Tensor sent = Tensor::zeros({rows, 1}, v.dtype(), v.device());
  ops_for(v).moe_pair_values(sent, v, plan.rows, true);
  return exchange_forward(sent, plan);
}

Tensor ExpertDispatcher::combine_pairs(const Tensor& v, const Plan& plan) const {
  const Tensor sent = exchange_backward(v, plan);
  Tensor out = Tensor::empty(plan.rows.shape(), v.dtype(), v.device());
  ops_for(v).moe_pair_values(out, sent, plan.rows, false);
  return out;
}

int64_t drop_over_capacity(Tensor& experts, const Tensor& probs, int64_t num_experts, double factor,
                           bool drop_by_position) {
  WEFT_ASSERT(experts.device() == Device::cpu && probs.device() == Device::cpu);
  const int64_t t = experts.size(0), k = experts.size(1);
  const int64_t capacity = static_cast<int64_t>(std::ceil(double(t * k) / double(num_experts) * factor));
  const std::vector<double> p = probs.to_doubles();
  int32_t* ex = experts.data<int32_t>();
  std::vector<std::vector<int64_t>> pairs(static_cast<size_t>(num_experts));  // each expert's pairs, token order
  for (int64_t i = 0; i < t * k; ++i) pairs[ex[i]].push_back(i);
  for (auto& list : pairs) {
    if (static_cast<int64_t>(list.size()) <= capacity) continue;
    if (!drop_by_position)
      std::stable_sort(list.begin(), list.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
    for (size_t j = static_cast<size_t>(capacity); j < list.size(); ++j) ex[list[j]] = -1;
  }
  return capacity;
}

}  // namespace weft
