// weft/src/parallel/tensor_parallel.h v4 — Megatron's tensor-parallel building blocks.
//
// Column-parallel linear (output features split over tp ranks), row-parallel linear (input features split, output
// summed over tp), vocab-parallel embedding and cross-entropy. With sequence parallelism the token axis of the
// activations between these blocks is split over tp ranks too: all-gather before a column layer, reduce-scatter
// after a row layer. tp = 1 is the same code with a group of one, where every collective is a no-op.
#pragma once
#include <string>
#include <vector>

#include "dist/comm.h"
#include "model/parameter.h"

namespace weft {

// What every layer needs to create and place its parameters and activations.
// What a layer keeps between its forward and backward. none: every tensor its backward reads; selective: not the
// SwiGLU output (recomputed from fc1's output, one elementwise pass) — the attention core is never stored, as the
// flash backward recomputes its probabilities; full: only the layer's input, the whole layer rerun in backward.
enum class Recompute { none, selective, full };

// How MoE layers train (the deck's [moe] keys).
struct MoeOptions {
  double aux_loss_coeff = 0, z_loss_coeff = 0;
  double device_balance_coeff = 0, comm_balance_coeff = 0;  // DeepSeek-V2's, over the router's expert groups
  double capacity_factor = 0;     // 0: dropless
  bool drop_by_position = false;  // past capacity keep the first tokens; false: the most probable
  bool pad_to_capacity = false;   // every expert's rows padded to its capacity
};

struct LayerContext {
  Comm* tp = nullptr;              // tensor-parallel group
  bool sequence_parallel = false;  // activations between blocks hold tokens / tp
  DType dtype = DType::f32;        // parameter and activation dtype
  Device device = Device::cpu;
  uint64_t seed = 0;               // initialisation seed
  Comm* cp = nullptr;              // context-parallel group (null: none)
  Recompute recompute = Recompute::none;
  bool deterministic = false;      // kernels that can reorder sums must not (the attention backward)
  Comm* ep = nullptr;              // expert-parallel group (null: every expert on this rank)
  MoeOptions moe;
  int tp_rank() const { return tp->rank(); }
  int tp_size() const { return tp->size(); }
};

// [tokens/tp, h] → [tokens, h] under sequence parallelism; x itself otherwise.
Tensor gather_sequence(const Tensor& x, const LayerContext& ctx);
// Partial sums [tokens, h] → summed over tp: [tokens/tp, h] (reduce-scatter) under sequence parallelism,
// [tokens, h] (all-reduce, in place) otherwise.
Tensor reduce_sequence(Tensor& partial, const LayerContext& ctx);

// y = x·Wᵀ (+ b) with W's output rows split over tp ranks as `blocks` of the global rows.
class ColumnParallelLinear {
 public:
  // out_local: local rows, when padding makes it more than the blocks cover (vocabulary); -1 = Σ block lengths.
  ColumnParallelLinear(const LayerContext& ctx, const std::string& name, int64_t in, int64_t out_global,
                       std::vector<ShardBlock> blocks, bool bias, double init_std, int64_t out_local = -1);
  // Uses another layer's weight (tied embeddings); the owner keeps and registers it.
  ColumnParallelLinear(const LayerContext& ctx, Parameter& shared_weight);
  // x [t, in] (t/tp rows under sequence parallelism) → y [t, out_local]; keeps the full input in `saved_input`.
  Tensor forward(const Tensor& x, Tensor& saved_input);
  // dy [t, out_local] → dx [t, in] (summed over tp; t/tp rows under sequence parallelism); accumulates dW, db.
  Tensor backward(const Tensor& dy, const Tensor& saved_input);
  // forward and backward without the sequence gather and reduction: y = input·Wᵀ (+ b) for rows of the gathered
  // input; dx (partial over tp) = dy·W, accumulating dW and db.
  Tensor forward_local(const Tensor& input);
  void backward_local(Tensor& dx, const Tensor& dy, const Tensor& input);
  // The parameters this layer owns (not a shared weight).
  std::vector<Parameter*> parameters();
  Parameter& w() { return shared_ ? *shared_ : weight; }

  Parameter weight, bias;  // weight unused when shared; bias undefined when not used

 private:
  const LayerContext* ctx_;
  Parameter* shared_ = nullptr;
};

// y = x·Wᵀ with W's input columns split over tp ranks; the partial products are summed over tp.
class RowParallelLinear {
 public:
  RowParallelLinear(const LayerContext& ctx, const std::string& name, int64_t in_global, int64_t out, double init_std);
  // x [t, in_local] → y [t, out] (t/tp rows under sequence parallelism); keeps x in `saved_input`. With a
  // residual (y's shape), returns y + residual: without sequence parallelism tp rank 0's GEMM adds it as it writes
  // its partial sum, so the residual connection takes no pass of its own; under it, after the reduce-scatter.
  Tensor forward(const Tensor& x, Tensor& saved_input, const Tensor& residual = Tensor());
  // dy [t, out] (t/tp rows under sequence parallelism) → dx [t, in_local]; accumulates dW.
  Tensor backward(const Tensor& dy, const Tensor& saved_input);
  std::vector<Parameter*> parameters() { return {&weight}; }

  Parameter weight;

 private:
  const LayerContext* ctx_;
};

// The full global tensor of `p` (row-major, as doubles) on every rank of its tensor-parallel group `tp`.
std::vector<double> gather_global(const Parameter& p, Comm& tp);

// The vocabulary split in equal row ranges over tp ranks, padded to `padded_vocab` rows in all.
struct VocabShard {
  int64_t start = 0, rows = 0, valid = 0;  // first global id, local rows, local rows that are real vocabulary
  static VocabShard of(int64_t vocab, int64_t padded_vocab, int tp_rank, int tp_size);
  std::vector<ShardBlock> blocks() const { return {{0, start, valid}}; }
};

class VocabParallelEmbedding {
 public:
  VocabParallelEmbedding(const LayerContext& ctx, int64_t vocab, int64_t padded_vocab, int64_t hidden,
                         double init_std);
  // ids [t] → [t, hidden] (t/tp rows under sequence parallelism).
  Tensor forward(const Tensor& ids);
  // Accumulates the table gradient from dy (shaped like forward's output).
  void backward(const Tensor& dy, const Tensor& ids);

  Parameter weight;
  VocabShard shard;

 private:
  const LayerContext* ctx_;
};

// Per-token cross-entropy over vocab-parallel logits; the statistics it keeps for the backward.
struct CrossEntropySaved {
  Tensor row_max, sum_exp;
};

// logits [t, local vocab] → loss [t] (identical on every tp rank).
Tensor vocab_parallel_cross_entropy(const LayerContext& ctx, const Tensor& logits, const Tensor& labels,
                                    const VocabShard& shard, CrossEntropySaved& saved);
// Overwrites logits with row_scale[t]·∂loss[t]/∂logits.
void vocab_parallel_cross_entropy_backward(Tensor& logits, const Tensor& labels, const Tensor& row_scale,
                                           const VocabShard& shard, const CrossEntropySaved& saved);

// Logits of at most this many bytes exist at once in output_cross_entropy_fused. 1 GiB is 4,096 bf16 rows at vocab
// 128256: the output layer's three GEMMs took 19.2 ms per 8,192 tokens in such chunks against 20.6 ms in 1,024-row
// ones (BM_OutputLayerChunks, H200), as each chunk re-reads and re-writes the whole weight gradient.
constexpr int64_t kLossChunkBytes = int64_t(1) << 30;
// The output layer and the loss with its backward, chunk by chunk of `chunk_rows` tokens (0: chunks of
// kLossChunkBytes of logits), so the [tokens, vocab] logits never exist whole: returns the per-token losses and
// sets dx = ∂(Σ_t row_scale[t]·loss[t])/∂x (as ColumnParallelLinear::backward returns it); accumulates dW.
Tensor output_cross_entropy_fused(const LayerContext& ctx, ColumnParallelLinear& output, const Tensor& x,
                                  const Tensor& labels, const Tensor& row_scale, const VocabShard& shard,
                                  int64_t chunk_rows, Tensor& dx);

}  // namespace weft
