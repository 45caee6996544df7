// weft/src/model/model_spec.cpp v1 — ModelSpec from a deck, vocab padding, RoPE frequencies.
#include "model/model_spec.h"

#include <cmath>
#include <numbers>

namespace weft {

ModelSpec ModelSpec::from_config(const ModelConfig& m) {
  ModelSpec s;
  s.family = m.family;
  s.num_layers = m.num_layers;
  s.hidden = m.hidden_size;
  s.ffn = m.ffn_hidden_size;
  s.heads = m.num_attention_heads;
  s.groups = m.num_query_groups ? m.num_query_groups : m.num_attention_heads;
  s.head_dim = m.kv_channels ? m.kv_channels : m.hidden_size / m.num_attention_heads;
  s.vocab = m.vocab_size;
  s.vocab_multiple = m.make_vocab_size_divisible_by;
  s.max_positions = m.max_position_embeddings;
  s.rope_theta = m.rope_theta;
  s.rope_scaling = m.rope_scaling;
  s.norm_eps = m.norm_epsilon;
  s.qkv_bias = m.qkv_bias;
  s.tie_embeddings = m.tie_embeddings;
  s.sliding_window = m.sliding_window;
  s.init_std = m.init_method_std;
  return s;
}

int64_t ModelSpec::padded_vocab(int64_t tp) const {
  const int64_t multiple = vocab_multiple * tp;
  return (vocab + multiple - 1) / multiple * multiple;
}

int64_t ModelSpec::num_parameters() const {
  const int64_t qkv = (heads + 2 * groups) * head_dim * hidden + (qkv_bias ? (heads + 2 * groups) * head_dim : 0);
  const int64_t layer = 2 * hidden + qkv + heads * head_dim * hidden + 3 * hidden * ffn;
  return num_layers * layer + hidden + vocab * hidden * (tie_embeddings ? 1 : 2);
}

double ModelSpec::flops(int64_t samples, int64_t seq, int64_t padded_vocab) const {
  const double tokens = double(samples) * double(seq), h = double(hidden), q = double(heads * head_dim),
               kv = double(groups * head_dim), L = double(num_layers);
  const double per_token = 6.0 * (h * double(ffn) * 3.0 * L + L * (h * (q + 2 * kv) + q * h) + h * double(padded_vocab));
  const double attention = double(samples) * double(seq) * double(seq) * L * 6.0 * q / 2.0 * 2.0;
  return tokens * per_token + attention;
}

std::vector<double> rope_inv_freq(const ModelSpec& spec) {
  const int64_t half = spec.head_dim / 2;
  std::vector<double> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv[i] = 1.0 / std::pow(spec.rope_theta, double(2 * i) / double(spec.head_dim));
  const RopeScalingConfig& r = spec.rope_scaling;
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
