// weft/src/model/model_spec.cpp v2 — derived defaults, layer kinds, vocab padding, parameter and FLOP counts, RoPE.
#include "model/model_spec.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace weft {

ModelSpec ModelSpec::resolved() const {
  ModelSpec s = *this;
  if (s.groups == 0) s.groups = s.heads;
  if (s.head_dim == 0 && s.heads > 0) s.head_dim = s.hidden / s.heads;
  return s;
}

MlpKind ModelSpec::mlp_kind(int64_t layer) const {
  const bool dense_only = std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end();
  return num_experts > 0 && !dense_only && (layer + 1) % decoder_sparse_step == 0 ? MlpKind::moe : MlpKind::dense;
}

int64_t ModelSpec::moe_layers() const {
  int64_t n = 0;
  for (int64_t l = 0; l < num_layers; ++l) n += mlp_kind(l) == MlpKind::moe;
  return n;
}

int64_t ModelSpec::padded_vocab(int64_t tp) const {
  const int64_t multiple = vocab_multiple * tp;
  return (vocab + multiple - 1) / multiple * multiple;
}

int64_t ModelSpec::num_parameters() const {
  const int64_t qkv = (heads + 2 * groups) * head_dim * hidden + (qkv_bias ? (heads + 2 * groups) * head_dim : 0);
  int64_t total = hidden + vocab * hidden * (tie_embeddings ? 1 : 2);
  for (int64_t l = 0; l < num_layers; ++l) {
    total += 2 * hidden + qkv + heads * head_dim * hidden;
    if (mlp_kind(l) == MlpKind::dense)
      total += 3 * hidden * ffn;
    else
      total += num_experts * (hidden + 3 * hidden * moe_ffn) + 3 * hidden * moe_shared_ffn + (moe_shared_gate ? hidden : 0);
  }
  return total;
}

double ModelSpec::flops(int64_t samples, int64_t seq, int64_t padded_vocab) const {
  const double tokens = double(samples) * double(seq), h = double(hidden), q = double(heads * head_dim),
               kv = double(groups * head_dim), L = double(num_layers);
  double mlp_width = 0;  // Σ over layers of the SwiGLU width a token goes through
  for (int64_t l = 0; l < num_layers; ++l)
    mlp_width += mlp_kind(l) == MlpKind::dense ? double(ffn) : double(moe_ffn * moe_topk + moe_shared_ffn);
  const double per_token = 6.0 * (h * mlp_width * 3.0 + L * (h * (q + 2 * kv) + q * h) + h * double(padded_vocab));
  const double attention = double(samples) * double(seq) * double(seq) * L * 6.0 * q / 2.0 * 2.0;
  return tokens * per_token + attention;
}

std::vector<double> rope_inv_freq(const ModelSpec& spec) {
  const int64_t half = spec.head_dim / 2;
  std::vector<double> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv[i] = 1.0 / std::pow(spec.rope_theta, double(2 * i) / double(spec.head_dim));
  const RopeScaling& r = spec.rope_scaling;
  if (r.type == "linear") {
    for (double& f : inv) f /= r.factor;
  } else if (r.type == "llama3") {
    const double old_ctx = double(r.original_max_position_embeddings);
    const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= r.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        f = (1 - smooth) * f / r.factor + smooth * f;
      }
    }
  }
  return inv;
}

}  // namespace weft
