// weft/src/io/hf_families.cpp v2 — llama, mistral, qwen2, mixtral, qwen2_moe and deepseek_v2 as HuggingFace writes
// them.
#include "io/hf_families.h"

#include "io/json_read.h"

namespace weft {
using nlohmann::json;
namespace {

void refuse_attention_bias(const json& j, const std::string& where) {
  refuse_if(json_get_or<bool>(j, "attention_bias", false, where), where, "attention_bias",
            "is true (HF then also puts a bias on o_proj)");
}

void require_dense(const ModelSpec& s) {
  WEFT_CHECK(!s.has_experts(), "a ", s.family, " model has no experts in HuggingFace's form; an MoE model is family "
             "mixtral, qwen2_moe or deepseek_v2");
}

void require_qkv_bias(const ModelSpec& s, bool bias) {
  WEFT_CHECK(s.qkv_bias == bias, "a ", s.family, " model ", bias ? "always has" : "has no",
             " QKV biases in HuggingFace's form (model.qkv_bias = ", s.qkv_bias ? "true" : "false", ")");
}

// Qwen2's window applies only with use_sliding_window, and then to the layers from max_window_layers on.
void read_qwen_window(const json& j, ModelSpec& s, const std::string& where) {
  if (!json_get_or<bool>(j, "use_sliding_window", false, where)) return;
  refuse_if(json_get_or<int64_t>(j, "max_window_layers", s.num_layers, where) < s.num_layers, where,
            "max_window_layers", "gives some layers a sliding window and others none");
  s.sliding_window = json_get_or<int64_t>(j, "sliding_window", 0, where);
}

void write_qwen_window(const ModelSpec& s, json& j) {
  j["use_sliding_window"] = s.sliding_window > 0;
  j["sliding_window"] = s.sliding_window > 0 ? json(s.sliding_window) : json(nullptr);
  j["max_window_layers"] = s.num_layers;
}

void read_llama(const json& j, ModelSpec& s, const std::string& where) {
  s.ffn = json_get<int64_t>(j, "intermediate_size", where);
  refuse_attention_bias(j, where);
}

void write_llama(const ModelSpec& s, json& j) {
  require_dense(s);
  require_qkv_bias(s, false);
  WEFT_CHECK(s.sliding_window == 0, "a llama model has no sliding window in HuggingFace's form (family mistral has)");
  j["intermediate_size"] = s.ffn;
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
}

void read_mistral(const json& j, ModelSpec& s, const std::string& where) {
  read_llama(j, s, where);
  s.sliding_window = json_get_or<int64_t>(j, "sliding_window", 0, where);
}

void write_mistral(const ModelSpec& s, json& j) {
  require_dense(s);
  require_qkv_bias(s, false);
  j["intermediate_size"] = s.ffn;
  j["sliding_window"] = s.sliding_window > 0 ? json(s.sliding_window) : json(nullptr);
}

void read_qwen2(const json& j, ModelSpec& s, const std::string& where) {
  s.ffn = json_get<int64_t>(j, "intermediate_size", where);
  s.qkv_bias = true;  // Qwen2Attention always has q/k/v biases and none on o_proj
  read_qwen_window(j, s, where);
}

void write_qwen2(const ModelSpec& s, json& j) {
  require_dense(s);
  require_qkv_bias(s, true);
  j["intermediate_size"] = s.ffn;
  write_qwen_window(s, j);
}

// Mixtral: every layer's MLP is a block of experts of width intermediate_size, routed by the top-k of a softmax
// renormalised (= the softmax of the top-k logits); no shared expert.
void read_mixtral(const json& j, ModelSpec& s, const std::string& where) {
  s.moe_ffn = s.ffn = json_get<int64_t>(j, "intermediate_size", where);
  s.num_experts = json_get<int64_t>(j, "num_local_experts", where);
  s.moe_topk = json_get<int64_t>(j, "num_experts_per_tok", where);
  s.moe_pre_softmax = false;
  s.sliding_window = json_get_or<int64_t>(j, "sliding_window", 0, where);
  refuse_attention_bias(j, where);
  refuse_if(json_get_or<double>(j, "router_jitter_noise", 0.0, where) != 0.0, where, "router_jitter_noise",
            "is not 0 (multiplicative noise on the router's input while training)");
}

void write_mixtral(const ModelSpec& s, json& j) {
  WEFT_CHECK(s.has_experts() && s.decoder_sparse_step == 1 && s.mlp_only_layers.empty() && s.moe_shared_ffn == 0 &&
                 !s.moe_pre_softmax,
             "a mixtral model in HuggingFace's form has experts in every layer, no shared expert and renormalised "
             "top-k routing (model.moe_router_pre_softmax = false)");
  require_qkv_bias(s, false);
  j["intermediate_size"] = s.moe_ffn;
  j["num_local_experts"] = s.num_experts;
  j["num_experts_per_tok"] = s.moe_topk;
  j["sliding_window"] = s.sliding_window > 0 ? json(s.sliding_window) : json(nullptr);
  j["router_jitter_noise"] = 0.0;
}

// Qwen-MoE (Qwen1.5-MoE and Qwen2-MoE): experts of moe_intermediate_size in the layers decoder_sparse_step picks
// and mlp_only_layers does not, dense MLPs of intermediate_size elsewhere; a shared expert with a sigmoid gate;
// softmax then top-k, renormalised only with norm_topk_prob.
void read_qwen2_moe(const json& j, ModelSpec& s, const std::string& where) {
  s.ffn = json_get<int64_t>(j, "intermediate_size", where);
  s.qkv_bias = json_get_or<bool>(j, "qkv_bias", true, where);
  s.num_experts = json_get<int64_t>(j, "num_experts", where);
  s.moe_topk = json_get<int64_t>(j, "num_experts_per_tok", where);
  s.moe_ffn = json_get<int64_t>(j, "moe_intermediate_size", where);
  s.moe_pre_softmax = !json_get_or<bool>(j, "norm_topk_prob", false, where);
  s.moe_shared_ffn = json_get<int64_t>(j, "shared_expert_intermediate_size", where);
  refuse_if(s.moe_shared_ffn <= 0, where, "shared_expert_intermediate_size", "is not positive");
  s.moe_shared_gate = true;
  s.decoder_sparse_step = json_get_or<int64_t>(j, "decoder_sparse_step", 1, where);
  s.mlp_only_layers = json_get_or<std::vector<int64_t>>(j, "mlp_only_layers", {}, where);
  read_qwen_window(j, s, where);
}

void write_qwen2_moe(const ModelSpec& s, json& j) {
  WEFT_CHECK(s.has_experts() && s.moe_shared_ffn > 0 && s.moe_shared_gate,
             "a qwen2_moe model in HuggingFace's form has experts and a gated shared expert");
  j["intermediate_size"] = s.ffn;
  j["qkv_bias"] = s.qkv_bias;
  j["num_experts"] = s.num_experts;
  j["num_experts_per_tok"] = s.moe_topk;
  j["moe_intermediate_size"] = s.moe_ffn;
  j["norm_topk_prob"] = !s.moe_pre_softmax;
  j["shared_expert_intermediate_size"] = s.moe_shared_ffn;
  j["decoder_sparse_step"] = s.decoder_sparse_step;
  j["mlp_only_layers"] = s.mlp_only_layers;
  write_qwen_window(s, j);
}

// DeepSeek-V2 (and V2-Lite): multi-head latent attention; the first first_k_dense_replace layers dense MLPs of
// intermediate_size, then (every moe_layer_freq-th layer) n_routed_experts of moe_intermediate_size routed by the top-k
// of a softmax (greedy, or group_limited_greedy over n_group groups), scaled by routed_scaling_factor, beside
// n_shared_experts ungated shared experts in one MLP of n_shared_experts·moe_intermediate_size.
void read_deepseek_v2(const json& j, ModelSpec& s, const std::string& where) {
  s.ffn = json_get<int64_t>(j, "intermediate_size", where);
  refuse_attention_bias(j, where);
  s.q_lora_rank = j.contains("q_lora_rank") && !j["q_lora_rank"].is_null() ? json_get<int64_t>(j, "q_lora_rank", where)
                                                                             : 0;
  s.kv_lora_rank = json_get<int64_t>(j, "kv_lora_rank", where);
  s.qk_nope_head_dim = json_get<int64_t>(j, "qk_nope_head_dim", where);
  s.qk_rope_head_dim = json_get<int64_t>(j, "qk_rope_head_dim", where);
  s.v_head_dim = json_get<int64_t>(j, "v_head_dim", where);
  s.head_dim = 0;  // config.json's head_dim is the rotated dims; weft's query/key head is nope + rope
  s.groups = 0;
  refuse_if(json_get_or<std::string>(j, "scoring_func", "softmax", where) != "softmax", where, "scoring_func",
            "is not softmax");
  if (!j.contains("n_routed_experts") || j["n_routed_experts"].is_null()) return;
  s.num_experts = json_get<int64_t>(j, "n_routed_experts", where);
  s.moe_topk = json_get<int64_t>(j, "num_experts_per_tok", where);
  s.moe_ffn = json_get<int64_t>(j, "moe_intermediate_size", where);
  const int64_t shared = j.contains("n_shared_experts") && !j["n_shared_experts"].is_null()
                             ? json_get<int64_t>(j, "n_shared_experts", where)
                             : 0;
  s.moe_shared_ffn = shared * s.moe_ffn;
  s.moe_pre_softmax = !json_get_or<bool>(j, "norm_topk_prob", false, where);
  s.moe_topk_scaling = json_get_or<double>(j, "routed_scaling_factor", 1.0, where);
  s.first_k_dense_replace = json_get_or<int64_t>(j, "first_k_dense_replace", 0, where);
  s.moe_layer_freq = json_get_or<int64_t>(j, "moe_layer_freq", 1, where);
  const std::string method = json_get_or<std::string>(j, "topk_method", "greedy", where);
  refuse_if(method != "greedy" && method != "group_limited_greedy", where, "topk_method",
            "is '" + method + "' (weft has greedy and group_limited_greedy)");
  if (method == "group_limited_greedy") {
    s.moe_num_groups = json_get<int64_t>(j, "n_group", where);
    s.moe_group_topk = json_get<int64_t>(j, "topk_group", where);
  }
}

void write_deepseek_v2(const ModelSpec& s, json& j) {
  WEFT_CHECK(s.latent_attention() && !s.moe_shared_gate && !s.qkv_bias && s.sliding_window == 0 &&
                 s.decoder_sparse_step == 1 && s.mlp_only_layers.empty() &&
                 (!s.has_experts() || s.moe_shared_ffn % s.moe_ffn == 0),
             "a deepseek_v2 model in HuggingFace's form has latent attention (model.kv_lora_rank > 0), ungated "
             "shared experts of a multiple of the experts' width, dense layers only by first_k_dense_replace and "
             "moe_layer_freq, no QKV bias and no sliding window");
  j["intermediate_size"] = s.ffn;
  j["attention_bias"] = false;
  j["q_lora_rank"] = s.q_lora_rank > 0 ? json(s.q_lora_rank) : json(nullptr);
  j["kv_lora_rank"] = s.kv_lora_rank;
  j["qk_nope_head_dim"] = s.qk_nope_head_dim;
  j["qk_rope_head_dim"] = s.qk_rope_head_dim;
  j["v_head_dim"] = s.v_head_dim;
  j["head_dim"] = s.qk_rope_head_dim;
  j["num_key_value_heads"] = s.heads;
  j["scoring_func"] = "softmax";
  j["n_routed_experts"] = s.has_experts() ? json(s.num_experts) : json(nullptr);
  if (!s.has_experts()) return;
  j["num_experts_per_tok"] = s.moe_topk;
  j["moe_intermediate_size"] = s.moe_ffn;
  j["n_shared_experts"] = s.moe_shared_ffn > 0 ? json(s.moe_shared_ffn / s.moe_ffn) : json(nullptr);
  j["norm_topk_prob"] = !s.moe_pre_softmax;
  j["routed_scaling_factor"] = s.moe_topk_scaling;
  j["first_k_dense_replace"] = s.first_k_dense_replace;
  j["moe_layer_freq"] = s.moe_layer_freq;
  j["topk_method"] = s.moe_num_groups > 0 ? "group_limited_greedy" : "greedy";
  j["n_group"] = s.moe_num_groups > 0 ? json(s.moe_num_groups) : json(nullptr);
  j["topk_group"] = s.moe_num_groups > 0 ? json(s.moe_group_topk) : json(nullptr);
}

const std::vector<HfFamily>& families() {
  static const std::vector<HfFamily> table = {
      {.name = "llama", .model_type = "llama", .architecture = "LlamaForCausalLM", .read = read_llama,
       .write = write_llama},
      {.name = "mistral", .model_type = "mistral", .architecture = "MistralForCausalLM", .read = read_mistral,
       .write = write_mistral},
      {.name = "qwen2", .model_type = "qwen2", .architecture = "Qwen2ForCausalLM", .read = read_qwen2,
       .write = write_qwen2},
      {.name = "mixtral", .model_type = "mixtral", .architecture = "MixtralForCausalLM", .read = read_mixtral,
       .write = write_mixtral, .moe_block = "block_sparse_moe", .expert_gate = "w1", .expert_up = "w3",
       .expert_down = "w2"},
      {.name = "qwen2_moe", .model_type = "qwen2_moe", .architecture = "Qwen2MoeForCausalLM", .read = read_qwen2_moe,
       .write = write_qwen2_moe},
      {.name = "deepseek_v2", .model_type = "deepseek_v2", .architecture = "DeepseekV2ForCausalLM",
       .read = read_deepseek_v2, .write = write_deepseek_v2, .shared_expert = "shared_experts"},
  };
  return table;
}

std::string known() {
  std::string list;
  for (const HfFamily& f : families()) list += (list.empty() ? "" : ", ") + f.name;
  return list;
}

}  // namespace

const HfFamily& hf_family(const std::string& name) {
  for (const HfFamily& f : families())
    if (f.name == name) return f;
  fail(str("model family '", name, "' is not one weft knows (", known(), ")"));
}

const HfFamily& hf_family_of_model_type(const std::string& model_type, const std::string& where) {
  for (const HfFamily& f : families())
    if (f.model_type == model_type) return f;
  fail(str(where, ": model_type '", model_type, "' is not supported (", known(), ")"));
}

std::vector<std::string> hf_family_names() {
  std::vector<std::string> out;
  for (const HfFamily& f : families()) out.push_back(f.name);
  return out;
}

}  // namespace weft
