// weft/src/ops/cpu/cpu_ops.cpp v8 — CPU reference: memory, elementwise, norms, RoPE, SwiGLU (also the experts'),
// embedding, cross-entropy and AdamW. Attention lives in attention.cpp, GEMM in gemm.cpp, routing in moe.cpp.
#include "ops/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace weft {
namespace {

void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  WEFT_CHECK(a.shape() == b.shape(), op, ": shape mismatch ", a.describe(), " vs ", b.describe());
}

// Accessor for stat tensors (rstd, row max, ...), which are f32 or f64 independently of T.
struct Stat {
  const Tensor& t;
  double get(int64_t i) const { return t.dtype() == DType::f64 ? t.data<double>()[i] : t.data<float>()[i]; }
  void set(int64_t i, double v) const {
    if (t.dtype() == DType::f64) t.data<double>()[i] = v; else t.data<float>()[i] = static_cast<float>(v);
  }
};

}  // namespace

// ---------------------------------------------------------------- memory

// Each block starts with a 64-byte header holding its size, so that the bytes of live tensors (and their peak) are
// counted as the CUDA allocator counts them: what `weft plan` predicts. (The process's resident memory is more: glibc
// keeps freed blocks for reuse, a third more than the live tensors at the demo's peak.)
void* CpuOps::allocate(size_t bytes) {
  const size_t size = (bytes + 63) / 64 * 64;
  auto* p = static_cast<char*>(std::aligned_alloc(64, size + 64));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, &size, sizeof size);
  const size_t now = in_use_.fetch_add(size) + size;
  for (size_t peak = peak_.load(); now > peak && !peak_.compare_exchange_weak(peak, now);) {
  }
  return p + 64;
}

void CpuOps::deallocate(void* ptr) {
  char* p = static_cast<char*>(ptr) - 64;
  size_t size = 0;
  std::memcpy(&size, p, sizeof size);
  in_use_.fetch_sub(size);
  std::free(p);
}

void CpuOps::copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  WEFT_CHECK(dst_device == Device::cpu && src_device == Device::cpu, "CPU backend cannot copy device memory");
  if (bytes) std::memcpy(dst, src, bytes);
}

void CpuOps::zero(Tensor& t) {
  if (t.nbytes()) std::memset(t.data_ptr(), 0, t.nbytes());
}

// ---------------------------------------------------------------- elementwise

void CpuOps::convert(Tensor& dst, const Tensor& src) {
  WEFT_CHECK(dst.numel() == src.numel(), "convert: size mismatch ", dst.describe(), " vs ", src.describe());
  const int64_t n = src.numel();
  auto read = [&](int64_t i) -> double {
    switch (src.dtype()) {
      case DType::f32: return src.data<float>()[i];
      case DType::f64: return src.data<double>()[i];
      case DType::bf16: return src.data<bf16>()[i].to_float();
      case DType::i32: return src.data<int32_t>()[i];
      case DType::i64: return static_cast<double>(src.data<int64_t>()[i]);
      default: fail(str("convert: unsupported source ", src.describe()));
    }
  };
  for (int64_t i = 0; i < n; ++i) {
    double v = read(i);
    switch (dst.dtype()) {
      case DType::f32: dst.data<float>()[i] = static_cast<float>(v); break;
      case DType::f64: dst.data<double>()[i] = v; break;
      case DType::bf16: dst.data<bf16>()[i] = bf16::from_float(static_cast<float>(v)); break;
      case DType::i32: dst.data<int32_t>()[i] = static_cast<int32_t>(v); break;
      case DType::i64: dst.data<int64_t>()[i] = static_cast<int64_t>(v); break;
      default: fail(str("convert: unsupported destination ", dst.describe()));
    }
  }
}

void CpuOps::add(Tensor& y, const Tensor& x, double alpha) {
  WEFT_CHECK(y.numel() == x.numel(), "add: size mismatch ", y.describe(), " vs ", x.describe());
  dispatch_float(y, [&]<typename T>() {
    T* yp = y.data<T>();
    const T* xp = x.data<T>();
    const T a = T(alpha);
    for (int64_t i = 0; i < y.numel(); ++i) yp[i] += a * xp[i];
  });
}

void CpuOps::scale(Tensor& y, double alpha) {
  dispatch_float(y, [&]<typename T>() {
    T* yp = y.data<T>();
    for (int64_t i = 0; i < y.numel(); ++i) yp[i] *= T(alpha);
  });
}

void CpuOps::sigmoid(Tensor& y, const Tensor& x) {
  check_same_shape(y, x, "sigmoid");
  dispatch_float(x, [&]<typename T>() {
    for (int64_t i = 0; i < x.numel(); ++i) y.data<T>()[i] = T(1) / (T(1) + std::exp(-x.data<T>()[i]));
  });
}

void CpuOps::sigmoid_backward(Tensor& dx, const Tensor& dy, const Tensor& y) {
  check_same_shape(dx, y, "sigmoid_backward");
  check_same_shape(dy, y, "sigmoid_backward");
  dispatch_float(y, [&]<typename T>() {
    for (int64_t i = 0; i < y.numel(); ++i) {
      const T v = y.data<T>()[i];
      dx.data<T>()[i] = dy.data<T>()[i] * v * (T(1) - v);
    }
  });
}

double CpuOps::sum_squares(const std::vector<Tensor>& xs) {
  double total = 0;
  for (const Tensor& x : xs)
    total += dispatch_float(x, [&]<typename T>() {
      const T* p = x.data<T>();
      double s = 0;
      for (int64_t i = 0; i < x.numel(); ++i) s += double(p[i]) * double(p[i]);
      return s;
    });
  return total;
}

void CpuOps::bias_add(Tensor& y, const Tensor& bias) {
  const int64_t cols = bias.numel(), rows = y.numel() / cols;
  WEFT_CHECK(rows * cols == y.numel(), "bias_add: ", bias.describe(), " does not tile ", y.describe());
  dispatch_float(y, [&]<typename T>() {
    T* yp = y.data<T>();
    const T* b = bias.data<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) yp[r * cols + c] += b[c];
  });
}

void CpuOps::bias_grad(Tensor& dbias, const Tensor& dy) {
  const int64_t cols = dbias.numel(), rows = dy.numel() / cols;
  WEFT_CHECK(rows * cols == dy.numel(), "bias_grad: ", dbias.describe(), " does not tile ", dy.describe());
  dispatch_float(dy, [&]<typename T>() {
    T* db = dbias.data<T>();
    const T* g = dy.data<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) db[c] += g[r * cols + c];
  });
}

// ---------------------------------------------------------------- RMSNorm

void CpuOps::rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps) {
  check_same_shape(y, x, "rmsnorm_forward");
  const int64_t h = w.numel(), rows = x.numel() / h;
  WEFT_CHECK(rows * h == x.numel() && rstd.numel() == rows, "rmsnorm_forward: bad shapes x ", x.describe(), " w ",
             w.describe(), " rstd ", rstd.describe());
  dispatch_float(x, [&]<typename T>() {
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    T* yp = y.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * h;
      double ss = 0;
      for (int64_t i = 0; i < h; ++i) ss += double(xr[i]) * double(xr[i]);
      const double inv = 1.0 / std::sqrt(ss / double(h) + eps);
      Stat{rstd}.set(r, inv);
      const T rs = T(inv);
      for (int64_t i = 0; i < h; ++i) yp[r * h + i] = (xr[i] * rs) * wp[i];
    }
  });
}

void CpuOps::rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                              const Tensor& rstd, bool accumulate) {
  check_same_shape(dx, x, "rmsnorm_backward");
  check_same_shape(dy, x, "rmsnorm_backward");
  const int64_t h = w.numel(), rows = x.numel() / h;
  dispatch_float(x, [&]<typename T>() {
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    const T* gp = dy.data<T>();
    T* dxp = dx.data<T>();
    T* dwp = dw.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * h;
      const T* gr = gp + r * h;
      const double rs = Stat{rstd}.get(r);
      double dot = 0;  // Σ (dy·w)·x
      for (int64_t i = 0; i < h; ++i) dot += double(gr[i]) * double(wp[i]) * double(xr[i]);
      const double c = rs * rs * rs * dot / double(h);
      for (int64_t i = 0; i < h; ++i) {
        const T d = T(rs * double(gr[i]) * double(wp[i]) - c * double(xr[i]));
        dxp[r * h + i] = accumulate ? dxp[r * h + i] + d : d;
        dwp[i] += gr[i] * T(double(xr[i]) * rs);
      }
    }
  });
}

// ---------------------------------------------------------------- RoPE

void CpuOps::rope(Tensor& x, const Tensor& positions, const Tensor& cos, const Tensor& sin, bool inverse) {
  WEFT_CHECK(x.ndim() == 3, "rope: expected x [tokens, heads, head_dim], got ", x.describe());
  const int64_t tokens = x.size(0), heads = x.size(1), dim = x.size(2), half = dim / 2;
  WEFT_CHECK(positions.numel() == tokens && cos.size(1) == half, "rope: bad shapes x ", x.describe(),
             " positions ", positions.describe(), " cos ", cos.describe());
  const int32_t* pos = positions.data<int32_t>();
  dispatch_float(x, [&]<typename T>() {
    T* xp = x.data<T>();
    const T* cp = cos.data<T>();
    const T* sp = sin.data<T>();
    const T sign = inverse ? T(-1) : T(1);
    for (int64_t t = 0; t < tokens; ++t) {
      WEFT_CHECK(pos[t] >= 0 && pos[t] < cos.size(0), "rope: position ", pos[t], " outside the table of ",
                 cos.size(0), " positions (model.max_position_embeddings)");
      const T* c = cp + int64_t(pos[t]) * half;
      const T* s = sp + int64_t(pos[t]) * half;
      for (int64_t h = 0; h < heads; ++h) {
        T* v = xp + (t * heads + h) * dim;
        for (int64_t i = 0; i < half; ++i) {
          const T x1 = v[i], x2 = v[i + half], sn = sign * s[i];
          v[i] = x1 * c[i] - x2 * sn;
          v[i + half] = x2 * c[i] + x1 * sn;
        }
      }
    }
  });
}

// ---------------------------------------------------------------- SwiGLU

namespace {

// out[r] = silu(gate)·up·scale[r] per row of in = [gate | up]; scale null: 1.
template <typename T>
void swiglu_rows(T* out, const T* in, const T* scale, int64_t rows, int64_t f) {
  for (int64_t r = 0; r < rows; ++r) {
    const T w = scale ? scale[r] : T(1);
    for (int64_t i = 0; i < f; ++i) {
      const T g = in[r * 2 * f + i], u = in[r * 2 * f + f + i];
      out[r * f + i] = g / (T(1) + std::exp(-g)) * u * w;
    }
  }
}

// The backward of swiglu_rows: din from dout; with a scale, also dscale[r] = Σ_i silu(gate)·up·dout.
template <typename T>
void swiglu_rows_backward(T* din, T* dscale, const T* dout, const T* in, const T* scale, int64_t rows, int64_t f) {
  for (int64_t r = 0; r < rows; ++r) {
    const T w = scale ? scale[r] : T(1);
    double dw = 0;
    for (int64_t i = 0; i < f; ++i) {
      const T g = in[r * 2 * f + i], u = in[r * 2 * f + f + i], d = dout[r * f + i];
      const T sig = T(1) / (T(1) + std::exp(-g));
      dw += double(g * sig * u * d);
      din[r * 2 * f + i] = d * w * u * sig * (T(1) + g * (T(1) - sig));
      din[r * 2 * f + f + i] = d * w * g * sig;
    }
    if (dscale) dscale[r] = static_cast<T>(dw);
  }
}

}  // namespace

void CpuOps::swiglu_forward(Tensor& out, const Tensor& in) {
  const int64_t f = out.size(-1), rows = out.numel() / f;
  WEFT_CHECK(in.numel() == 2 * out.numel(), "swiglu_forward: in ", in.describe(), " must be twice out ",
             out.describe());
  dispatch_float(in, [&]<typename T>() { swiglu_rows<T>(out.data<T>(), in.data<T>(), nullptr, rows, f); });
}

void CpuOps::swiglu_backward(Tensor& din, const Tensor& dout, const Tensor& in) {
  const int64_t f = dout.size(-1), rows = dout.numel() / f;
  check_same_shape(din, in, "swiglu_backward");
  dispatch_float(in, [&]<typename T>() {
    swiglu_rows_backward<T>(din.data<T>(), nullptr, dout.data<T>(), in.data<T>(), nullptr, rows, f);
  });
}

void CpuOps::moe_swiglu_forward(Tensor& out, const Tensor& in, const Tensor& scale) {
  const int64_t f = out.size(-1), rows = out.numel() / f;
  WEFT_CHECK(in.numel() == 2 * out.numel() && scale.numel() == rows, "moe_swiglu_forward: in ", in.describe(),
             ", out ", out.describe(), ", scale ", scale.describe());
  dispatch_float(in, [&]<typename T>() { swiglu_rows<T>(out.data<T>(), in.data<T>(), scale.data<T>(), rows, f); });
}

void CpuOps::moe_swiglu_backward(Tensor& din, Tensor& dscale, const Tensor& dout, const Tensor& in,
                                 const Tensor& scale) {
  const int64_t f = dout.size(-1), rows = dout.numel() / f;
  check_same_shape(din, in, "moe_swiglu_backward");
  WEFT_CHECK(scale.numel() == rows && dscale.numel() == rows, "moe_swiglu_backward: scale ", scale.describe(),
             ", dscale ", dscale.describe(), " for ", rows, " rows");
  dispatch_float(in, [&]<typename T>() {
    swiglu_rows_backward<T>(din.data<T>(), dscale.data<T>(), dout.data<T>(), in.data<T>(), scale.data<T>(), rows, f);
  });
}

// ---------------------------------------------------------------- embedding

void CpuOps::embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table, int64_t vocab_start) {
  const int64_t tokens = ids.numel(), h = table.size(1), rows = table.size(0);
  WEFT_CHECK(out.numel() == tokens * h, "embedding_forward: out ", out.describe(), " for ", tokens, " ids");
  const int32_t* id = ids.data<int32_t>();
  dispatch_float(table, [&]<typename T>() {
    const T* tp = table.data<T>();
    T* op = out.data<T>();
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t r = int64_t(id[t]) - vocab_start;
      if (r >= 0 && r < rows) std::memcpy(op + t * h, tp + r * h, sizeof(T) * h);
      else std::memset(op + t * h, 0, sizeof(T) * h);
    }
  });
}

void CpuOps::embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids, int64_t vocab_start) {
  const int64_t tokens = ids.numel(), h = dtable.size(1), rows = dtable.size(0);
  const int32_t* id = ids.data<int32_t>();
  dispatch_float(dtable, [&]<typename T>() {
    T* dp = dtable.data<T>();
    const T* g = dout.data<T>();
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t r = int64_t(id[t]) - vocab_start;
      if (r < 0 || r >= rows) continue;
      for (int64_t i = 0; i < h; ++i) dp[r * h + i] += g[t * h + i];
    }
  });
}

// ---------------------------------------------------------------- cross-entropy

void CpuOps::cross_entropy_stats(Tensor& row_max, Tensor& sum_exp, Tensor& target_logit, const Tensor& logits,
                                 const Tensor& labels, int64_t vocab_start, int64_t valid_cols) {
  const int64_t cols = logits.size(1), rows = logits.size(0), valid = std::min(valid_cols, cols);
  const int32_t* lab = labels.data<int32_t>();
  dispatch_float(logits, [&]<typename T>() {
    const T* lp = logits.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      double mx = -INFINITY, s = 0;
      for (int64_t c = 0; c < valid; ++c) mx = std::max(mx, double(lp[r * cols + c]));
      for (int64_t c = 0; c < valid; ++c) s += std::exp(double(lp[r * cols + c]) - mx);
      Stat{row_max}.set(r, mx);
      Stat{sum_exp}.set(r, s);
      const int64_t c = int64_t(lab[r]) - vocab_start;
      Stat{target_logit}.set(r, (c >= 0 && c < valid) ? double(lp[r * cols + c]) : 0.0);
    }
  });
}

void CpuOps::cross_entropy_rescale(Tensor& sum_exp, const Tensor& shard_max, const Tensor& row_max) {
  for (int64_t r = 0; r < sum_exp.numel(); ++r) {
    const double s = Stat{sum_exp}.get(r);  // a shard of padding only: no terms, and a max of −∞
    Stat{sum_exp}.set(r, s == 0 ? 0.0 : s * std::exp(Stat{shard_max}.get(r) - Stat{row_max}.get(r)));
  }
}

void CpuOps::cross_entropy_loss(Tensor& loss, const Tensor& row_max, const Tensor& sum_exp,
                                const Tensor& target_logit) {
  for (int64_t r = 0; r < loss.numel(); ++r)
    Stat{loss}.set(r, std::log(Stat{sum_exp}.get(r)) + Stat{row_max}.get(r) - Stat{target_logit}.get(r));
}

void CpuOps::cross_entropy_backward(Tensor& dlogits, const Tensor& logits, const Tensor& row_max,
                                    const Tensor& sum_exp, const Tensor& labels, const Tensor& row_scale,
                                    int64_t vocab_start, int64_t valid_cols) {
  check_same_shape(dlogits, logits, "cross_entropy_backward");
  const int64_t cols = logits.size(1), rows = logits.size(0);
  const int32_t* lab = labels.data<int32_t>();
  dispatch_float(logits, [&]<typename T>() {
    const T* lp = logits.data<T>();
    T* dp = dlogits.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const double mx = Stat{row_max}.get(r), inv = 1.0 / Stat{sum_exp}.get(r), sc = Stat{row_scale}.get(r);
      const int64_t target = int64_t(lab[r]) - vocab_start;
      for (int64_t c = 0; c < cols; ++c) {
        double g = 0;
        if (c < valid_cols) g = std::exp(double(lp[r * cols + c]) - mx) * inv - (c == target ? 1.0 : 0.0);
        dp[r * cols + c] = T(sc * g);
      }
    }
  });
}

// ---------------------------------------------------------------- AdamW

void CpuOps::adamw(Tensor& param, Tensor& value, const Tensor& grad, Tensor& m, Tensor& v, const AdamWParams& p) {
  check_same_shape(param, grad, "adamw");
  const bool bf16_moments = m.dtype() == DType::bf16;
  WEFT_CHECK(m.dtype() == v.dtype() && (m.dtype() == param.dtype() || (bf16_moments && param.dtype() == DType::f32)),
             "adamw: moments ", m.describe(), " and ", v.describe(), " must both have the masters' dtype (",
             param.describe(), ") or both be bf16 beside fp32 masters");
  dispatch_float(param, [&]<typename T>() {
    T* w = param.data<T>();
    const T* g = grad.data<T>();
    // bf16 moments are updated in T and stored rounded to nearest; this step's update uses the unrounded values.
    const auto load = [&](const Tensor& t, int64_t i) {
      return bf16_moments ? T(t.data<bf16>()[i].to_float()) : t.data<T>()[i];
    };
    const auto store = [&](Tensor& t, int64_t i, T x) {
      if (bf16_moments) t.data<bf16>()[i] = bf16::from_float(static_cast<float>(x));
      else t.data<T>()[i] = x;
    };
    // The same arrangement as torch.optim.AdamW, so that fp32 runs agree to rounding.
    const T bc1 = T(1 - std::pow(p.beta1, double(p.step)));
    const T bc2_sqrt = T(std::sqrt(1 - std::pow(p.beta2, double(p.step))));
    const T step_size = T(p.lr) / bc1;
    const T decay = T(1 - p.lr * p.weight_decay), b1 = T(p.beta1), b2 = T(p.beta2), eps = T(p.eps);
    const T grad_scale = T(p.grad_scale);
    for (int64_t i = 0; i < param.numel(); ++i) {
      // Clipping scales the gradient in its own dtype first, as torch's clip_grad_norm_ does in place.
      const T gi = g[i] * grad_scale;
      if (i < p.decayed) w[i] *= decay;
      const T mi = b1 * load(m, i) + (T(1) - b1) * gi;
      const T vi = b2 * load(v, i) + (T(1) - b2) * gi * gi;
      store(m, i, mi);
      store(v, i, vi);
      const T denom = std::sqrt(vi) / bc2_sqrt + eps;
      w[i] -= step_size * mi / denom;
    }
  });
  convert(value, param);
}

// ---------------------------------------------------------------- registry

namespace {
Ops* g_ops[2] = {nullptr, nullptr};
}

void write_into(Tensor& dst, const Tensor& host_values) {
  WEFT_CHECK(host_values.device() == Device::cpu && host_values.numel() == dst.numel(), "write_into: ",
             host_values.describe(), " does not fit ", dst.describe());
  Tensor converted = Tensor::empty(dst.shape(), dst.dtype());
  cpu_ops().convert(converted, host_values);
  Device exec = dst.device();
  ops_for(exec).copy_bytes(dst.data_ptr(), dst.device(), converted.data_ptr(), Device::cpu, converted.nbytes());
}

Ops& cpu_ops() {
  static CpuOps ops;
  return ops;
}

void register_ops(Device device, Ops* ops) { g_ops[static_cast<int>(device)] = ops; }

Ops& ops_for(Device device) {
  if (device == Device::cpu) return cpu_ops();
  Ops* ops = g_ops[static_cast<int>(device)];
  WEFT_CHECK(ops != nullptr, "no ", device_name(device), " backend: this weft was built without CUDA (WEFT_CUDA=OFF)"
             " or no GPU is visible");
  return *ops;
}

}  // namespace weft
