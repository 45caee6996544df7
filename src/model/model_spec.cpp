// weft/src/model/model_spec.cpp v3 — derived defaults, layer kinds, vocab padding, parameter and FLOP counts, RoPE.
#include "model/model_spec.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace weft {

ModelSpec ModelSpec::resolved() const {
  ModelSpec s = *this;
  if (s.groups == 0) s.groups = s.heads;
  if (s.latent_attention() && s.head_dim == 0) s.head_dim = s.qk_nope_head_dim + s.qk_rope_head_dim;
  if (s.head_dim == 0 && s.heads > 0) s.head_dim = s.hidden / s.heads;
  return s;
}

double yarn_mscale(double factor, double m) { return factor <= 1 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; }

double ModelSpec::softmax_scale() const {
  double scale = 1.0 / std::sqrt(double(head_dim));
  if (rope_scaling.type == "yarn" && rope_scaling.mscale_all_dim > 0) {
    const double m = yarn_mscale(rope_scaling.factor, rope_scaling.mscale_all_dim);
    scale *= m * m;
  }
  return scale;
}

MlpKind ModelSpec::mlp_kind(int64_t layer) const {
  const bool dense_only = std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end();
  return num_experts > 0 && !dense_only && (layer + 1) % decoder_sparse_step == 0 && layer >= first_k_dense_replace &&
                 layer % moe_layer_freq == 0
             ? MlpKind::moe
             : MlpKind::dense;
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
  int64_t attention = (heads + 2 * groups) * head_dim * hidden + (qkv_bias ? (heads + 2 * groups) * head_dim : 0) +
                      heads * head_dim * hidden;
  if (latent_attention())
    attention = (q_lora_rank > 0 ? q_lora_rank * (hidden + 1) + heads * head_dim * q_lora_rank
                                 : heads * head_dim * hidden) +
                (kv_lora_rank + qk_rope_head_dim) * hidden + kv_lora_rank +
                heads * (qk_nope_head_dim + v_head_dim) * kv_lora_rank + heads * v_head_dim * hidden;
  int64_t total = hidden + vocab * hidden * (tie_embeddings ? 1 : 2);
  for (int64_t l = 0; l < num_layers; ++l) {
    total += 2 * hidden + attention;
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
  // The attention's projections per token and layer (multiply-adds), and its score and value widths.
  double projections = h * (q + 2 * kv) + q * h, score_width = q, value_width = q;
  if (latent_attention()) {
    const double n = double(heads);
    projections = (q_lora_rank > 0 ? h * double(q_lora_rank) + double(q_lora_rank) * q : h * q) +
                  h * double(kv_lora_rank + qk_rope_head_dim) +
                  double(kv_lora_rank) * n * double(qk_nope_head_dim + v_head_dim) + n * double(v_head_dim) * h;
    value_width = n * double(v_head_dim);
  }
  const double per_token = 6.0 * (h * mlp_width * 3.0 + L * projections + h * double(padded_vocab));
  // Causal: half of the seq² scores and value products, forward (2 FLOPs each) and backward (twice that).
  const double attention = double(samples) * double(seq) * double(seq) * L * 6.0 * (score_width + value_width) / 2.0;
  return tokens * per_token + attention;
}

std::vector<double> rope_inv_freq(const ModelSpec& spec) {
  const int64_t dim = spec.rope_dim(), half = dim / 2;
  std::vector<double> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(spec.rope_theta, double(2 * i) / double(dim));
  const RopeScaling& r = spec.rope_scaling;
  if (r.type == "yarn") {
    // The pair index whose wavelength turns `rotations` times over the original context.
    const double ctx = double(r.original_max_position_embeddings);
    auto pair_of = [&](double rotations) {
      return double(dim) * std::log(ctx / (rotations * 2 * std::numbers::pi)) / (2 * std::log(spec.rope_theta));
    };
    const double low = std::max(std::floor(pair_of(r.beta_fast)), 0.0);
    double high = std::min(std::ceil(pair_of(r.beta_slow)), double(dim - 1));
    if (high == low) high += 0.001;
    for (int64_t i = 0; i < half; ++i) {
      const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);  // 0: kept, 1: interpolated
      inv[i] = inv[i] / r.factor * ramp + inv[i] * (1 - ramp);
    }
  } else if (r.type == "linear") {
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
