// weft/src/io/hf_weights.cpp v3 — the Megatron ↔ HF name and row map, shard reads, export.
#include "io/hf_weights.h"

#include "io/hf_families.h"
#include "ops/ops.h"
#include "util/error.h"

namespace weft {

void HfNameMap::add(const std::string& name, const std::string& hf_name, const Shape& hf_shape, int64_t row_begin) {
  segments_[name].push_back({row_begin, hf_shape.at(0), hf_name, 0});
  shapes_[hf_name] = hf_shape;
}

HfNameMap::HfNameMap(const ModelSpec& spec) : spec_(spec) {
  const ModelSpec& s = spec_;
  const HfFamily& family = hf_family(s.family);
  const int64_t h = s.hidden;
  add("embedding.word_embeddings.weight", "model.embed_tokens.weight", {s.vocab, h}, 0);
  if (!s.tie_embeddings) add("output_layer.weight", "lm_head.weight", {s.vocab, h}, 0);
  add("decoder.final_layernorm.weight", "model.norm.weight", {h}, 0);
  // A SwiGLU's fc1 stacks gate over up (Megatron's linear_fc1); HF keeps the three matrices apart.
  auto swiglu = [&](const std::string& weft, const std::string& hf, int64_t width, const char* gate, const char* up,
                    const char* down) {
    add(weft + ".linear_fc1.weight", hf + "." + gate + ".weight", {width, h}, 0);
    add(weft + ".linear_fc1.weight", hf + "." + up + ".weight", {width, h}, width);
    add(weft + ".linear_fc2.weight", hf + "." + down + ".weight", {h, width}, 0);
  };
  for (int64_t l = 0; l < s.num_layers; ++l) {
    const std::string w = str("decoder.layers.", l, "."), f = str("model.layers.", l, ".");
    add(w + "input_layernorm.weight", f + "input_layernorm.weight", {h}, 0);
    add(w + "pre_mlp_layernorm.weight", f + "post_attention_layernorm.weight", {h}, 0);
    if (s.latent_attention()) {
      add_latent_attention(w + "self_attention.", f + "self_attn.");
    } else {
      add_self_attention(w + "self_attention.", f + "self_attn.");
    }
    if (s.mlp_kind(l) == MlpKind::dense) {
      swiglu(w + "mlp", f + "mlp", s.ffn, "gate_proj", "up_proj", "down_proj");
      continue;
    }
    const std::string block = f + family.moe_block;
    add(w + "mlp.router.weight", block + ".gate.weight", {s.num_experts, h}, 0);
    for (int64_t e = 0; e < s.num_experts; ++e)
      swiglu(str(w, "mlp.experts.local_experts.", e), str(block, ".experts.", e), s.moe_ffn, family.expert_gate,
             family.expert_up, family.expert_down);
    if (s.moe_shared_ffn > 0)
      swiglu(w + "mlp.shared_experts", str(block, ".", family.shared_expert), s.moe_shared_ffn, "gate_proj", "up_proj",
             "down_proj");
    if (s.moe_shared_gate) add(w + "mlp.shared_experts.gate_weight", block + ".shared_expert_gate.weight", {1, h}, 0);
  }
}

void HfNameMap::add_self_attention(const std::string& w, const std::string& f) {
  const ModelSpec& s = spec_;
  const int64_t h = s.hidden;
  // Megatron's fused QKV: per query group its q heads, then k, then v.
  {
    const int64_t q = s.q_per_group() * s.head_dim, d = s.head_dim, per_group = q + 2 * d;
    for (const char* kind : s.qkv_bias ? std::vector<const char*>{"weight", "bias"} : std::vector<const char*>{"weight"}) {
      const std::string fused = w + "linear_qkv." + kind;
      const bool weight = std::string(kind) == "weight";
      for (int64_t g = 0; g < s.groups; ++g) {
        const std::pair<const char*, int64_t> parts[] = {{"q_proj", q}, {"k_proj", d}, {"v_proj", d}};
        int64_t at = g * per_group;
        for (const auto& [proj, rows] : parts) {
          const std::string hf = f + proj + "." + kind;
          const int64_t total = std::string(proj) == "q_proj" ? s.heads * d : s.groups * d;
          segments_[fused].push_back({at, rows, hf, g * rows});
          shapes_[hf] = weight ? Shape{total, h} : Shape{total};
          at += rows;
        }
      }
    }
  }
  add(w + "linear_proj.weight", f + "o_proj.weight", {h, s.heads * s.head_dim}, 0);
}

void HfNameMap::add_latent_attention(const std::string& w, const std::string& f) {
  const ModelSpec& s = spec_;
  const int64_t h = s.hidden, dn = s.qk_nope_head_dim, dr = s.qk_rope_head_dim, d = dn + dr, half = dr / 2;
  // DeepSeek's weights keep each rotated pair side by side (dims 2i, 2i + 1); weft rotates dims i and i + dr/2, as
  // the other families do: the rows that make rotated dims are reordered on the way in and back on the way out.
  auto rotated_rows = [&](const std::string& name, const std::string& hf_name, int64_t row, int64_t hf_row) {
    for (int64_t i = 0; i < half; ++i) {
      segments_[name].push_back({row + i, 1, hf_name, hf_row + 2 * i});
      segments_[name].push_back({row + half + i, 1, hf_name, hf_row + 2 * i + 1});
    }
  };
  std::string q_name = w + "linear_q_proj.weight", q_hf = f + "q_proj.weight";
  int64_t q_in = h;
  if (s.q_lora_rank > 0) {
    add(w + "linear_q_down_proj.weight", f + "q_a_proj.weight", {s.q_lora_rank, h}, 0);
    add(w + "q_layernorm.weight", f + "q_a_layernorm.weight", {s.q_lora_rank}, 0);
    q_name = w + "linear_q_up_proj.weight";
    q_hf = f + "q_b_proj.weight";
    q_in = s.q_lora_rank;
  }
  shapes_[q_hf] = {s.heads * d, q_in};
  for (int64_t head = 0; head < s.heads; ++head) {
    segments_[q_name].push_back({head * d, dn, q_hf, head * d});
    rotated_rows(q_name, q_hf, head * d + dn, head * d + dn);
  }
  const std::string kv_down = w + "linear_kv_down_proj.weight", kv_hf = f + "kv_a_proj_with_mqa.weight";
  shapes_[kv_hf] = {s.kv_lora_rank + dr, h};
  segments_[kv_down].push_back({0, s.kv_lora_rank, kv_hf, 0});
  rotated_rows(kv_down, kv_hf, s.kv_lora_rank, s.kv_lora_rank);
  add(w + "kv_layernorm.weight", f + "kv_a_layernorm.weight", {s.kv_lora_rank}, 0);
  add(w + "linear_kv_up_proj.weight", f + "kv_b_proj.weight", {s.heads * (dn + s.v_head_dim), s.kv_lora_rank}, 0);
  add(w + "linear_proj.weight", f + "o_proj.weight", {h, s.heads * s.v_head_dim}, 0);
}

const std::vector<HfSegment>& HfNameMap::segments(const std::string& name) const {
  const auto it = segments_.find(name);
  WEFT_CHECK(it != segments_.end(), "parameter '", name, "' has no HuggingFace counterpart");
  return it->second;
}

const Shape* HfNameMap::shape(const std::string& hf_name) const {
  const auto it = shapes_.find(hf_name);
  return it == shapes_.end() ? nullptr : &it->second;
}

namespace {

// Reads rows (elements, for 1-D) [row, row + rows) × columns [col, col + cols) of an HF tensor, checking its shape.
void read_hf(const HfNameMap& names, const SafetensorsDir& hf, const std::string& name, int64_t row, int64_t rows,
             int64_t col, int64_t cols, double* out) {
  const SafetensorsFile& f = hf.file_of(name);
  const Shape& want = *names.shape(name);
  WEFT_CHECK(f.info(name).shape == want, f.path(), ": tensor '", name, "' has shape ", shape_str(f.info(name).shape),
             ", but config.json implies ", shape_str(want));
  if (want.size() == 1) f.read_block(name, 0, 1, row, rows, out);
  else f.read_block(name, row, rows, col, cols, out);
}

}  // namespace

void load_hf_parameter(Parameter& p, const HfNameMap& names, const SafetensorsDir& hf) {
  const std::vector<HfSegment>& segs = names.segments(p.name);
  const Shape& ls = p.value.shape();
  const int64_t cols = ls.size() == 2 ? ls[1] : 1;
  std::vector<double> local(static_cast<size_t>(p.value.numel()), 0.0);
  if (p.shard_dim == 1) {
    // Row-parallel: every row, this rank's columns.
    for (const ShardBlock& b : p.blocks)
      for (const HfSegment& s : segs) {
        std::vector<double> block(static_cast<size_t>(s.rows * b.length));
        read_hf(names, hf, s.hf_name, s.hf_row_begin, s.rows, b.global_begin, b.length, block.data());
        for (int64_t r = 0; r < s.rows; ++r)
          for (int64_t c = 0; c < b.length; ++c)
            local[(s.row_begin + r) * cols + b.local_begin + c] = block[r * b.length + c];
      }
  } else {
    const std::vector<ShardBlock> blocks =
        p.shard_dim == 0 ? p.blocks : std::vector<ShardBlock>{{0, 0, ls.empty() ? 0 : ls[0]}};
    for (const ShardBlock& b : blocks)
      for (const HfSegment& s : segs) {
        const int64_t lo = std::max(b.global_begin, s.row_begin);
        const int64_t hi = std::min(b.global_begin + b.length, s.row_begin + s.rows);
        if (lo >= hi) continue;
        read_hf(names, hf, s.hf_name, s.hf_row_begin + (lo - s.row_begin), hi - lo, 0, cols,
                local.data() + (b.local_begin + lo - b.global_begin) * cols);
      }
  }
  write_into(p.value, Tensor::from_vector(local, ls));
}

void check_no_unused_hf_tensors(const HfNameMap& names, const SafetensorsDir& hf) {
  for (const std::string& name : hf.names()) {
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // a buffer older exports include
    if (name == "lm_head.weight" && names.spec().tie_embeddings) continue;  // some tied exports repeat it
    WEFT_CHECK(names.shape(name), hf.dir(), ": the checkpoint has tensor '", name, "', which the model in "
               "config.json does not use (a config/checkpoint mismatch)");
  }
}

void add_hf_tensors(const HfNameMap& names, const std::string& name, const Shape& global_shape,
                    const std::vector<double>& values, SafetensorsWriter& out) {
  const int64_t cols = global_shape.size() == 2 ? global_shape[1] : 1;
  std::map<std::string, std::vector<double>> pieces;
  for (const HfSegment& s : names.segments(name)) {
    auto& dst = pieces[s.hf_name];
    dst.resize(static_cast<size_t>(numel_of(*names.shape(s.hf_name))));
    std::copy(values.begin() + s.row_begin * cols, values.begin() + (s.row_begin + s.rows) * cols,
              dst.begin() + s.hf_row_begin * cols);
  }
  for (auto& [hf_name, v] : pieces) out.add(hf_name, *names.shape(hf_name), v);
}

}  // namespace weft
