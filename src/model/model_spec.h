// weft/src/model/model_spec.h v1 — the shapes and options of a Llama-family decoder, independent of layout.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace weft {

struct ModelSpec {
  std::string family = "llama";
  int64_t num_layers = 0, hidden = 0, ffn = 0, heads = 0, groups = 0, head_dim = 0;
  int64_t vocab = 0, vocab_multiple = 128, max_positions = 0;
  double rope_theta = 10000;
  RopeScalingConfig rope_scaling;
  double norm_eps = 1e-5;
  bool qkv_bias = false, tie_embeddings = false;
  int64_t sliding_window = 0;
  double init_std = 0.02;

  static ModelSpec from_config(const ModelConfig& m);
  int64_t q_per_group() const { return heads / groups; }
  // Rows of the embedding / output matrices: vocab padded to a multiple of vocab_multiple·tp.
  int64_t padded_vocab(int64_t tp) const;
  // Parameter count (unpadded vocabulary), for FLOP and memory estimates.
  int64_t num_parameters() const;
  // Megatron's model FLOPs (num_floating_point_operations) for `samples` causal rows of `seq` tokens, forward and
  // backward, with the output layer over `padded_vocab` rows.
  double flops(int64_t samples, int64_t seq, int64_t padded_vocab) const;
};

// RoPE inverse frequencies, one per pair of the head dimension, with the spec's scaling applied
// (linear: divided by the factor; llama3: Meta's wavelength-dependent blend), as HF computes them.
std::vector<double> rope_inv_freq(const ModelSpec& spec);

}  // namespace weft
