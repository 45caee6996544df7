// weft/src/io/model_io.cpp v1 — HF and native weights into a (sharded) model; HF export.
#include "io/model_io.h"

#include <filesystem>
#include <fstream>

#include "io/hf_config.h"
#include "io/hf_weights.h"
#include "ops/ops.h"

namespace weft {
namespace fs = std::filesystem;
using nlohmann::json;

WeightSource WeightSource::parse(const std::string& spec) {
  if (spec == "random") return {};
  if (spec.rfind("hf:", 0) == 0) return {hf, spec.substr(3)};
  if (spec.rfind("native:", 0) == 0) return {native, spec.substr(7)};
  if (fs::exists(fs::path(spec) / "config.json")) return {hf, spec};
  if (fs::exists(fs::path(spec) / "latest") || fs::exists(fs::path(spec) / "metadata.json")) return {native, spec};
  fail(str("'", spec, "' is neither random, hf:DIR, native:DIR, nor a directory with config.json or a weft checkpoint"));
}

json spec_to_json(const ModelSpec& s) {
  return {{"family", s.family},
          {"num_layers", s.num_layers},
          {"hidden_size", s.hidden},
          {"ffn_hidden_size", s.ffn},
          {"num_attention_heads", s.heads},
          {"num_query_groups", s.groups},
          {"kv_channels", s.head_dim},
          {"vocab_size", s.vocab},
          {"make_vocab_size_divisible_by", s.vocab_multiple},
          {"max_position_embeddings", s.max_positions},
          {"rope_theta", s.rope_theta},
          {"rope_scaling", {{"type", s.rope_scaling.type},
                            {"factor", s.rope_scaling.factor},
                            {"low_freq_factor", s.rope_scaling.low_freq_factor},
                            {"high_freq_factor", s.rope_scaling.high_freq_factor},
                            {"original_max_position_embeddings", s.rope_scaling.original_max_position_embeddings}}},
          {"norm_epsilon", s.norm_eps},
          {"qkv_bias", s.qkv_bias},
          {"tie_embeddings", s.tie_embeddings},
          {"sliding_window", s.sliding_window},
          {"init_method_std", s.init_std}};
}

ModelSpec spec_from_json(const json& j) {
  ModelSpec s;
  try {
    s.family = j.at("family");
    s.num_layers = j.at("num_layers");
    s.hidden = j.at("hidden_size");
    s.ffn = j.at("ffn_hidden_size");
    s.heads = j.at("num_attention_heads");
    s.groups = j.at("num_query_groups");
    s.head_dim = j.at("kv_channels");
    s.vocab = j.at("vocab_size");
    s.vocab_multiple = j.at("make_vocab_size_divisible_by");
    s.max_positions = j.at("max_position_embeddings");
    s.rope_theta = j.at("rope_theta");
    const json& r = j.at("rope_scaling");
    s.rope_scaling = {r.at("type"), r.at("factor"), r.at("low_freq_factor"), r.at("high_freq_factor"),
                      r.at("original_max_position_embeddings")};
    s.norm_eps = j.at("norm_epsilon");
    s.qkv_bias = j.at("qkv_bias");
    s.tie_embeddings = j.at("tie_embeddings");
    s.sliding_window = j.at("sliding_window");
    s.init_std = j.at("init_method_std");
  } catch (const json::exception& e) {
    fail(str("checkpoint metadata: incomplete model description: ", e.what()));
  }
  return s;
}

ModelSpec spec_of(const WeightSource& src) {
  if (src.kind == WeightSource::hf) return read_hf_config(src.dir);
  WEFT_ASSERT(src.kind == WeightSource::native);
  const CheckpointReader r(src.dir);
  WEFT_CHECK(r.metadata().contains("model"), r.path(), ": metadata.json has no model description");
  return spec_from_json(r.metadata()["model"]);
}

ModelConfig model_config_of(const ModelSpec& s) {
  ModelConfig m;
  m.family = s.family;
  m.num_layers = s.num_layers;
  m.hidden_size = s.hidden;
  m.ffn_hidden_size = s.ffn;
  m.num_attention_heads = s.heads;
  m.num_query_groups = s.groups;
  m.kv_channels = s.head_dim;
  m.vocab_size = s.vocab;
  m.make_vocab_size_divisible_by = s.vocab_multiple;
  m.max_position_embeddings = s.max_positions;
  m.rope_theta = s.rope_theta;
  m.rope_scaling = s.rope_scaling;
  m.norm_epsilon = s.norm_eps;
  m.qkv_bias = s.qkv_bias;
  m.tie_embeddings = s.tie_embeddings;
  m.sliding_window = s.sliding_window;
  m.init_method_std = s.init_std;
  return m;
}

void load_hf_weights(const ModelSpec& spec, const std::vector<Parameter*>& params, const std::string& dir) {
  const SafetensorsDir hf(dir);
  check_no_unused_hf_tensors(spec, hf);
  for (Parameter* p : params) load_hf_parameter(*p, spec, hf);
}

void load_native_weights(const std::vector<Parameter*>& params, const CheckpointReader& ckpt) {
  for (Parameter* p : params) ckpt.read("model/" + p->name, p->value, p->global_shape, p->shard_dim, p->blocks);
}

std::vector<ShardedTensor> model_tensors(const std::vector<Parameter*>& params) {
  std::vector<ShardedTensor> out;
  for (const Parameter* p : params) out.push_back(sharded("model", *p, p->value));
  return out;
}


void export_hf(GptModel& model, const std::string& dir, DType dtype, size_t shard_bytes,
               const std::string& tokenizer_dir) {
  Comm& tp = *model.context().tp;
  const bool writer = tp.rank() == 0;
  SafetensorsWriter out(dir, dtype, shard_bytes);
  for (Parameter* p : model.parameters()) {
    const std::vector<double> global = gather_global(*p, tp);
    if (writer) add_hf_tensors(model.spec(), p->name, p->global_shape, global, out);
  }
  if (!writer) return;
  out.finish();
  {
    std::ofstream cfg(fs::path(dir) / "config.json");
    cfg << hf_config_of(model.spec()).dump(2) << "\n";
    WEFT_CHECK(cfg.good(), "cannot write ", dir, "/config.json");
  }
  if (tokenizer_dir.empty()) return;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                        "generation_config.json"}) {
    const fs::path src = fs::path(tokenizer_dir) / f;
    if (fs::exists(src)) fs::copy_file(src, fs::path(dir) / f, fs::copy_options::overwrite_existing);
  }
}

}  // namespace weft
