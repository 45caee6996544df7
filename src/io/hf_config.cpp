// weft/src/io/hf_config.cpp v3 — config.json parsing with explicit refusals, and writing: the keys every family
// shares here and in the model field table, each family's own in its entry of io/hf_families.cpp.
#include "io/hf_config.h"

#include <filesystem>
#include <fstream>

#include "io/hf_families.h"
#include "io/json_read.h"
#include "model/model_fields.h"

namespace weft {
using nlohmann::json;

ModelSpec parse_hf_config(const json& j, const std::string& where) {
  const HfFamily& family = hf_family_of_model_type(json_get<std::string>(j, "model_type", where), where);
  ModelSpec s;
  s.family = family.name;
  for (const ModelField& f : model_fields()) {
    if (!f.hf_key) continue;
    WEFT_CHECK(!f.hf_required || (j.contains(f.hf_key) && !j[f.hf_key].is_null()), where, ": missing '", f.hf_key,
               "'");
    if (!j.contains(f.hf_key) || j[f.hf_key].is_null()) continue;
    try {
      f.set(s, j[f.hf_key]);
    } catch (const std::exception&) {
      fail(str(where, ": '", f.hf_key, "' has the wrong type (", j[f.hf_key].dump(), ")"));
    }
  }
  refuse_if(json_get_or<std::string>(j, "hidden_act", "silu", where) != "silu", where, "hidden_act",
            "is '" + json_get_or<std::string>(j, "hidden_act", "", where) + "', not silu");
  refuse_if(json_get_or<bool>(j, "mlp_bias", false, where), where, "mlp_bias", "is true");
  refuse_if(json_get_or<double>(j, "attention_dropout", 0.0, where) != 0.0, where, "attention_dropout", "is not 0");

  // RoPE: transformers 5 writes rope_parameters (with rope_theta inside); 4.x writes rope_theta + rope_scaling.
  json rope = json::object();
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) rope = j["rope_parameters"];
  else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) rope = j["rope_scaling"];
  s.rope_theta = json_get_or<double>(rope, "rope_theta", json_get_or<double>(j, "rope_theta", 10000.0, where), where);
  const std::string rope_type =
      json_get_or<std::string>(rope, "rope_type", json_get_or<std::string>(rope, "type", "default", where), where);
  if (rope_type == "linear" || rope_type == "llama3") {
    s.rope_scaling.type = rope_type;
    s.rope_scaling.factor = json_get<double>(rope, "factor", where + " rope scaling");
    if (rope_type == "llama3") {
      s.rope_scaling.low_freq_factor = json_get<double>(rope, "low_freq_factor", where + " rope scaling");
      s.rope_scaling.high_freq_factor = json_get<double>(rope, "high_freq_factor", where + " rope scaling");
      s.rope_scaling.original_max_position_embeddings =
          json_get<int64_t>(rope, "original_max_position_embeddings", where + " rope scaling");
    }
  } else if (rope_type == "yarn") {
    RopeScaling& r = s.rope_scaling;
    r.type = rope_type;
    r.factor = json_get<double>(rope, "factor", where + " rope scaling");
    r.original_max_position_embeddings = json_get<int64_t>(rope, "original_max_position_embeddings",
                                                           where + " rope scaling");
    r.beta_fast = json_get_or<double>(rope, "beta_fast", 32.0, where);
    r.beta_slow = json_get_or<double>(rope, "beta_slow", 1.0, where);
    r.mscale = json_get_or<double>(rope, "mscale", 1.0, where);
    r.mscale_all_dim = json_get_or<double>(rope, "mscale_all_dim", 0.0, where);
  } else {
    refuse_if(rope_type != "default", where, "rope type",
              "is '" + rope_type + "' (weft has default, linear, llama3, yarn)");
  }
  refuse_if(json_get_or<double>(j, "partial_rotary_factor", json_get_or<double>(rope, "partial_rotary_factor", 1.0)) !=
                1.0,
            where, "partial_rotary_factor", "is not 1");

  family.read(j, s, where);
  // transformers 5 lists each layer's attention; weft has one window for all layers or none.
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    int sliding = 0;
    for (const auto& t : j["layer_types"]) sliding += t == "sliding_attention";
    refuse_if(sliding != 0 && sliding != static_cast<int>(j["layer_types"].size()), where, "layer_types",
              "mixes sliding and full attention layers");
    if (sliding == 0 && family.name != "mistral" && family.name != "mixtral") s.sliding_window = 0;
  }
  for (const auto& [field, value] : {std::pair{"num_hidden_layers", s.num_layers}, {"hidden_size", s.hidden},
                                     {"num_attention_heads", s.heads}, {"vocab_size", s.vocab},
                                     {"max_position_embeddings", s.max_positions}})
    WEFT_CHECK(value > 0, where, ": '", field, "' must be positive, got ", value);
  WEFT_CHECK(s.groups >= 0 && s.head_dim >= 0, where, ": num_key_value_heads and head_dim must not be negative");
  s = s.resolved();
  WEFT_CHECK(s.groups > 0 && s.heads % s.groups == 0 && s.head_dim > 0 && s.head_dim % 2 == 0, where,
             ": num_attention_heads ", s.heads, " must be a multiple of num_key_value_heads ", s.groups,
             " and head_dim (", s.head_dim, ") positive and even");
  return s;
}

ModelSpec read_hf_config(const std::string& path) {
  const std::string file = std::filesystem::is_directory(path) ? path + "/config.json" : path;
  std::ifstream in(file);
  WEFT_CHECK(in, "cannot open '", file, "' (an HF model directory needs config.json)");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail(str(file, ": not valid JSON: ", e.what()));
  }
  return parse_hf_config(j, file);
}

json hf_config_of(const ModelSpec& s) {
  const HfFamily& family = hf_family(s.family);
  json j = {{"architectures", {family.architecture}},
            {"model_type", family.model_type},
            {"hidden_act", "silu"},
            {"rope_theta", s.rope_theta},
            {"attention_dropout", 0.0},
            {"torch_dtype", "bfloat16"}};
  for (const ModelField& f : model_fields())
    if (f.hf_key) j[f.hf_key] = f.get(s);
  WEFT_CHECK(family.name == "deepseek_v2" ||
                 (!s.latent_attention() && s.moe_num_groups == 0 && s.moe_topk_scaling == 1.0 &&
                  s.first_k_dense_replace == 0 && s.moe_layer_freq == 1 && s.rope_scaling.type != "yarn"),
             "a ", s.family, " model has no latent attention, YaRN RoPE, group-limited or scaled routing and no "
             "first_k_dense_replace or moe_layer_freq in HuggingFace's form (family deepseek_v2 has)");
  family.write(s, j);
  if (s.rope_scaling.type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", s.rope_scaling.factor}};
  } else if (s.rope_scaling.type == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", s.rope_scaling.factor},
                         {"low_freq_factor", s.rope_scaling.low_freq_factor},
                         {"high_freq_factor", s.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", s.rope_scaling.original_max_position_embeddings}};
  } else if (s.rope_scaling.type == "yarn") {
    const RopeScaling& r = s.rope_scaling;
    j["rope_scaling"] = {{"rope_type", "yarn"}, {"type", "yarn"},   {"factor", r.factor},
                         {"original_max_position_embeddings", r.original_max_position_embeddings},
                         {"beta_fast", r.beta_fast},  {"beta_slow", r.beta_slow}, {"mscale", r.mscale},
                         {"mscale_all_dim", r.mscale_all_dim}};
  }
  return j;
}

}  // namespace weft
