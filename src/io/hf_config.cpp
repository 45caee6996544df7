// weft/src/io/hf_config.cpp v1 — config.json parsing with explicit refusals, and writing.
#include "io/hf_config.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "util/error.h"

namespace weft {
using nlohmann::json;

namespace {

template <typename T>
T get(const json& j, const char* key, const std::string& where) {
  WEFT_CHECK(j.contains(key) && !j[key].is_null(), where, ": missing '", key, "'");
  try {
    return j[key].get<T>();
  } catch (const json::exception&) {
    fail(str(where, ": '", key, "' has the wrong type (", j[key].dump(), ")"));
  }
}

template <typename T>
T get_or(const json& j, const char* key, T fallback) {
  return j.contains(key) && !j[key].is_null() ? j[key].get<T>() : fallback;
}

void refuse_if(bool bad, const std::string& where, const std::string& field, const std::string& why) {
  if (bad) fail(str(where, ": '", field, "' ", why, " — weft does not implement it, so it refuses the model rather "
                    "than compute something else"));
}

}  // namespace

ModelSpec parse_hf_config(const json& j, const std::string& where) {
  ModelSpec s;
  const std::string type = get<std::string>(j, "model_type", where);
  WEFT_CHECK(type == "llama" || type == "mistral" || type == "qwen2", where, ": model_type '", type,
             "' is not supported (llama, mistral, qwen2)");
  s.family = type;
  s.num_layers = get<int64_t>(j, "num_hidden_layers", where);
  s.hidden = get<int64_t>(j, "hidden_size", where);
  s.ffn = get<int64_t>(j, "intermediate_size", where);
  s.heads = get<int64_t>(j, "num_attention_heads", where);
  s.groups = get_or<int64_t>(j, "num_key_value_heads", s.heads);
  s.head_dim = get_or<int64_t>(j, "head_dim", s.hidden / s.heads);
  s.vocab = get<int64_t>(j, "vocab_size", where);
  s.max_positions = get<int64_t>(j, "max_position_embeddings", where);
  s.norm_eps = get<double>(j, "rms_norm_eps", where);
  s.tie_embeddings = get_or<bool>(j, "tie_word_embeddings", false);
  s.init_std = get_or<double>(j, "initializer_range", 0.02);

  refuse_if(get_or<std::string>(j, "hidden_act", "silu") != "silu", where, "hidden_act",
            "is '" + get_or<std::string>(j, "hidden_act", "") + "', not silu");
  refuse_if(get_or<bool>(j, "mlp_bias", false), where, "mlp_bias", "is true");
  refuse_if(get_or<double>(j, "attention_dropout", 0.0) != 0.0, where, "attention_dropout", "is not 0");
  if (type == "qwen2") {
    s.qkv_bias = true;  // Qwen2Attention always has q/k/v biases and none on o_proj
  } else {
    refuse_if(get_or<bool>(j, "attention_bias", false), where, "attention_bias",
              "is true (HF then also puts a bias on o_proj)");
  }

  // RoPE: transformers 5 writes rope_parameters (with rope_theta inside); 4.x writes rope_theta + rope_scaling.
  json rope = json::object();
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) rope = j["rope_parameters"];
  else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) rope = j["rope_scaling"];
  s.rope_theta = get_or<double>(rope, "rope_theta", get_or<double>(j, "rope_theta", 10000.0));
  const std::string rope_type = get_or<std::string>(rope, "rope_type", get_or<std::string>(rope, "type", "default"));
  if (rope_type == "linear" || rope_type == "llama3") {
    s.rope_scaling.type = rope_type;
    s.rope_scaling.factor = get<double>(rope, "factor", where + " rope scaling");
    if (rope_type == "llama3") {
      s.rope_scaling.low_freq_factor = get<double>(rope, "low_freq_factor", where + " rope scaling");
      s.rope_scaling.high_freq_factor = get<double>(rope, "high_freq_factor", where + " rope scaling");
      s.rope_scaling.original_max_position_embeddings =
          get<int64_t>(rope, "original_max_position_embeddings", where + " rope scaling");
    }
  } else {
    refuse_if(rope_type != "default", where, "rope type", "is '" + rope_type + "' (weft has default, linear, llama3)");
  }
  refuse_if(get_or<double>(j, "partial_rotary_factor", get_or<double>(rope, "partial_rotary_factor", 1.0)) != 1.0,
            where, "partial_rotary_factor", "is not 1");

  // Sliding window: Mistral uses it whenever it is set; Qwen2 only with use_sliding_window, and then per layer.
  const int64_t window = get_or<int64_t>(j, "sliding_window", 0);
  if (type == "mistral") {
    s.sliding_window = window;
  } else if (type == "qwen2" && get_or<bool>(j, "use_sliding_window", false)) {
    refuse_if(get_or<int64_t>(j, "max_window_layers", s.num_layers) < s.num_layers, where, "max_window_layers",
              "gives some layers a sliding window and others none");
    s.sliding_window = window;
  }
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    int sliding = 0;
    for (const auto& t : j["layer_types"]) sliding += t == "sliding_attention";
    refuse_if(sliding != 0 && sliding != static_cast<int>(j["layer_types"].size()), where, "layer_types",
              "mixes sliding and full attention layers");
    if (sliding == 0 && type != "mistral") s.sliding_window = 0;
  }
  WEFT_CHECK(s.heads % s.groups == 0 && s.head_dim % 2 == 0, where, ": num_attention_heads ", s.heads,
             " must be a multiple of num_key_value_heads ", s.groups, " and head_dim even");
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
  static const std::map<std::string, std::string> arch = {
      {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}};
  WEFT_CHECK(arch.count(s.family), "model family '", s.family, "' has no HuggingFace export");
  json j = {{"architectures", {arch.at(s.family)}},
            {"model_type", s.family},
            {"hidden_act", "silu"},
            {"hidden_size", s.hidden},
            {"intermediate_size", s.ffn},
            {"num_hidden_layers", s.num_layers},
            {"num_attention_heads", s.heads},
            {"num_key_value_heads", s.groups},
            {"head_dim", s.head_dim},
            {"vocab_size", s.vocab},
            {"max_position_embeddings", s.max_positions},
            {"rms_norm_eps", s.norm_eps},
            {"rope_theta", s.rope_theta},
            {"tie_word_embeddings", s.tie_embeddings},
            {"initializer_range", s.init_std},
            {"attention_dropout", 0.0},
            {"torch_dtype", "bfloat16"}};
  if (s.family == "llama") {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
  }
  if (s.family == "mistral") j["sliding_window"] = s.sliding_window > 0 ? json(s.sliding_window) : json(nullptr);
  if (s.family == "qwen2") {
    j["use_sliding_window"] = s.sliding_window > 0;
    j["sliding_window"] = s.sliding_window > 0 ? json(s.sliding_window) : json(nullptr);
    j["max_window_layers"] = s.num_layers;
  }
  WEFT_CHECK(s.family == "qwen2" || !s.qkv_bias, "a ", s.family, " model with qkv_bias has no HuggingFace form");
  if (s.rope_scaling.type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", s.rope_scaling.factor}};
  } else if (s.rope_scaling.type == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", s.rope_scaling.factor},
                         {"low_freq_factor", s.rope_scaling.low_freq_factor},
                         {"high_freq_factor", s.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", s.rope_scaling.original_max_position_embeddings}};
  }
  return j;
}

}  // namespace weft
