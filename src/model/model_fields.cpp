// weft/src/model/model_fields.cpp v2 — the table of model fields, and what reads it generically.
#include "model/model_fields.h"

#include <sstream>
#include <stdexcept>

#include "util/error.h"

namespace weft {
namespace {

// A field's accessor: WEFT_FIELD(hidden) is [](ModelSpec& s) -> auto& { return s.hidden; }, as a function pointer.
#define WEFT_FIELD(member) (+[](ModelSpec& s) -> decltype(auto) { return (s.member); })

constexpr FieldCheck kPositive = FieldCheck::positive, kNonNegative = FieldCheck::non_negative;
#define kFromInit " (required unless model.init supplies the shape)"

std::vector<ModelField> make_fields() {
  // clang-format off
  return {
    {.key = "family", .doc = "architecture family: llama|mistral|qwen2|mixtral|qwen2_moe|deepseek_v2 (sets no shapes; presets do)",
     .ref = WEFT_FIELD(family)},
    {.key = "num_layers", .doc = "number of transformer layers" kFromInit, .ref = WEFT_FIELD(num_layers),
     .check = kPositive, .hf_key = "num_hidden_layers", .hf_required = true, .required = true},
    {.key = "hidden_size", .doc = "model width" kFromInit, .ref = WEFT_FIELD(hidden), .check = kPositive,
     .hf_key = "hidden_size", .hf_required = true, .required = true},
    {.key = "ffn_hidden_size", .doc = "SwiGLU inner width of the dense MLPs" kFromInit, .ref = WEFT_FIELD(ffn),
     .check = kPositive, .required = true},
    {.key = "num_attention_heads", .doc = "query heads" kFromInit, .ref = WEFT_FIELD(heads), .check = kPositive,
     .hf_key = "num_attention_heads", .hf_required = true, .required = true},
    {.key = "num_query_groups", .doc = "key/value heads (GQA); 0 = num_attention_heads", .ref = WEFT_FIELD(groups),
     .check = kNonNegative, .hf_key = "num_key_value_heads"},
    {.key = "kv_channels", .doc = "head dimension; 0 = hidden_size / num_attention_heads", .ref = WEFT_FIELD(head_dim),
     .check = kNonNegative, .hf_key = "head_dim"},
    {.key = "vocab_size", .doc = "tokenizer vocabulary size" kFromInit, .ref = WEFT_FIELD(vocab), .check = kPositive,
     .hf_key = "vocab_size", .hf_required = true, .required = true},
    {.key = "make_vocab_size_divisible_by", .doc = "pad the embedding rows to a multiple of this times parallel.tp "
     "(padding takes no probability)", .ref = WEFT_FIELD(vocab_multiple), .check = kPositive, .shapes_weights = false},
    {.key = "max_position_embeddings", .doc = "longest position RoPE covers" kFromInit,
     .ref = WEFT_FIELD(max_positions), .check = kPositive, .hf_key = "max_position_embeddings", .hf_required = true,
     .required = true},
    {.key = "rope_theta", .doc = "RoPE base", .ref = WEFT_FIELD(rope_theta), .check = kPositive},
    {.key = "rope_scaling.type", .doc = "RoPE frequency scaling: none|linear|llama3|yarn",
     .ref = WEFT_FIELD(rope_scaling.type)},
    {.key = "rope_scaling.factor", .doc = "scaling factor (linear, llama3)", .ref = WEFT_FIELD(rope_scaling.factor),
     .check = kPositive},
    {.key = "rope_scaling.low_freq_factor", .doc = "llama3 low-frequency factor",
     .ref = WEFT_FIELD(rope_scaling.low_freq_factor), .check = kPositive},
    {.key = "rope_scaling.high_freq_factor", .doc = "llama3 high-frequency factor",
     .ref = WEFT_FIELD(rope_scaling.high_freq_factor), .check = kPositive},
    {.key = "rope_scaling.original_max_position_embeddings", .doc = "llama3, yarn: context length before scaling",
     .ref = WEFT_FIELD(rope_scaling.original_max_position_embeddings), .check = kPositive},
    {.key = "rope_scaling.beta_fast", .doc = "yarn: rotations over the original context above which a frequency is "
     "kept", .ref = WEFT_FIELD(rope_scaling.beta_fast), .check = kPositive},
    {.key = "rope_scaling.beta_slow", .doc = "yarn: rotations below which a frequency is interpolated by the factor",
     .ref = WEFT_FIELD(rope_scaling.beta_slow), .check = kPositive},
    {.key = "rope_scaling.mscale", .doc = "yarn: cos/sin scale by (0.1·mscale·ln(factor) + 1) / the same of "
     "mscale_all_dim", .ref = WEFT_FIELD(rope_scaling.mscale), .check = kNonNegative},
    {.key = "rope_scaling.mscale_all_dim", .doc = "yarn: > 0 scales the softmax by (0.1·mscale_all_dim·ln(factor) + "
     "1)² (DeepSeek-V2)", .ref = WEFT_FIELD(rope_scaling.mscale_all_dim), .check = kNonNegative},
    {.key = "norm_epsilon", .doc = "RMSNorm epsilon", .ref = WEFT_FIELD(norm_eps), .check = kPositive,
     .hf_key = "rms_norm_eps", .hf_required = true},
    {.key = "qkv_bias", .doc = "bias on the QKV projection (Qwen)", .ref = WEFT_FIELD(qkv_bias)},
    {.key = "tie_embeddings", .doc = "output layer shares the embedding matrix", .ref = WEFT_FIELD(tie_embeddings),
     .hf_key = "tie_word_embeddings"},
    {.key = "sliding_window", .doc = "attention window in tokens (Mistral); 0 = full", .ref = WEFT_FIELD(sliding_window),
     .check = kNonNegative},
    {.key = "init_method_std", .doc = "std of the normal init; residual outputs get std/sqrt(2·num_layers)",
     .ref = WEFT_FIELD(init_std), .check = kPositive, .hf_key = "initializer_range", .shapes_weights = false},
    {.key = "num_experts", .doc = "routed experts per MoE layer (Megatron's --num-experts); 0 = a dense model",
     .ref = WEFT_FIELD(num_experts), .check = kNonNegative},
    {.key = "moe_ffn_hidden_size", .doc = "SwiGLU inner width of each routed expert (--moe-ffn-hidden-size)",
     .ref = WEFT_FIELD(moe_ffn), .check = kNonNegative},
    {.key = "moe_router_topk", .doc = "experts each token is routed to (--moe-router-topk)",
     .ref = WEFT_FIELD(moe_topk), .check = kPositive},
    {.key = "moe_router_pre_softmax", .doc = "route by the softmax over all experts and keep its top-k values "
     "(Qwen-MoE without norm_topk_prob); false: the softmax of the top-k logits, i.e. the top-k renormalised "
     "(Mixtral; --moe-router-pre-softmax)", .ref = WEFT_FIELD(moe_pre_softmax)},
    {.key = "moe_shared_expert_intermediate_size", .doc = "width of the shared expert every token also goes "
     "through; 0 = none (--moe-shared-expert-intermediate-size)", .ref = WEFT_FIELD(moe_shared_ffn),
     .check = kNonNegative},
    {.key = "moe_shared_expert_gate", .doc = "scale the shared expert's output by sigmoid(x·g), g learned (Qwen-MoE)",
     .ref = WEFT_FIELD(moe_shared_gate)},
    {.key = "decoder_sparse_step", .doc = "layer l (from 0) is an MoE layer when (l + 1) is a multiple of this (HF "
     "Qwen-MoE's rule)", .ref = WEFT_FIELD(decoder_sparse_step), .check = kPositive},
    {.key = "mlp_only_layers", .doc = "layers (from 0, comma-separated) that keep a dense MLP in an MoE model",
     .ref = WEFT_FIELD(mlp_only_layers)},
    {.key = "first_k_dense_replace", .doc = "the first k layers keep a dense MLP (DeepSeek)",
     .ref = WEFT_FIELD(first_k_dense_replace), .check = kNonNegative},
    {.key = "moe_layer_freq", .doc = "of the layers after first_k_dense_replace, those whose index is a multiple of "
     "this are MoE layers (DeepSeek)", .ref = WEFT_FIELD(moe_layer_freq), .check = kPositive},
    {.key = "moe_router_num_groups", .doc = "experts split into this many groups; a token takes its experts from "
     "the moe_router_group_topk groups whose best score is highest (DeepSeek-V2's group_limited_greedy; "
     "--moe-router-num-groups); 0 = no groups", .ref = WEFT_FIELD(moe_num_groups), .check = kNonNegative},
    {.key = "moe_router_group_topk", .doc = "groups a token's experts may come from (--moe-router-group-topk)",
     .ref = WEFT_FIELD(moe_group_topk), .check = kNonNegative},
    {.key = "moe_router_topk_scaling_factor", .doc = "the routing weights times this (DeepSeek's "
     "routed_scaling_factor; --moe-router-topk-scaling-factor)", .ref = WEFT_FIELD(moe_topk_scaling),
     .check = kPositive},
    {.key = "q_lora_rank", .doc = "latent attention: queries through a normed latent of this width; 0 = straight "
     "from the hidden state (DeepSeek-V2-Lite)", .ref = WEFT_FIELD(q_lora_rank), .check = kNonNegative},
    {.key = "kv_lora_rank", .doc = "> 0: multi-head latent attention (DeepSeek-V2), keys and values from a normed "
     "latent of this width", .ref = WEFT_FIELD(kv_lora_rank), .check = kNonNegative},
    {.key = "qk_nope_head_dim", .doc = "latent attention: query/key dims per head without RoPE",
     .ref = WEFT_FIELD(qk_nope_head_dim), .check = kNonNegative},
    {.key = "qk_rope_head_dim", .doc = "latent attention: query/key dims per head with RoPE (the key's shared by all "
     "heads)", .ref = WEFT_FIELD(qk_rope_head_dim), .check = kNonNegative},
    {.key = "v_head_dim", .doc = "latent attention: value dims per head", .ref = WEFT_FIELD(v_head_dim),
     .check = kNonNegative},
  };
  // clang-format on
}

template <typename T>
constexpr const char* type_name() {
  if constexpr (std::is_same_v<T, int64_t>) return "int";
  else if constexpr (std::is_same_v<T, double>) return "float";
  else if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (std::is_same_v<T, std::string>) return "string";
  else return "int list";
}

}  // namespace

const char* ModelField::type() const {
  return std::visit([](auto f) { return type_name<std::decay_t<decltype(f(std::declval<ModelSpec&>()))>>(); }, ref);
}

nlohmann::json ModelField::get(const ModelSpec& s) const {
  ModelSpec& m = const_cast<ModelSpec&>(s);  // the accessors return mutable references; reading only
  return std::visit([&](auto f) { return nlohmann::json(f(m)); }, ref);
}

void ModelField::set(ModelSpec& s, const nlohmann::json& v) const {
  std::visit(
      [&](auto f) {
        using T = std::decay_t<decltype(f(s))>;
        // nlohmann converts between numbers and truncates; a field takes only a value of its own kind.
        const bool ok = std::is_same_v<T, double>    ? v.is_number()
                        : std::is_same_v<T, int64_t> ? v.is_number_integer()
                        : std::is_same_v<T, bool>    ? v.is_boolean()
                        : std::is_same_v<T, std::string> ? v.is_string()
                                                         : v.is_array();
        if (!ok) throw std::invalid_argument(str("a ", type(), " expected, got ", v.dump()));
        f(s) = v.get<T>();
      },
      ref);
}

const std::vector<ModelField>& model_fields() {
  static const std::vector<ModelField> fields = make_fields();
  return fields;
}

const ModelField& model_field(const std::string& key) {
  for (const ModelField& f : model_fields())
    if (key == f.key) return f;
  fail(str("no model field '", key, "'"));
}

std::vector<int64_t> parse_int_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) throw std::invalid_argument("empty item in '" + text + "'");
    size_t used = 0;
    const std::string token = item.substr(b, e - b + 1);
    out.push_back(std::stoll(token, &used));
    if (used != token.size()) throw std::invalid_argument("'" + token + "' is not an integer");
  }
  return out;
}

nlohmann::json spec_to_json(const ModelSpec& s) {
  nlohmann::json j = nlohmann::json::object();
  for (const ModelField& f : model_fields()) j[f.key] = f.get(s);
  return j;
}

ModelSpec spec_from_json(const nlohmann::json& j) {
  nlohmann::json flat = j;
  // Metadata of format version 1 kept the RoPE scaling as an object.
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object())
    for (auto& [k, v] : j["rope_scaling"].items()) flat["rope_scaling." + k] = v;
  ModelSpec s;
  for (const ModelField& f : model_fields()) {
    if (!flat.contains(f.key)) continue;
    try {
      f.set(s, flat.at(f.key));
    } catch (const std::exception& e) {
      fail(str("checkpoint metadata: model field '", f.key, "': ", e.what()));
    }
  }
  return s;
}

}  // namespace weft
