// weft/src/io/hf_weights.cpp v1 — the Megatron ↔ HF name and row map, shard reads, export.
#include "io/hf_weights.h"

#include <map>
#include <regex>

#include "ops/ops.h"
#include "util/error.h"

namespace weft {
namespace {

struct LayerName {
  int64_t layer = -1;
  std::string rest;  // after "decoder.layers.N."
};

LayerName split_layer(const std::string& name) {
  static const std::regex re(R"(decoder\.layers\.(\d+)\.(.+))");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return {};
  return {std::stoll(m[1]), m[2]};
}

std::string hf_layer(int64_t layer, const std::string& rest) { return str("model.layers.", layer, ".", rest); }

// The HF tensors of one layer that come from one weft tensor, in the order their rows are stacked.
std::vector<HfSegment> qkv_segments(const ModelSpec& s, int64_t layer, const char* kind) {
  const int64_t q = s.q_per_group() * s.head_dim, d = s.head_dim, per_group = q + 2 * d;
  std::vector<HfSegment> out;
  for (int64_t g = 0; g < s.groups; ++g) {
    out.push_back({g * per_group, q, hf_layer(layer, str("self_attn.q_proj.", kind)), g * q});
    out.push_back({g * per_group + q, d, hf_layer(layer, str("self_attn.k_proj.", kind)), g * d});
    out.push_back({g * per_group + q + d, d, hf_layer(layer, str("self_attn.v_proj.", kind)), g * d});
  }
  return out;
}

}  // namespace

std::vector<HfSegment> hf_segments(const ModelSpec& s, const std::string& name) {
  if (name == "embedding.word_embeddings.weight") return {{0, s.vocab, "model.embed_tokens.weight", 0}};
  if (name == "output_layer.weight") return {{0, s.vocab, "lm_head.weight", 0}};
  if (name == "decoder.final_layernorm.weight") return {{0, s.hidden, "model.norm.weight", 0}};
  const LayerName l = split_layer(name);
  if (l.layer >= 0) {
    if (l.rest == "input_layernorm.weight") return {{0, s.hidden, hf_layer(l.layer, "input_layernorm.weight"), 0}};
    if (l.rest == "pre_mlp_layernorm.weight")
      return {{0, s.hidden, hf_layer(l.layer, "post_attention_layernorm.weight"), 0}};
    if (l.rest == "self_attention.linear_qkv.weight") return qkv_segments(s, l.layer, "weight");
    if (l.rest == "self_attention.linear_qkv.bias") return qkv_segments(s, l.layer, "bias");
    if (l.rest == "self_attention.linear_proj.weight") return {{0, s.hidden, hf_layer(l.layer, "self_attn.o_proj.weight"), 0}};
    if (l.rest == "mlp.linear_fc1.weight")
      return {{0, s.ffn, hf_layer(l.layer, "mlp.gate_proj.weight"), 0},
              {s.ffn, s.ffn, hf_layer(l.layer, "mlp.up_proj.weight"), 0}};
    if (l.rest == "mlp.linear_fc2.weight") return {{0, s.hidden, hf_layer(l.layer, "mlp.down_proj.weight"), 0}};
  }
  fail(str("parameter '", name, "' has no HuggingFace counterpart"));
}

Shape hf_shape(const ModelSpec& s, const std::string& hf_name) {
  static const std::regex re(R"(model\.layers\.\d+\.(.+))");
  std::smatch m;
  if (hf_name == "model.embed_tokens.weight" || hf_name == "lm_head.weight") return {s.vocab, s.hidden};
  if (hf_name == "model.norm.weight") return {s.hidden};
  if (std::regex_match(hf_name, m, re)) {
    const std::string r = m[1];
    const int64_t q = s.heads * s.head_dim, kv = s.groups * s.head_dim;
    if (r == "input_layernorm.weight" || r == "post_attention_layernorm.weight") return {s.hidden};
    if (r == "self_attn.q_proj.weight") return {q, s.hidden};
    if (r == "self_attn.k_proj.weight" || r == "self_attn.v_proj.weight") return {kv, s.hidden};
    if (r == "self_attn.q_proj.bias") return {q};
    if (r == "self_attn.k_proj.bias" || r == "self_attn.v_proj.bias") return {kv};
    if (r == "self_attn.o_proj.weight") return {s.hidden, q};
    if (r == "mlp.gate_proj.weight" || r == "mlp.up_proj.weight") return {s.ffn, s.hidden};
    if (r == "mlp.down_proj.weight") return {s.hidden, s.ffn};
  }
  return {};
}

namespace {

// Reads rows (elements, for 1-D) [row, row + rows) × columns [col, col + cols) of an HF tensor, checking its shape.
void read_hf(const ModelSpec& spec, const SafetensorsDir& hf, const std::string& name, int64_t row, int64_t rows,
             int64_t col, int64_t cols, double* out) {
  const SafetensorsFile& f = hf.file_of(name);
  const Shape want = hf_shape(spec, name);
  WEFT_CHECK(f.info(name).shape == want, f.path(), ": tensor '", name, "' has shape ", shape_str(f.info(name).shape),
             ", but config.json implies ", shape_str(want));
  if (want.size() == 1) f.read_block(name, 0, 1, row, rows, out);
  else f.read_block(name, row, rows, col, cols, out);
}

}  // namespace

void load_hf_parameter(Parameter& p, const ModelSpec& spec, const SafetensorsDir& hf) {
  const std::vector<HfSegment> segs = hf_segments(spec, p.name);
  const Shape& ls = p.value.shape();
  const int64_t cols = ls.size() == 2 ? ls[1] : 1;
  std::vector<double> local(static_cast<size_t>(p.value.numel()), 0.0);
  if (p.shard_dim == 1) {
    // Row-parallel: every row, this rank's columns.
    for (const ShardBlock& b : p.blocks)
      for (const HfSegment& s : segs) {
        std::vector<double> block(static_cast<size_t>(s.rows * b.length));
        read_hf(spec, hf, s.hf_name, s.hf_row_begin, s.rows, b.global_begin, b.length, block.data());
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
        read_hf(spec, hf, s.hf_name, s.hf_row_begin + (lo - s.row_begin), hi - lo, 0, cols,
                local.data() + (b.local_begin + lo - b.global_begin) * cols);
      }
  }
  write_into(p.value, Tensor::from_vector(local, ls));
}

void check_no_unused_hf_tensors(const ModelSpec& spec, const SafetensorsDir& hf) {
  for (const std::string& name : hf.names()) {
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // a buffer older exports include
    if (name == "lm_head.weight" && spec.tie_embeddings) continue;        // some tied exports repeat it
    WEFT_CHECK(!hf_shape(spec, name).empty() && (name != "lm_head.weight" || !spec.tie_embeddings) &&
                   (spec.qkv_bias || name.find("_proj.bias") == std::string::npos),
               hf.dir(), ": the checkpoint has tensor '", name, "', which the model in config.json does not use "
               "(a config/checkpoint mismatch)");
  }
}

void add_hf_tensors(const ModelSpec& spec, const std::string& name, const Shape& global_shape,
                    const std::vector<double>& values, SafetensorsWriter& out) {
  const int64_t cols = global_shape.size() == 2 ? global_shape[1] : 1;
  std::map<std::string, std::vector<double>> pieces;
  for (const HfSegment& s : hf_segments(spec, name)) {
    const Shape shape = hf_shape(spec, s.hf_name);
    auto& dst = pieces[s.hf_name];
    dst.resize(static_cast<size_t>(numel_of(shape)));
    std::copy(values.begin() + s.row_begin * cols, values.begin() + (s.row_begin + s.rows) * cols,
              dst.begin() + s.hf_row_begin * cols);
  }
  for (auto& [hf_name, v] : pieces) out.add(hf_name, hf_shape(spec, hf_name), v);
}

}  // namespace weft
