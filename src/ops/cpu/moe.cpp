// weft/src/ops/cpu/moe.cpp v2 — CPU reference of the mixture-of-experts ops: routing, its statistics and backward,
// the dispatch order, permutation, and the per-group GEMMs' defaults for every backend.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "ops/cpu/cpu_ops.h"

namespace weft {
namespace {

// softmax(l) over n values into s (doubles); returns logsumexp(l).
template <typename T>
double softmax(const T* l, int64_t n, std::vector<double>& s) {
  const double m = *std::max_element(l, l + n);
  double sum = 0;
  for (int64_t e = 0; e < n; ++e) sum += (s[e] = std::exp(double(l[e]) - m));
  for (int64_t e = 0; e < n; ++e) s[e] /= sum;
  return m + std::log(sum);
}

// The k experts of highest logit, ties to the lower index; with groups, only from the p.group_topk groups whose
// highest logit is highest (ties to the lower group).
template <typename T>
void top_k(const T* l, int64_t n, const RouterParams& p, std::vector<int32_t>& order) {
  std::vector<double> v(l, l + n);
  if (p.num_groups > 0) {
    const int64_t size = n / p.num_groups;
    std::vector<int32_t> groups(static_cast<size_t>(p.num_groups));
    std::vector<double> best(static_cast<size_t>(p.num_groups));
    for (int64_t g = 0; g < p.num_groups; ++g) best[g] = *std::max_element(v.begin() + g * size, v.begin() + (g + 1) * size);
    std::iota(groups.begin(), groups.end(), 0);
    std::partial_sort(groups.begin(), groups.begin() + p.group_topk, groups.end(),
                      [&](int32_t a, int32_t b) { return best[a] > best[b] || (best[a] == best[b] && a < b); });
    for (int64_t j = p.group_topk; j < p.num_groups; ++j)
      std::fill(v.begin() + groups[j] * size, v.begin() + (groups[j] + 1) * size, -INFINITY);
  }
  order.resize(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + p.topk, order.end(),
                    [&](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
}

void check_pairs(const Tensor& pairs, int64_t tokens, const char* op) {
  WEFT_CHECK(pairs.ndim() == 2 && pairs.size(0) == tokens, op, ": expected [", tokens, ", k] pairs, got ",
             pairs.describe());
}

}  // namespace

void CpuOps::moe_route(Tensor& probs, Tensor& experts, const Tensor& logits, const RouterParams& p) {
  const int64_t t = logits.size(0), n = logits.size(1), k = p.topk;
  WEFT_CHECK(k >= 1 && k <= n && probs.numel() == t * k && experts.numel() == t * k &&
                 (p.num_groups == 0 || (n % p.num_groups == 0 && k <= p.group_topk * (n / p.num_groups))),
             "moe_route: logits ", logits.describe(), ", probs ", probs.describe(), ", experts ", experts.describe(),
             ", top-", k, " of ", p.group_topk, " of ", p.num_groups, " groups");
  dispatch_float(logits, [&]<typename T>() {
    std::vector<double> s(static_cast<size_t>(n));
    std::vector<int32_t> order;
    for (int64_t i = 0; i < t; ++i) {
      const T* l = logits.data<T>() + i * n;
      top_k(l, n, p, order);
      if (p.pre_softmax) softmax(l, n, s);
      double top_sum = 0;
      const double top_max = double(l[order[0]]);
      for (int64_t j = 0; j < k; ++j) top_sum += std::exp(double(l[order[j]]) - top_max);
      for (int64_t j = 0; j < k; ++j) {
        experts.data<int32_t>()[i * k + j] = order[j];
        probs.data<T>()[i * k + j] = static_cast<T>(
            p.scaling * (p.pre_softmax ? s[order[j]] : std::exp(double(l[order[j]]) - top_max) / top_sum));
      }
    }
  });
}

void CpuOps::moe_router_stats(Tensor& score_sum, Tensor& counts, Tensor& z_sum, const Tensor& logits,
                              const Tensor& experts) {
  const int64_t t = logits.size(0), n = logits.size(1);
  check_pairs(experts, t, "moe_router_stats");
  const int64_t k = experts.size(1);
  dispatch_float(logits, [&]<typename T>() {
    std::vector<double> s(static_cast<size_t>(n)), scores(static_cast<size_t>(n), 0.0), count(static_cast<size_t>(n), 0.0);
    double z = 0;
    for (int64_t i = 0; i < t; ++i) {
      const double lse = softmax(logits.data<T>() + i * n, n, s);
      z += lse * lse;
      for (int64_t e = 0; e < n; ++e) scores[e] += s[e];
      for (int64_t j = 0; j < k; ++j) count[experts.data<int32_t>()[i * k + j]] += 1;
    }
    for (int64_t e = 0; e < n; ++e) {
      score_sum.data<T>()[e] = static_cast<T>(scores[e]);
      counts.data<T>()[e] = static_cast<T>(count[e]);
    }
    z_sum.data<T>()[0] = static_cast<T>(z);
  });
}

void CpuOps::moe_route_backward(Tensor& dlogits, const Tensor& dprobs, const Tensor& probs, const Tensor& experts,
                                const Tensor& logits, const Tensor& aux_weight, double z_scale,
                                const RouterParams& p) {
  const int64_t t = logits.size(0), n = logits.size(1), k = p.topk;
  WEFT_CHECK(dlogits.shape() == logits.shape() && dprobs.numel() == t * k && probs.numel() == t * k &&
                 experts.numel() == t * k && (!aux_weight.defined() || aux_weight.numel() == n),
             "moe_route_backward: logits ", logits.describe(), ", dprobs ", dprobs.describe(), ", aux_weight ",
             aux_weight.describe());
  dispatch_float(logits, [&]<typename T>() {
    std::vector<double> s(static_cast<size_t>(n)), g(static_cast<size_t>(n));
    for (int64_t i = 0; i < t; ++i) {
      const double lse = softmax(logits.data<T>() + i * n, n, s);
      const int32_t* ex = experts.data<int32_t>() + i * k;
      const T* dp = dprobs.data<T>() + i * k;
      const T* pr = probs.data<T>() + i * k;
      // g: the gradient with respect to softmax(l) of every term that reads it.
      for (int64_t e = 0; e < n; ++e) g[e] = aux_weight.defined() ? double(aux_weight.data<T>()[e]) : 0.0;
      // The weights are p.scaling times the probabilities: dp·scaling reaches them, and pr/scaling are they.
      if (p.pre_softmax)
        for (int64_t j = 0; j < k; ++j) g[ex[j]] += double(dp[j]) * p.scaling;
      double sg = 0;
      for (int64_t e = 0; e < n; ++e) sg += s[e] * g[e];
      T* dl = dlogits.data<T>() + i * n;
      for (int64_t e = 0; e < n; ++e) dl[e] = static_cast<T>(s[e] * (g[e] - sg) + 2 * z_scale * lse * s[e]);
      if (!p.pre_softmax) {  // the softmax over the top-k logits alone
        double pd = 0;
        for (int64_t j = 0; j < k; ++j) pd += double(pr[j]) * double(dp[j]);
        for (int64_t j = 0; j < k; ++j)
          dl[ex[j]] += static_cast<T>(double(pr[j]) / p.scaling * (double(dp[j]) * p.scaling - pd));
      }
    }
  });
}

void CpuOps::moe_dispatch_plan(Tensor& rows, std::vector<int64_t>& counts, const Tensor& experts,
                               int64_t num_experts, int64_t pad) {
  WEFT_CHECK(rows.shape() == experts.shape() && rows.dtype() == DType::i32 && experts.dtype() == DType::i32,
             "moe_dispatch_plan: rows ", rows.describe(), ", experts ", experts.describe());
  const int64_t pairs = experts.numel();
  const int32_t* ex = experts.data<int32_t>();
  counts.assign(static_cast<size_t>(num_experts), 0);
  for (int64_t i = 0; i < pairs; ++i)
    if (ex[i] >= 0) ++counts[ex[i]];
  std::vector<int64_t> next(static_cast<size_t>(num_experts), 0);
  for (int64_t e = 0, at = 0; e < num_experts; ++e) {
    WEFT_CHECK(pad == 0 || counts[e] <= pad, "moe_dispatch_plan: expert ", e, " has ", counts[e],
               " pairs, more than its ", pad, " rows");
    next[e] = at;
    at += pad > 0 ? pad : counts[e];
  }
  if (pad > 0) counts.assign(static_cast<size_t>(num_experts), pad);
  for (int64_t i = 0; i < pairs; ++i) rows.data<int32_t>()[i] = ex[i] >= 0 ? static_cast<int32_t>(next[ex[i]]++) : -1;
}

void CpuOps::moe_permute(Tensor& out, const Tensor& in, const Tensor& rows) {
  const int64_t t = in.size(0), h = in.size(1);
  check_pairs(rows, t, "moe_permute");
  const int64_t k = rows.size(1);
  dispatch_float(in, [&]<typename T>() {
    for (int64_t i = 0; i < t * k; ++i) {
      const int32_t r = rows.data<int32_t>()[i];
      if (r < 0) continue;
      WEFT_ASSERT(r < out.size(0));
      std::copy_n(in.data<T>() + (i / k) * h, h, out.data<T>() + int64_t(r) * h);
    }
  });
}

void CpuOps::moe_unpermute(Tensor& out, const Tensor& in, const Tensor& rows) {
  const int64_t t = out.size(0), h = out.size(1);
  check_pairs(rows, t, "moe_unpermute");
  const int64_t k = rows.size(1);
  dispatch_float(in, [&]<typename T>() {
    std::vector<double> acc(static_cast<size_t>(h));
    for (int64_t i = 0; i < t; ++i) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < k; ++j) {
        const int32_t r = rows.data<int32_t>()[i * k + j];
        if (r < 0) continue;
        const T* src = in.data<T>() + int64_t(r) * h;
        for (int64_t c = 0; c < h; ++c) acc[c] += double(src[c]);
      }
      for (int64_t c = 0; c < h; ++c) out.data<T>()[i * h + c] = static_cast<T>(acc[c]);
    }
  });
}

void CpuOps::moe_pair_values(Tensor& out, const Tensor& in, const Tensor& rows, bool to_rows) {
  const int64_t pairs = rows.numel();
  WEFT_CHECK((to_rows ? in.numel() : out.numel()) == pairs, "moe_pair_values: ", pairs, " pairs, in ", in.describe(),
             ", out ", out.describe());
  dispatch_float(in, [&]<typename T>() {
    for (int64_t i = 0; i < pairs; ++i) {
      const int32_t r = rows.data<int32_t>()[i];
      if (to_rows && r >= 0) out.data<T>()[r] = in.data<T>()[i];
      if (!to_rows) out.data<T>()[i] = r >= 0 ? in.data<T>()[r] : T(0);
    }
  });
}

// ---------------------------------------------------------------- per-group GEMMs (every backend's default)

void Ops::grouped_gemm(Tensor& c, const Tensor& a, const std::vector<Tensor>& b, bool trans_b,
                       const std::vector<int64_t>& rows) {
  WEFT_CHECK(b.size() == rows.size(), "grouped_gemm: ", b.size(), " weights for ", rows.size(), " groups");
  int64_t at = 0;
  for (size_t g = 0; g < rows.size(); ++g) {
    if (rows[g] > 0) {
      Tensor cg = c.rows(at, at + rows[g]);
      gemm(cg, a.rows(at, at + rows[g]), false, b[g], trans_b, 1.0, 0.0);
    }
    at += rows[g];
  }
}

void Ops::grouped_gemm_wgrad(std::vector<Tensor>& db, const Tensor& dc, const Tensor& a,
                             const std::vector<int64_t>& rows, const std::vector<double>& beta) {
  WEFT_CHECK(db.size() == rows.size() && beta.size() == rows.size(), "grouped_gemm_wgrad: ", db.size(),
             " gradients for ", rows.size(), " groups");
  int64_t at = 0;
  for (size_t g = 0; g < rows.size(); ++g) {
    if (rows[g] > 0) gemm(db[g], dc.rows(at, at + rows[g]), true, a.rows(at, at + rows[g]), false, 1.0, beta[g]);
    else if (beta[g] == 0) zero(db[g]);
    at += rows[g];
  }
}

}  // namespace weft
