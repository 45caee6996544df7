// weft/src/model/parameter.h v3 — a trainable tensor: its logical (layout-independent) identity and local shard.
//
// Every parameter has one name and one global shape whatever the tp/pp layout; `blocks` say which global rows
// (or columns) the local tensor holds. Initialisation draws each element from a counter-based normal keyed by
// (seed, name, global index), so a model initialises identically at any layout — the basis of the layout
// equivalence tests and of reshardable checkpoints.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace weft {

// Local indices [local_begin, local_begin + length) along the shard dim are global [global_begin, ...).
struct ShardBlock {
  int64_t local_begin, global_begin, length;
};

enum class InitKind { normal, ones, zeros };

// Which ranks a parameter's gradient is reduced over and its norm summed across: dense parameters over the data-
// (and context-) parallel ranks, experts over the expert-data-parallel ranks that hold the same experts.
enum class ParamGroup { dense, expert };

struct Parameter {
  std::string name;      // Megatron-core style, e.g. decoder.layers.3.mlp.linear_fc1.weight
  Shape global_shape;    // logical shape (vocabulary unpadded)
  int shard_dim = -1;    // -1: the whole tensor on every rank of its tensor-parallel group
  std::vector<ShardBlock> blocks;
  Tensor value;          // local shard (padding rows included)
  Tensor grad;           // same shape, fp32 for bf16 values; accumulates over micro-batches
  InitKind init = InitKind::normal;
  double init_std = 0;
  ParamGroup group = ParamGroup::dense;
  bool weight_decay = true;     // Megatron: no decay on 1-D parameters (norms, biases)
  bool tp_duplicate = false;    // a full copy on every tp rank: counted once in the gradient norm
  bool pipeline_copy = false;   // the last stage's copy of a tied embedding: its first-stage twin counts instead
  bool sequence_parallel = false;  // grads come from this rank's tokens only: summed over tp before the step
  bool row_sparse_grad = false;    // only rows of the step's token ids get gradient (an untied word embedding)
  // Set by Optimizer::zero_grad instead of clearing the memory: grad holds the last step's values until its first
  // writer of this step overwrites them (a GEMM with beta 0 saves a pass and a read over the weight gradients).
  bool grad_unwritten = false;

  int64_t numel() const { return value.numel(); }
};

// The beta for a GEMM adding into p.grad: 0 overwrites an unwritten gradient, 1 accumulates. Marks it written.
double grad_gemm_beta(Parameter& p);
// Before an op adds into p.grad: zeroes an unwritten gradient first. Marks it written. Readers call it too, so a
// gradient nothing wrote this step reads as zeros.
void prepare_grad(Parameter& p);

// Makes a parameter with value and zeroed grad of `local_shape` and initialises it.
// `blocks` empty with shard_dim >= 0 is not allowed; shard_dim = -1 means replicated.
Parameter make_parameter(const std::string& name, const Shape& global_shape, const Shape& local_shape, int shard_dim,
                         std::vector<ShardBlock> blocks, InitKind init, double init_std, DType dtype, Device device,
                         uint64_t seed);

// The global flat index of every local element (-1 for padding that maps to nothing).
std::vector<int64_t> global_indices(const Parameter& p);

// A standard normal deviate determined by (seed, name, index) alone.
double counter_normal(uint64_t seed, const std::string& name, int64_t index);

}  // namespace weft
