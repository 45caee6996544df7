// weft/src/ops/cpu/latent_attention.cpp v1 — CPU reference of latent attention's head layout (DeepSeek-V2): the
// heads' queries, keys and values gathered from the projections with RoPE on the rotated dims, and its backward.
#include "ops/cpu/cpu_ops.h"

namespace weft {
namespace {

struct MlaLayout {
  int64_t tokens, heads, nope, rope, value;
};

MlaLayout mla_layout(const Tensor& q_heads, const Tensor& v_heads, const Tensor& q, const Tensor& kv,
                     const Tensor& k_rope, const Tensor& positions, const Tensor& cos) {
  WEFT_CHECK(q_heads.ndim() == 3 && v_heads.ndim() == 3 && k_rope.ndim() == 2, "mla: expected heads [t, H, d] and ",
             "k_rope [t, dr], got ", q_heads.describe(), ", ", v_heads.describe(), ", ", k_rope.describe());
  const MlaLayout l{q_heads.size(0), q_heads.size(1), q_heads.size(2) - k_rope.size(1), k_rope.size(1),
                    v_heads.size(2)};
  WEFT_CHECK(l.nope > 0 && l.rope % 2 == 0 && q.numel() == l.tokens * l.heads * (l.nope + l.rope) &&
                 kv.numel() == l.tokens * l.heads * (l.nope + l.value) && k_rope.size(0) == l.tokens &&
                 positions.numel() == l.tokens && cos.size(1) == l.rope / 2,
             "mla: q ", q.describe(), ", kv ", kv.describe(), ", k_rope ", k_rope.describe(), ", cos ", cos.describe(),
             " do not match heads ", q_heads.describe(), " and values ", v_heads.describe());
  return l;
}

// out = the rotation of x (n dims, pairs (i, i + n/2)) by the angles whose cos/sin are c, s; sign -1: its transpose.
template <typename T>
void rotate(T* out, const T* x, const T* c, const T* s, int64_t n, double sign) {
  const int64_t half = n / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double x1 = double(x[i]), x2 = double(x[i + half]), sn = sign * double(s[i]);
    out[i] = T(x1 * double(c[i]) - x2 * sn);
    out[i + half] = T(x2 * double(c[i]) + x1 * sn);
  }
}

template <typename T>
const T* table_row(const Tensor& table, const Tensor& positions, int64_t t) {
  const int32_t p = positions.data<int32_t>()[t];
  WEFT_CHECK(p >= 0 && p < table.size(0), "mla: position ", p, " outside the table of ", table.size(0),
             " positions (model.max_position_embeddings)");
  return table.data<T>() + int64_t(p) * table.size(1);
}

}  // namespace

void CpuOps::mla_split(Tensor& q_heads, Tensor& k_heads, Tensor& v_heads, const Tensor& q, const Tensor& kv,
                       const Tensor& k_rope, const Tensor& positions, const Tensor& cos, const Tensor& sin) {
  const MlaLayout l = mla_layout(q_heads, v_heads, q, kv, k_rope, positions, cos);
  WEFT_CHECK(k_heads.shape() == q_heads.shape(), "mla_split: k_heads ", k_heads.describe(), " ≠ q_heads ",
             q_heads.describe());
  const int64_t d = l.nope + l.rope, w = l.nope + l.value;
  dispatch_float(q, [&]<typename T>() {
    for (int64_t t = 0; t < l.tokens; ++t) {
      const T *c = table_row<T>(cos, positions, t), *s = table_row<T>(sin, positions, t);
      std::vector<T> kr(static_cast<size_t>(l.rope));
      rotate(kr.data(), k_rope.data<T>() + t * l.rope, c, s, l.rope, 1.0);
      for (int64_t h = 0; h < l.heads; ++h) {
        const T* qs = q.data<T>() + (t * l.heads + h) * d;
        const T* kvs = kv.data<T>() + (t * l.heads + h) * w;
        T* qd = q_heads.data<T>() + (t * l.heads + h) * d;
        T* kd = k_heads.data<T>() + (t * l.heads + h) * d;
        std::copy(qs, qs + l.nope, qd);
        rotate(qd + l.nope, qs + l.nope, c, s, l.rope, 1.0);
        std::copy(kvs, kvs + l.nope, kd);
        std::copy(kr.begin(), kr.end(), kd + l.nope);
        std::copy(kvs + l.nope, kvs + w, v_heads.data<T>() + (t * l.heads + h) * l.value);
      }
    }
  });
}

void CpuOps::mla_merge(Tensor& dq, Tensor& dkv, Tensor& dk_rope, const Tensor& dq_heads, const Tensor& dk_heads,
                       const Tensor& dv_heads, const Tensor& positions, const Tensor& cos, const Tensor& sin) {
  const MlaLayout l = mla_layout(dq_heads, dv_heads, dq, dkv, dk_rope, positions, cos);
  WEFT_CHECK(dk_heads.shape() == dq_heads.shape(), "mla_merge: dk_heads ", dk_heads.describe(), " ≠ dq_heads ",
             dq_heads.describe());
  const int64_t d = l.nope + l.rope, w = l.nope + l.value;
  dispatch_float(dq, [&]<typename T>() {
    std::vector<double> sum(static_cast<size_t>(l.rope));
    for (int64_t t = 0; t < l.tokens; ++t) {
      const T *c = table_row<T>(cos, positions, t), *s = table_row<T>(sin, positions, t);
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t h = 0; h < l.heads; ++h) {
        const T* gq = dq_heads.data<T>() + (t * l.heads + h) * d;
        const T* gk = dk_heads.data<T>() + (t * l.heads + h) * d;
        T* oq = dq.data<T>() + (t * l.heads + h) * d;
        T* okv = dkv.data<T>() + (t * l.heads + h) * w;
        std::copy(gq, gq + l.nope, oq);
        rotate(oq + l.nope, gq + l.nope, c, s, l.rope, -1.0);
        std::copy(gk, gk + l.nope, okv);
        const T* gv = dv_heads.data<T>() + (t * l.heads + h) * l.value;
        std::copy(gv, gv + l.value, okv + l.nope);
        for (int64_t i = 0; i < l.rope; ++i) sum[i] += double(gk[l.nope + i]);
      }
      std::vector<T> summed(sum.begin(), sum.end());
      rotate(dk_rope.data<T>() + t * l.rope, summed.data(), c, s, l.rope, -1.0);
    }
  });
}

}  // namespace weft
