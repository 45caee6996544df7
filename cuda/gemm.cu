// weft/cuda/gemm.cu v4 — row-major GEMM through cuBLASLt: bf16 (or f32) operands, fp32 accumulation.
//
// cuBLASLt is column-major; a row-major C = op(A)·op(B) is the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so the operands
// swap places and keep their own transpose flags. Algorithms are chosen once per shape and cached: the heuristic's
// first, or (train.gemm_autotune) the fastest of its first kCandidates, timed on the first call's own operands.
// Only a call that overwrites its output (beta 0) can be run again and again, so an accumulating call of a shape
// takes the algorithm its overwriting twin chose when cuBLASLt accepts it for accumulation (a gradient's first
// writer overwrites, the later ones add), else the heuristic's. The added term may come from another matrix than
// the output (gemm_add: a residual connection), read by the epilogue as C and written as D.
#include <cublasLt.h>

#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "common.cuh"
#include "cuda_ops.h"

#define CUBLAS_CHECK(call)                                                                                 \
  do {                                                                                                     \
    cublasStatus_t cublas_status_ = (call);                                                                \
    if (cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                           \
      ::weft::fail(::weft::str("cuBLAS error in ", #call, " (", __FILE__, ":", __LINE__, "): status ",     \
                               static_cast<int>(cublas_status_)));                                         \
  } while (0)

namespace weft {
namespace {

using cuda::stream;

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::bf16: return CUDA_R_16BF;
    case DType::f32: return CUDA_R_32F;
    default: fail(str("CUDA gemm: unsupported dtype ", dtype_name(t)));
  }
}

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's, best first
};
// m, n, k, the transposes, A's, B's and C's dtypes, lda, ldb, and whether the call accumulates (beta ≠ 0).
using PlanKey = std::tuple<int64_t, int64_t, int64_t, bool, bool, int, int, int, int64_t, int64_t, bool>;
constexpr size_t kAccumulates = 10;  // PlanKey's last field

class Gemm {
 public:
  Gemm() {
    CUBLAS_CHECK(cublasLtCreate(&handle_));
    CUDA_CHECK(cudaMalloc(&workspace_, kWorkspace));
  }

  // Column-major D[m, n] = alpha·op(A)[m, k]·op(B)[k, n] + beta·C, C read from `c` (D's layout; `d` itself when
  // null).
  void run(int64_t m, int64_t n, int64_t k, bool ta, bool tb, const void* a, DType at, int64_t lda, const void* b,
           DType bt, int64_t ldb, void* d, DType ct, float alpha, float beta, const void* c = nullptr) {
    const PlanKey key{m, n, k, ta, tb, static_cast<int>(at), static_cast<int>(bt), static_cast<int>(ct), lda, ldb,
                      beta != 0.f};
    std::lock_guard<std::mutex> lock(mu_);
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      Plan p = make_plan(m, n, k, ta, tb, at, lda, bt, ldb, ct);
      if (autotune_ && beta == 0.f) {
        p.algo = fastest(p, a, b, d, alpha);
      } else if (autotune_) {
        PlanKey twin = key;
        std::get<kAccumulates>(twin) = false;
        const auto t = plans_.find(twin);
        cublasLtMatmulHeuristicResult_t check{};
        if (t != plans_.end() && cublasLtMatmulAlgoCheck(handle_, p.desc, p.a, p.b, p.c, p.c, &t->second.algo,
                                                         &check) == CUBLAS_STATUS_SUCCESS &&
            check.workspaceSize <= kWorkspace)
          p.algo = t->second.algo;
      }
      it = plans_.emplace(key, p).first;
    }
    const Plan& p = it->second;
    CUBLAS_CHECK(cublasLtMatmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, c ? c : d, p.c, d, p.c, &p.algo,
                                workspace_, kWorkspace, stream()));
  }

  // Turns timing of the heuristic's candidates on or off; plans made under the other setting are dropped.
  void set_autotune(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    if (on == autotune_) return;
    autotune_ = on;
    for (auto& [key, p] : plans_) {
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      cublasLtMatmulDescDestroy(p.desc);
    }
    plans_.clear();
  }

 private:
  Plan make_plan(int64_t m, int64_t n, int64_t k, bool ta, bool tb, DType at, int64_t lda, DType bt, int64_t ldb,
                 DType ct) {
    Plan p;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, cuda_type(at), ta ? k : m, ta ? m : k, lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, cuda_type(bt), tb ? n : k, tb ? k : n, ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, cuda_type(ct), m, n, m));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const size_t ws = kWorkspace;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t results[kCandidates]{};
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref, autotune_ ? kCandidates : 1,
                                                results, &found));
    cublasLtMatmulPreferenceDestroy(pref);
    WEFT_CHECK(found > 0, "cuBLASLt has no algorithm for a ", m, "×", n, "×", k, " GEMM with these dtypes");
    for (int i = 0; i < found; ++i) p.candidates.push_back(results[i].algo);
    p.algo = results[0].algo;
    return p;
  }

  // The candidate with the shortest time over kTimedRuns calls (after one untimed call each) of an overwriting
  // GEMM on its own operands; one that fails to run is passed over.
  cublasLtMatmulAlgo_t fastest(const Plan& p, const void* a, const void* b, void* c, float alpha) {
    if (p.candidates.size() < 2) return p.algo;
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    const float beta = 0.f;
    float best_ms = std::numeric_limits<float>::infinity();
    cublasLtMatmulAlgo_t best = p.algo;
    for (const cublasLtMatmulAlgo_t& algo : p.candidates) {
      auto call = [&] {
        return cublasLtMatmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, c, p.c, c, p.c, &algo, workspace_,
                              kWorkspace, stream());
      };
      if (call() != CUBLAS_STATUS_SUCCESS) continue;
      CUDA_CHECK(cudaEventRecord(start, stream()));
      for (int r = 0; r < kTimedRuns; ++r) CUBLAS_CHECK(call());
      CUDA_CHECK(cudaEventRecord(stop, stream()));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0.f;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      if (ms < best_ms) {
        best_ms = ms;
        best = algo;
      }
    }
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    return best;  // run() then computes the output once more with it
  }

  static constexpr size_t kWorkspace = size_t(32) << 20;
  static constexpr int kCandidates = 8, kTimedRuns = 3;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::mutex mu_;
  bool autotune_ = false;
  std::map<PlanKey, Plan> plans_;
};

Gemm& gemm_engine() {
  static Gemm* g = new Gemm();
  return *g;
}

}  // namespace

void set_gemm_autotune(bool on) { gemm_engine().set_autotune(on); }

namespace {

// The row-major product's shape (m, n, k), after checking that the operands agree with c.
struct GemmShape {
  int64_t m, n, k;
};
GemmShape gemm_shape(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b) {
  WEFT_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2, "gemm: expected 2-D tensors");
  const int64_t m = trans_a ? a.size(1) : a.size(0), k = trans_a ? a.size(0) : a.size(1);
  const int64_t kb = trans_b ? b.size(1) : b.size(0), n = trans_b ? b.size(0) : b.size(1);
  WEFT_CHECK(k == kb && c.size(0) == m && c.size(1) == n, "gemm: shapes do not agree: ", a.describe(),
             trans_a ? "ᵀ" : "", " · ", b.describe(), trans_b ? "ᵀ" : "", " → ", c.describe());
  return {m, n, k};
}

// Row-major C[m, n] = op(A)·op(B)  ⇔  column-major Cᵀ[n, m] = op(B)ᵀ·op(A)ᵀ; a row-major matrix is the column-major
// view of its transpose, with its row length as leading dimension.
void run_row_major(const GemmShape& s, Tensor& d, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                   double alpha, double beta, const void* c) {
  gemm_engine().run(s.n, s.m, s.k, trans_b, trans_a, b.data_ptr(), b.dtype(), b.size(1), a.data_ptr(), a.dtype(),
                    a.size(1), d.data_ptr(), d.dtype(), static_cast<float>(alpha), static_cast<float>(beta), c);
}

}  // namespace

void CudaOps::gemm(Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double alpha,
                   double beta) {
  const GemmShape s = gemm_shape(c, a, trans_a, b, trans_b);
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) {
    if (beta == 0) zero(c);
    else scale(c, beta);
    return;
  }
  run_row_major(s, c, a, trans_a, b, trans_b, alpha, beta, nullptr);
}

void CudaOps::gemm_add(Tensor& d, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                       const Tensor& residual) {
  const GemmShape s = gemm_shape(d, a, trans_a, b, trans_b);
  WEFT_CHECK(residual.shape() == d.shape() && residual.dtype() == d.dtype(), "gemm_add: the residual ",
             residual.describe(), " must match the output ", d.describe());
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) {
    copy_bytes(d.data_ptr(), Device::cuda, residual.data_ptr(), Device::cuda, d.nbytes());
    return;
  }
  run_row_major(s, d, a, trans_a, b, trans_b, 1.0, 1.0, residual.data_ptr());
}

}  // namespace weft
