// weft/src/generate/sampling.cpp v1 — next-token choice (see sampling.h).
#include "generate/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

namespace weft {

void apply_repetition_penalty(std::vector<double>& logits, const std::vector<int32_t>& seen, double penalty) {
  if (penalty == 1.0) return;
  for (int32_t id : std::set<int32_t>(seen.begin(), seen.end())) {
    double& l = logits[static_cast<size_t>(id)];
    l = l < 0 ? l * penalty : l / penalty;
  }
}

void top_k_filter(std::vector<double>& logits, int64_t k) {
  if (k <= 0 || k >= int64_t(logits.size())) return;
  std::vector<double> sorted = logits;
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
  const double kth = sorted[static_cast<size_t>(k - 1)];
  for (double& l : logits)
    if (l < kth) l = -INFINITY;
}

void top_p_filter(std::vector<double>& logits, double p) {
  if (p >= 1.0) return;
  std::vector<size_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] < logits[b]; });
  const double m = logits[order.back()];
  double total = 0;
  for (double l : logits) total += std::exp(l - m);
  double cumulative = 0;
  for (size_t j = 0; j + 1 < order.size(); ++j) {
    cumulative += std::exp(logits[order[j]] - m) / total;
    if (cumulative <= 1.0 - p) logits[order[j]] = -INFINITY;
  }
}

int32_t next_token(std::vector<double> logits, const std::vector<int32_t>& seen, const SamplingOptions& o,
                   std::mt19937_64& gen) {
  apply_repetition_penalty(logits, seen, o.repetition_penalty);
  if (o.temperature <= 0)
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (double& l : logits) l /= o.temperature;
  top_k_filter(logits, o.top_k);
  top_p_filter(logits, o.top_p);
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> weights(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) weights[i] = std::exp(logits[i] - m);
  std::discrete_distribution<int32_t> draw(weights.begin(), weights.end());
  return draw(gen);
}

}  // namespace weft
