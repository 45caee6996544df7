// weft/src/ops/cpu/attention.cpp v3 — CPU reference attention: QKV layout changes and exact softmax attention.
//
// The forward keeps only out and the log-sum-exp per (head, query), like flash attention, and the backward
// recomputes the probabilities from them; so the CPU and CUDA implementations share one interface and one set
// of saved tensors.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/cpu_ops.h"

namespace weft {
namespace {

struct QkvLayout {
  int64_t tokens, groups, q_per_group, dim;
};

QkvLayout qkv_layout(const Tensor& qkv, const Tensor& q, const Tensor& k, const Tensor& v) {
  WEFT_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.shape() == k.shape(), "qkv: expected q [t, heads, d] and k, v ",
             "[t, groups, d], got ", q.describe(), ", ", k.describe(), ", ", v.describe());
  QkvLayout l{q.size(0), k.size(1), q.size(1) / k.size(1), q.size(2)};
  WEFT_CHECK(l.q_per_group * l.groups == q.size(1) && qkv.numel() == l.tokens * l.groups * (l.q_per_group + 2) * l.dim,
             "qkv: ", qkv.describe(), " does not match q ", q.describe(), " and k ", k.describe());
  return l;
}

// Calls visit(qkv_offset, head_tensor, head_offset, dim) for every head vector of every token.
template <typename Visit>
void for_each_qkv_head(const QkvLayout& l, Visit&& visit) {
  const int64_t stride = (l.q_per_group + 2) * l.dim;
  for (int64_t t = 0; t < l.tokens; ++t)
    for (int64_t g = 0; g < l.groups; ++g) {
      const int64_t base = (t * l.groups + g) * stride;
      for (int64_t j = 0; j < l.q_per_group; ++j)
        visit(base + j * l.dim, 0, (t * l.groups * l.q_per_group + g * l.q_per_group + j) * l.dim);
      visit(base + l.q_per_group * l.dim, 1, (t * l.groups + g) * l.dim);
      visit(base + (l.q_per_group + 1) * l.dim, 2, (t * l.groups + g) * l.dim);
    }
}

struct Segment {
  int64_t begin, end;
};

std::vector<Segment> segments_of(const Tensor& cu_seqlens, int64_t tokens) {
  WEFT_CHECK(cu_seqlens.dtype() == DType::i32 && cu_seqlens.numel() >= 2, "attention: cu_seqlens must be i32 with ",
             ">= 2 entries, got ", cu_seqlens.describe());
  const int32_t* cu = cu_seqlens.data<int32_t>();
  std::vector<Segment> segs;
  WEFT_CHECK(cu[0] == 0 && cu[cu_seqlens.numel() - 1] == tokens, "attention: cu_seqlens must run from 0 to ", tokens);
  for (int64_t s = 0; s + 1 < cu_seqlens.numel(); ++s) {
    WEFT_CHECK(cu[s] <= cu[s + 1], "attention: cu_seqlens must not decrease");
    segs.push_back({cu[s], cu[s + 1]});
  }
  return segs;
}

// The first key visible to query i of a segment starting at `begin`.
inline int64_t first_key(int64_t i, int64_t begin, int64_t window) {
  return window > 0 ? std::max(begin, i - window + 1) : begin;
}

// The last key visible to query i of a segment ending at `end`.
inline int64_t last_key(int64_t i, int64_t end, bool causal) { return causal ? i : end - 1; }

void check_mask(const AttentionParams& p) {
  WEFT_CHECK(p.causal || p.window == 0, "attention: a sliding window needs the causal mask");
}

double get_stat(const Tensor& t, int64_t i) {
  return t.dtype() == DType::f64 ? t.data<double>()[i] : double(t.data<float>()[i]);
}
void set_stat(Tensor& t, int64_t i, double value) {
  if (t.dtype() == DType::f64) t.data<double>()[i] = value;
  else t.data<float>()[i] = static_cast<float>(value);
}

}  // namespace

void CpuOps::qkv_split(Tensor& q, Tensor& k, Tensor& v, const Tensor& qkv, const Tensor& positions,
                       const Tensor& cos, const Tensor& sin) {
  const QkvLayout l = qkv_layout(qkv, q, k, v);
  dispatch_float(qkv, [&]<typename T>() {
    const T* src = qkv.data<T>();
    T* dst[3] = {q.data<T>(), k.data<T>(), v.data<T>()};
    for_each_qkv_head(l, [&](int64_t from, int which, int64_t to) {
      std::copy(src + from, src + from + l.dim, dst[which] + to);
    });
  });
  rope(q, positions, cos, sin, false);
  rope(k, positions, cos, sin, false);
}

void CpuOps::qkv_merge(Tensor& dqkv, const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& positions,
                       const Tensor& cos, const Tensor& sin) {
  const QkvLayout l = qkv_layout(dqkv, dq, dk, dv);
  Tensor rq = dq.clone(), rk = dk.clone();
  rope(rq, positions, cos, sin, true);
  rope(rk, positions, cos, sin, true);
  dispatch_float(dqkv, [&]<typename T>() {
    T* dst = dqkv.data<T>();
    const T* src[3] = {rq.data<T>(), rk.data<T>(), dv.data<T>()};
    for_each_qkv_head(l, [&](int64_t to, int which, int64_t from) {
      std::copy(src[which] + from, src[which] + from + l.dim, dst + to);
    });
  });
}

void CpuOps::attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& cu_seqlens, const AttentionParams& p) {
  const int64_t tokens = q.size(0), H = p.num_heads, Hk = p.num_kv_heads, D = p.head_dim;
  const int64_t Dv = p.v_head_dim ? p.v_head_dim : D;
  WEFT_CHECK(q.numel() == tokens * H * D && k.numel() == tokens * Hk * D && v.numel() == tokens * Hk * Dv &&
                 out.numel() == tokens * H * Dv && lse.numel() == H * tokens && H % Hk == 0,
             "attention_forward: bad shapes q ", q.describe(), " k ", k.describe(), " out ", out.describe(), " lse ",
             lse.describe());
  check_mask(p);
  const auto segs = segments_of(cu_seqlens, tokens);
  const int64_t rep = H / Hk;
  dispatch_float(q, [&]<typename T>() {
    const T *qp = q.data<T>(), *kp = k.data<T>(), *vp = v.data<T>();
    T* op = out.data<T>();
    std::vector<double> score, acc(Dv);
    for (const Segment& s : segs)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t hk = h / rep;
        for (int64_t i = s.begin; i < s.end; ++i) {
          const int64_t j0 = first_key(i, s.begin, p.window), j1 = last_key(i, s.end, p.causal);
          const T* qi = qp + (i * H + h) * D;
          score.assign(static_cast<size_t>(j1 - j0 + 1), 0.0);
          double mx = -INFINITY;
          for (int64_t j = j0; j <= j1; ++j) {
            const T* kj = kp + (j * Hk + hk) * D;
            double dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += double(qi[d]) * double(kj[d]);
            score[j - j0] = dot * p.scale;
            mx = std::max(mx, score[j - j0]);
          }
          double sum = 0;
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t j = j0; j <= j1; ++j) {
            const double e = std::exp(score[j - j0] - mx);
            sum += e;
            const T* vj = vp + (j * Hk + hk) * Dv;
            for (int64_t d = 0; d < Dv; ++d) acc[d] += e * double(vj[d]);
          }
          for (int64_t d = 0; d < Dv; ++d) op[(i * H + h) * Dv + d] = T(acc[d] / sum);
          set_stat(lse, h * tokens + i, mx + std::log(sum));
        }
      }
  });
}

void CpuOps::attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                                const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                                const Tensor& cu_seqlens, const AttentionParams& p) {
  const int64_t tokens = q.size(0), H = p.num_heads, Hk = p.num_kv_heads, D = p.head_dim;
  const int64_t Dv = p.v_head_dim ? p.v_head_dim : D;
  WEFT_CHECK(dq.shape() == q.shape() && dk.shape() == k.shape() && dv.shape() == v.shape() &&
                 dout.shape() == out.shape(),
             "attention_backward: gradient shapes do not match their tensors");
  check_mask(p);
  const auto segs = segments_of(cu_seqlens, tokens);
  const int64_t rep = H / Hk;
  zero(dq);
  zero(dk);
  zero(dv);
  dispatch_float(q, [&]<typename T>() {
    const T *qp = q.data<T>(), *kp = k.data<T>(), *vp = v.data<T>(), *op = out.data<T>(), *gp = dout.data<T>();
    T *dqp = dq.data<T>(), *dkp = dk.data<T>(), *dvp = dv.data<T>();
    std::vector<double> dqi(D);
    for (const Segment& s : segs)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t hk = h / rep;
        for (int64_t i = s.begin; i < s.end; ++i) {
          const int64_t j0 = first_key(i, s.begin, p.window), j1 = last_key(i, s.end, p.causal);
          const T* qi = qp + (i * H + h) * D;
          const T* gi = gp + (i * H + h) * Dv;
          const T* oi = op + (i * H + h) * Dv;
          const double l = get_stat(lse, h * tokens + i);
          double delta = 0;  // Σ_d dout·out = Σ_j P_ij dP_ij
          for (int64_t d = 0; d < Dv; ++d) delta += double(gi[d]) * double(oi[d]);
          std::fill(dqi.begin(), dqi.end(), 0.0);
          for (int64_t j = j0; j <= j1; ++j) {
            const T* kj = kp + (j * Hk + hk) * D;
            const T* vj = vp + (j * Hk + hk) * Dv;
            double dot = 0, dp = 0;
            for (int64_t d = 0; d < D; ++d) dot += double(qi[d]) * double(kj[d]);
            for (int64_t d = 0; d < Dv; ++d) dp += double(gi[d]) * double(vj[d]);
            const double prob = std::exp(dot * p.scale - l);
            const double ds = prob * (dp - delta) * p.scale;
            T* dkj = dkp + (j * Hk + hk) * D;
            T* dvj = dvp + (j * Hk + hk) * Dv;
            for (int64_t d = 0; d < D; ++d) {
              dqi[d] += ds * double(kj[d]);
              dkj[d] += T(ds * double(qi[d]));
            }
            for (int64_t d = 0; d < Dv; ++d) dvj[d] += T(prob * double(gi[d]));
          }
          for (int64_t d = 0; d < D; ++d) dqp[(i * H + h) * D + d] = T(dqi[d]);
        }
      }
  });
}

void CpuOps::attention_with_cache(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_cu,
                                  const Tensor& k_cu, const AttentionParams& p) {
  const int64_t H = p.num_heads, Hk = p.num_kv_heads, D = p.head_dim, Dv = p.v_head_dim ? p.v_head_dim : D;
  const auto qs = segments_of(q_cu, q.size(0)), ks = segments_of(k_cu, k.size(0));
  WEFT_CHECK(qs.size() == ks.size() && q.numel() == q.size(0) * H * D && k.numel() == k.size(0) * Hk * D &&
                 v.numel() == k.size(0) * Hk * Dv && out.numel() == q.size(0) * H * Dv && H % Hk == 0,
             "attention_with_cache: q ", q.describe(), ", k ", k.describe(), ", v ", v.describe(), ", out ",
             out.describe(), " in ", qs.size(), " and ", ks.size(), " segments");
  const int64_t rep = H / Hk;
  dispatch_float(q, [&]<typename T>() {
    std::vector<double> score, acc(static_cast<size_t>(Dv));
    for (size_t s = 0; s < qs.size(); ++s) {
      const int64_t n = qs[s].end - qs[s].begin, m = ks[s].end - ks[s].begin;
      WEFT_CHECK(n <= m, "attention_with_cache: segment ", s, " has ", n, " queries but ", m, " keys");
      for (int64_t i = 0; i < n; ++i)
        for (int64_t h = 0; h < H; ++h) {
          const T* qi = q.data<T>() + ((qs[s].begin + i) * H + h) * D;
          const int64_t last = m - n + i, first = p.window > 0 ? std::max<int64_t>(0, last - p.window + 1) : 0;
          score.assign(static_cast<size_t>(last - first + 1), 0.0);
          double mx = -INFINITY;
          for (int64_t j = first; j <= last; ++j) {
            const T* kj = k.data<T>() + ((ks[s].begin + j) * Hk + h / rep) * D;
            double dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += double(qi[d]) * double(kj[d]);
            mx = std::max(mx, score[j - first] = dot * p.scale);
          }
          double sum = 0;
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t j = first; j <= last; ++j) {
            const double e = std::exp(score[j - first] - mx);
            sum += e;
            const T* vj = v.data<T>() + ((ks[s].begin + j) * Hk + h / rep) * Dv;
            for (int64_t d = 0; d < Dv; ++d) acc[d] += e * double(vj[d]);
          }
          T* o = out.data<T>() + ((qs[s].begin + i) * H + h) * Dv;
          for (int64_t d = 0; d < Dv; ++d) o[d] = T(acc[d] / sum);
        }
    }
  });
}

void CpuOps::attention_merge(Tensor& out, Tensor& lse, const Tensor& part_out, const Tensor& part_lse) {
  WEFT_CHECK(part_out.shape() == out.shape() && part_lse.shape() == lse.shape() && out.ndim() == 3 &&
                 lse.numel() == out.size(0) * out.size(1),
             "attention_merge: expected out [t, heads, d] and lse [heads, t] twice, got ", out.describe(), ", ",
             lse.describe(), ", ", part_out.describe(), ", ", part_lse.describe());
  const int64_t tokens = out.size(0), H = out.size(1), D = out.size(2);
  dispatch_float(out, [&]<typename T>() {
    T* op = out.data<T>();
    const T* pp = part_out.data<T>();
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < tokens; ++i) {
        const double a = get_stat(lse, h * tokens + i), b = get_stat(part_lse, h * tokens + i);
        const double m = std::max(a, b), merged = m + std::log(std::exp(a - m) + std::exp(b - m));
        const double wa = std::exp(a - merged), wb = std::exp(b - merged);
        for (int64_t d = 0; d < D; ++d) {
          T& o = op[(i * H + h) * D + d];
          o = T(wa * double(o) + wb * double(pp[(i * H + h) * D + d]));
        }
        set_stat(lse, h * tokens + i, merged);
      }
  });
}

}  // namespace weft
