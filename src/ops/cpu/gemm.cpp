// weft/src/ops/cpu/gemm.cpp v2 — blocked row-major GEMM for the CPU backend.
//
// B is packed into column panels (zero padded) per block of kBlock rows of op(B), so the micro-kernel streams one
// contiguous panel while holding a 4 × panel tile of C in registers. This is the
// classic GotoBLAS shape, kept minimal: enough for the tiny models the CPU backend trains, readable as reference.
#include <algorithm>
#include <vector>

#include "ops/cpu/cpu_ops.h"

namespace weft {
namespace {

// Two 32-byte vectors per row of a micro-tile: 16 floats or 8 doubles. GCC/Clang vector types keep the tile in
// registers (8 accumulators for 4 rows), which plain arrays with unroll pragmas did not (3 vs 46 GFLOP/s/core).
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int kLanes = 32 / sizeof(T);
template <typename T>
constexpr int kPanel = 2 * kLanes<T>;  // columns of C per micro-tile
constexpr int kRows = 4;               // rows of C per micro-tile
constexpr int64_t kBlock = 256;        // depth of one packed block of op(B)

template <typename T, int R>
inline void micro_tile(int64_t depth, const T* __restrict a, int64_t lda, const T* __restrict panel,
                       T* __restrict c, int64_t ldc, int cols, T alpha) {
  constexpr int L = kLanes<T>;
  Vec<T> acc[R][2] = {};
  for (int64_t p = 0; p < depth; ++p) {
    Vec<T> b0, b1;
    __builtin_memcpy(&b0, panel + p * 2 * L, sizeof b0);
    __builtin_memcpy(&b1, panel + p * 2 * L + L, sizeof b1);
    for (int r = 0; r < R; ++r) {
      const T av = a[r * lda + p];
      acc[r][0] += av * b0;
      acc[r][1] += av * b1;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < cols; ++j) c[r * ldc + j] += alpha * acc[r][j / L][j % L];
}

template <typename T>
void tile_rows(int rows, int64_t depth, const T* a, int64_t lda, const T* panel, T* c, int64_t ldc, int cols,
               T alpha) {
  switch (rows) {
    case 4: micro_tile<T, 4>(depth, a, lda, panel, c, ldc, cols, alpha); break;
    case 3: micro_tile<T, 3>(depth, a, lda, panel, c, ldc, cols, alpha); break;
    case 2: micro_tile<T, 2>(depth, a, lda, panel, c, ldc, cols, alpha); break;
    default: micro_tile<T, 1>(depth, a, lda, panel, c, ldc, cols, alpha); break;
  }
}

}  // namespace

template <typename T>
void cpu_gemm(int64_t m, int64_t n, int64_t k, T alpha, const T* a, bool trans_a, const T* b, bool trans_b,
              T beta, T* c) {
  // C = beta·C first; then the blocks accumulate alpha·op(A)·op(B).
  if (beta == T(0)) {
    std::fill(c, c + m * n, T(0));
  } else if (beta != T(1)) {
    for (int64_t i = 0; i < m * n; ++i) c[i] *= beta;
  }
  if (m == 0 || n == 0 || k == 0) return;

  // op(A) as row-major [m, k].
  std::vector<T> a_packed;
  const T* ap = a;
  if (trans_a) {
    a_packed.resize(static_cast<size_t>(m * k));
    for (int64_t p = 0; p < k; ++p)
      for (int64_t i = 0; i < m; ++i) a_packed[i * k + p] = a[p * m + i];
    ap = a_packed.data();
  }

  constexpr int P = kPanel<T>;
  const int64_t panels = (n + P - 1) / P;
  std::vector<T> b_packed(static_cast<size_t>(panels * kBlock * P));
  for (int64_t p0 = 0; p0 < k; p0 += kBlock) {
    const int64_t depth = std::min(kBlock, k - p0);
    // Pack op(B)[p0:p0+depth, :] into panels [panel][p][P].
    for (int64_t jp = 0; jp < panels; ++jp) {
      T* dst = b_packed.data() + jp * kBlock * P;
      for (int64_t p = 0; p < depth; ++p) {
        for (int j = 0; j < P; ++j) {
          int64_t col = jp * P + j;
          T val = T(0);
          if (col < n) val = trans_b ? b[col * k + (p0 + p)] : b[(p0 + p) * n + col];
          dst[p * P + j] = val;
        }
      }
    }
    for (int64_t jp = 0; jp < panels; ++jp) {
      const T* panel = b_packed.data() + jp * kBlock * P;
      const int cols = static_cast<int>(std::min<int64_t>(P, n - jp * P));
      for (int64_t i0 = 0; i0 < m; i0 += kRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kRows, m - i0));
        tile_rows<T>(rows, depth, ap + i0 * k + p0, k, panel, c + i0 * n + jp * P, n, cols, alpha);
      }
    }
  }
}

template void cpu_gemm<float>(int64_t, int64_t, int64_t, float, const float*, bool, const float*, bool, float,
                              float*);
template void cpu_gemm<double>(int64_t, int64_t, int64_t, double, const double*, bool, const double*, bool, double,
                               double*);

void CpuOps::gemm(Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double alpha,
                  double beta) {
  WEFT_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2, "gemm: expected 2-D tensors, got ", a.describe(),
             ", ", b.describe(), ", ", c.describe());
  const int64_t m = trans_a ? a.size(1) : a.size(0);
  const int64_t k = trans_a ? a.size(0) : a.size(1);
  const int64_t kb = trans_b ? b.size(1) : b.size(0);
  const int64_t n = trans_b ? b.size(0) : b.size(1);
  WEFT_CHECK(k == kb && c.size(0) == m && c.size(1) == n, "gemm: shapes do not agree: ", a.describe(),
             trans_a ? "ᵀ" : "", " · ", b.describe(), trans_b ? "ᵀ" : "", " → ", c.describe());
  WEFT_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "gemm: mixed dtypes");
  dispatch_float(c, [&]<typename T>() {
    cpu_gemm<T>(m, n, k, T(alpha), a.data<T>(), trans_a, b.data<T>(), trans_b, T(beta), c.data<T>());
  });
}

void CpuOps::gemm_add(Tensor& d, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& residual) {
  WEFT_CHECK(d.shape() == residual.shape() && d.dtype() == residual.dtype(), "gemm_add: the residual ",
             residual.describe(), " must match the output ", d.describe());
  copy_bytes(d.data_ptr(), Device::cpu, residual.data_ptr(), Device::cpu, d.nbytes());
  gemm(d, a, trans_a, b, trans_b, 1.0, 1.0);
}

}  // namespace weft
