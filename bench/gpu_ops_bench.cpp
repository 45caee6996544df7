// weft/bench/gpu_ops_bench.cpp v7 — CUDA kernels at the 1.5B benchmark shape (hidden 2048, 32 heads / 8 groups,
// ffn 8192, vocab 128256, 2 × 4096 tokens; attention at head dim 128, as the target asks, and at the
// model's 64): GEMMs and attention in TFLOP/s, RMSNorm, cross-entropy and AdamW in GB/s. Timed with CUDA events on
// weft's stream; the median of the repetitions is reported.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>
#include <mpi.h>

#include <cstring>
#include <map>
#include <random>
#include <utility>

#include "cuda_ops.h"
#include "gpu_bench_util.h"
#include "stream.h"

using namespace weft;
using weft::bench::random_bf16;
using weft::bench::timed;

namespace {

constexpr int64_t kTokens = 8192, kHidden = 2048, kHeads = 32, kGroups = 8, kSeq = 4096, kVocab = 128256;

// y[t, n] = x[t, k]·W[n, k]ᵀ, bf16 → bf16: the forward GEMMs of a layer.
void BM_Gemm(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  Tensor x = random_bf16({kTokens, k}), w = random_bf16({n, k}, 0.02f), y = Tensor::empty({kTokens, n}, DType::bf16, Device::cuda);
  timed(state, [&] { ops_for(Device::cuda).gemm(y, x, false, w, true, 1.0, 0.0); }, 2.0 * kTokens * n * k, 0);
}
BENCHMARK(BM_Gemm)->Args({3072, kHidden})->Args({kHidden, kHidden})->Args({16384, kHidden})->Args({kHidden, 8192})
    ->Args({kVocab, kHidden})->UseManualTime()->Unit(benchmark::kMillisecond);

// dW[n, k] += dy[t, n]ᵀ·x[t, k] into fp32: the weight-gradient GEMMs.
void BM_GemmWeightGrad(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  Tensor dy = random_bf16({kTokens, n}), x = random_bf16({kTokens, k}), dw = Tensor::zeros({n, k}, DType::f32, Device::cuda);
  timed(state, [&] { ops_for(Device::cuda).gemm(dw, dy, true, x, false, 1.0, 1.0); }, 2.0 * kTokens * n * k, 0);
}
BENCHMARK(BM_GemmWeightGrad)->Args({16384, kHidden})->Args({kVocab, kHidden})->UseManualTime()->Unit(benchmark::kMillisecond);

// The output layer's three GEMMs over the whole batch, chunk by chunk as the fused loss runs them (logits =
// x·Wᵀ, then dW += dlogitsᵀ·x and dx = dlogits·W, the logits' buffer standing in for their gradient): chunks of
// range(0) tokens, the gradient fp32 (range(1) = 4) or bf16 (2). Smaller chunks hold fewer logits but accumulate
// into the whole [vocab, hidden] gradient once per chunk.
void BM_OutputLayerChunks(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const DType grad_dtype = state.range(1) == 4 ? DType::f32 : DType::bf16;
  Tensor x = random_bf16({kTokens, kHidden}), w = random_bf16({kVocab, kHidden}, 0.02f);
  Tensor logits = Tensor::empty({rows, kVocab}, DType::bf16, Device::cuda), dx = x.clone();
  Tensor dw = Tensor::zeros({kVocab, kHidden}, grad_dtype, Device::cuda);
  Ops& ops = ops_for(Device::cuda);
  timed(state, [&] {
    for (int64_t lo = 0; lo < kTokens; lo += rows) {
      const Tensor in = x.rows(lo, lo + rows);
      Tensor din = dx.rows(lo, lo + rows);
      ops.gemm(logits, in, false, w, true, 1.0, 0.0);
      ops.gemm(dw, logits, true, in, false, 1.0, lo == 0 ? 0.0 : 1.0);
      ops.gemm(din, logits, false, w, false, 1.0, 0.0);
    }
  }, 3 * 2.0 * kTokens * kVocab * kHidden, 0);
}
BENCHMARK(BM_OutputLayerChunks)->ArgsProduct({{1024, 2048, 4096}, {4, 2}})->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Causal attention at head dim d over two sequences of kSeq tokens.
struct AttentionInputs {
  explicit AttentionInputs(int64_t d) : d(d) {}
  int64_t d;
  Tensor q = random_bf16({kTokens, kHeads, d}), k = random_bf16({kTokens, kGroups, d}),
         v = random_bf16({kTokens, kGroups, d}), dout = random_bf16({kTokens, kHeads, d});
  Tensor out = Tensor::empty({kTokens, kHeads, d}, DType::bf16, Device::cuda);
  Tensor lse = Tensor::empty({kHeads, kTokens}, DType::f32, Device::cuda);
  Tensor cu = Tensor::from_vector<int32_t>({0, int32_t(kSeq), int32_t(2 * kSeq)}, {3}).to(Device::cuda);
  AttentionParams p{kHeads, kGroups, d, 0, 1.0 / std::sqrt(double(d)), kSeq};
  // Causal attention FLOPs: 2 matmuls of 2·S²·d per head, halved by the mask (FlashAttention's convention).
  double forward_flops() const { return 2.0 * 2.0 * 2 * kHeads * double(kSeq) * kSeq * d / 2.0; }
};

// Argument: the head dim.
void BM_AttentionForward(benchmark::State& state) {
  AttentionInputs a(state.range(0));
  timed(state, [&] { ops_for(Device::cuda).attention_forward(a.out, a.lse, a.q, a.k, a.v, a.cu, a.p); },
        a.forward_flops(), 0);
}
BENCHMARK(BM_AttentionForward)->Arg(128)->Arg(64)->UseManualTime()->Unit(benchmark::kMillisecond);

// Arguments: the head dim, and 1 for the deterministic (two-pass) form, 0 for the one-pass default.
void BM_AttentionBackward(benchmark::State& state) {
  AttentionInputs a(state.range(0));
  a.p.deterministic = state.range(1) != 0;
  ops_for(Device::cuda).attention_forward(a.out, a.lse, a.q, a.k, a.v, a.cu, a.p);
  Tensor dq = Tensor::empty(a.q.shape(), DType::bf16, Device::cuda), dk = Tensor::empty(a.k.shape(), DType::bf16, Device::cuda),
         dv = Tensor::empty(a.v.shape(), DType::bf16, Device::cuda);
  timed(state, [&] { ops_for(Device::cuda).attention_backward(dq, dk, dv, a.dout, a.q, a.k, a.v, a.out, a.lse, a.cu, a.p); },
        2.5 * a.forward_flops(), 0);
}
BENCHMARK(BM_AttentionBackward)->Args({128, 0})->Args({128, 1})->Args({64, 0})->Args({64, 1})->UseManualTime()
    ->Unit(benchmark::kMillisecond)->Iterations(3);

// Argument: 1 when the backward adds into dx (as the decoder layer's norms do: dx is the residual stream's
// gradient), 0 when it overwrites it.
void BM_RmsNormForwardBackward(benchmark::State& state) {
  const bool accumulate = state.range(0) != 0;
  const Tensor &x = random_bf16({kTokens, kHidden}), &w = random_bf16({kHidden});
  const Tensor& dy = random_bf16({kTokens, kHidden}, 0.5f);
  Tensor y = Tensor::empty({kTokens, kHidden}, DType::bf16, Device::cuda);
  Tensor dx = random_bf16({kTokens, kHidden}).clone();  // the backward writes it
  Tensor rstd = Tensor::empty({kTokens}, DType::f32, Device::cuda);
  Tensor dw = Tensor::zeros({kHidden}, DType::f32, Device::cuda);
  Ops& ops = ops_for(Device::cuda);
  // forward reads x, writes y; backward reads x, dy (and dx when it accumulates), writes dx: 5 or 6 passes over
  // [tokens, hidden] bf16.
  timed(state, [&] {
    ops.rmsnorm_forward(y, rstd, x, w, 1e-5);
    ops.rmsnorm_backward(dx, dw, dy, x, w, rstd, accumulate);
  }, 0, (accumulate ? 6.0 : 5.0) * kTokens * kHidden * 2);
}
BENCHMARK(BM_RmsNormForwardBackward)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_CrossEntropyForwardBackward(benchmark::State& state) {
  const int64_t t = 2048;  // a quarter of the batch keeps the logits at 0.5 GB
  Tensor logits = random_bf16({t, kVocab}, 2.f).clone();  // the backward writes over it
  std::vector<int32_t> lab(t);
  for (int64_t i = 0; i < t; ++i) lab[i] = static_cast<int32_t>((i * 7919) % kVocab);
  Tensor labels = Tensor::from_vector(lab, {t}).to(Device::cuda);
  Tensor mx = Tensor::empty({t}, DType::f32, Device::cuda), se = mx.clone(), tl = mx.clone(), loss = mx.clone();
  Tensor scale = Tensor::from_vector(std::vector<float>(t, 1.f / t), {t}).to(Device::cuda);
  Ops& ops = ops_for(Device::cuda);
  // The statistics and the backward each read the logits; the backward writes them: 3 passes.
  timed(state, [&] {
    ops.cross_entropy_stats(mx, se, tl, logits, labels, 0, kVocab);
    ops.cross_entropy_loss(loss, mx, se, tl);
    ops.cross_entropy_backward(logits, logits, mx, se, labels, scale, 0, kVocab);
  }, 0, 3.0 * t * kVocab * 2);
}
BENCHMARK(BM_CrossEntropyForwardBackward)->UseManualTime()->Unit(benchmark::kMillisecond);

// One AdamW step over a decoder layer's 60.8M parameters with bf16 moments and gradients (the record runs'
// settings): reads the fp32 master, both moments and the gradient, writes the master, the moments and the bf16
// copy, 20 bytes per parameter; with split masters (arg 1, train.master_weights = split) it reads and writes the
// bf16 copy and the masters' low halves instead, 18 bytes.
void BM_AdamW(benchmark::State& state) {
  const bool split = state.range(0) == 1;
  const int64_t n = kHidden * (3072 + kHidden + 3 * 8192);
  Ops& ops = ops_for(Device::cuda);
  Tensor value = random_bf16({n}).clone();
  Tensor master = split ? Tensor::zeros({n}, DType::u16, Device::cuda) : Tensor::empty({n}, DType::f32, Device::cuda);
  if (!split) ops.convert(master, value);
  Tensor m = random_bf16({n}, 1e-3f).clone();
  Tensor v_host = Tensor::empty({n}, DType::bf16);  // second moments are positive
  for (int64_t i = 0; i < n; ++i) v_host.data<bf16>()[i] = bf16::from_float(1e-7f * float(1 + i % 7));
  Tensor v = v_host.to(Device::cuda);
  const Tensor& grad = random_bf16({n}, 1e-3f);
  AdamWParams p;
  p.lr = 1e-4;
  p.weight_decay = 0.1;
  p.step = 10;
  timed(state, [&] { ops.adamw(master, value, grad, m, v, p); }, 0, (split ? 18.0 : 20.0) * n);
}
BENCHMARK(BM_AdamW)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  if (!enable_cuda_backend(0)) {
    std::fprintf(stderr, "weft_bench_gpu: no CUDA device\n");
    MPI_Finalize();
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  MPI_Finalize();
  return 0;
}
