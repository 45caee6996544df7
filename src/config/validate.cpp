// weft/src/config/validate.cpp v5 — cross-key checks, each naming the key and where it was set.
#include "config/validate.h"

#include <cmath>
#include <filesystem>
#include <regex>
#include <sstream>

#include "io/hf_families.h"
#include "model/model_fields.h"
#include "util/error.h"

namespace weft {
namespace {

class Checker {
 public:
  explicit Checker(const Config& c) : c_(c) {}
  // Fails with "<key (where)>: <what was expected>" unless ok.
  void require(bool ok, const std::string& key, const std::string& expected) const {
    if (!ok) throw ConfigError(str(c_.where(key), ": ", expected));
  }
  void one_of(const std::string& value, const std::vector<std::string>& choices, const std::string& key) const {
    std::string list;
    for (const std::string& ch : choices) {
      if (value == ch) return;
      list += (list.empty() ? "" : ", ") + ch;
    }
    require(false, key, str("expected one of ", list, ", got '", value, "'"));
  }

 private:
  const Config& c_;
};

// The experts of an MoE model and how they train and split: shapes, expert parallelism, capacity.
void validate_experts(const Config& c, const Checker& k) {
  const ModelSpec& m = c.model;
  const ParallelConfig& p = c.parallel;
  const MoeConfig& e = c.moe;
  k.require(p.etp == 0 || p.etp == p.tp, "parallel.etp",
            str("weft splits each expert over the tensor-parallel ranks as it splits the dense MLPs (Megatron's "
                "expert tensor parallelism with etp = tp = ", p.tp, "); other expert tensor-parallel sizes are not "
                "supported: leave it 0 or set it to parallel.tp"));
  for (auto [key, value] : {std::pair{"moe.aux_loss_coeff", e.aux_loss_coeff}, {"moe.z_loss_coeff", e.z_loss_coeff},
                            {"moe.device_balance_loss_coeff", e.device_balance_loss_coeff},
                            {"moe.comm_balance_loss_coeff", e.comm_balance_loss_coeff},
                            {"moe.expert_capacity_factor", e.expert_capacity_factor}})
    k.require(std::isfinite(value) && value >= 0, key, str("expected a finite number >= 0, got ", value));
  k.one_of(e.token_drop_policy, {"probs", "position"}, "moe.token_drop_policy");
  k.require(!e.pad_expert_input_to_capacity || e.expert_capacity_factor > 0, "moe.pad_expert_input_to_capacity",
            "pads to the capacity a capacity factor sets: needs moe.expert_capacity_factor > 0");
  if (m.num_experts == 0) {
    k.require(p.ep == 1, "parallel.ep", "expert parallelism needs an MoE model (model.num_experts > 0); use 1");
    return;
  }
  k.require(!c.train.overlap_optimizer, "train.overlap_optimizer",
            "the overlapped optimizer step serves one parameter group; an MoE model's experts are a second: not yet "
            "with model.num_experts > 0");
  k.require(m.moe_ffn > 0, "model.moe_ffn_hidden_size", "an MoE model (model.num_experts > 0) needs its experts' width");
  k.require(m.moe_topk <= m.num_experts, "model.moe_router_topk",
            str("must not exceed model.num_experts = ", m.num_experts, ", got ", m.moe_topk));
  k.require(!m.moe_shared_gate || m.moe_shared_ffn > 0, "model.moe_shared_expert_gate",
            "gates a shared expert: needs model.moe_shared_expert_intermediate_size > 0");
  for (int64_t l : m.mlp_only_layers)
    k.require(l >= 0 && l < m.num_layers, "model.mlp_only_layers",
              str("layer ", l, " is not one of the model's layers 0..", m.num_layers - 1));
  k.require(m.num_experts % p.ep == 0, "parallel.ep",
            str("must divide model.num_experts = ", m.num_experts, ", got ", p.ep));
  k.require(m.moe_ffn % p.tp == 0, "parallel.tp",
            str("must divide model.moe_ffn_hidden_size = ", m.moe_ffn, ", got ", p.tp));
  k.require(m.moe_shared_ffn % p.tp == 0, "parallel.tp",
            str("must divide model.moe_shared_expert_intermediate_size = ", m.moe_shared_ffn, ", got ", p.tp));
  k.require((e.device_balance_loss_coeff == 0 && e.comm_balance_loss_coeff == 0) || m.moe_num_groups > 0,
            "moe.device_balance_loss_coeff", "the device and communication balance losses are over the router's "
            "expert groups: they need model.moe_router_num_groups > 0");
  if (m.moe_num_groups > 0) {
    k.require(m.num_experts % m.moe_num_groups == 0, "model.moe_router_num_groups",
              str("must divide model.num_experts = ", m.num_experts, ", got ", m.moe_num_groups));
    k.require(m.moe_group_topk >= 1 && m.moe_group_topk <= m.moe_num_groups, "model.moe_router_group_topk",
              str("must lie in 1..model.moe_router_num_groups = ", m.moe_num_groups, ", got ", m.moe_group_topk));
    k.require(m.moe_topk <= m.moe_group_topk * (m.num_experts / m.moe_num_groups), "model.moe_router_topk",
              str("must not exceed the experts of moe_router_group_topk groups (",
                  m.moe_group_topk * (m.num_experts / m.moe_num_groups), "), got ", m.moe_topk));
  }
  const bool gpu = c.train.precision == "bf16";
  k.require(!gpu || (m.moe_num_groups == 0 && m.moe_topk_scaling == 1.0), "model.moe_router_num_groups",
            "group-limited routing and routing-weight scaling run on the CPU backend only for now (the GPU router "
            "kernel has neither yet)");
}

// Multi-head latent attention (DeepSeek-V2): its dims, and the layouts it runs in so far.
void validate_latent_attention(const Config& c, const Checker& k) {
  const ModelSpec& m = c.model;
  if (!m.latent_attention()) return;
  for (auto [key, value] : {std::pair{"model.qk_nope_head_dim", m.qk_nope_head_dim},
                            {"model.qk_rope_head_dim", m.qk_rope_head_dim}, {"model.v_head_dim", m.v_head_dim}})
    k.require(value > 0, key, "latent attention (model.kv_lora_rank > 0) needs it positive");
  k.require(m.qk_rope_head_dim % 2 == 0, "model.qk_rope_head_dim", "RoPE rotates pairs: must be even");
  k.require(m.head_dim == 0 || m.head_dim == m.qk_nope_head_dim + m.qk_rope_head_dim, "model.kv_channels",
            "latent attention's query/key head is qk_nope_head_dim + qk_rope_head_dim: leave it 0");
  k.require(m.groups == 0 || m.groups == m.heads, "model.num_query_groups",
            "latent attention gives every head its own key and value: leave it 0");
  k.require(!m.qkv_bias && m.sliding_window == 0, "model.kv_lora_rank",
            "latent attention has no QKV bias and no sliding window");
  k.require(c.train.precision == "fp32", "train.precision",
            "latent attention (model.kv_lora_rank > 0) runs on the CPU backend for now: the GPU attention kernels "
            "at its head dims are not built yet");
}

}  // namespace

std::vector<double> parse_split(const Config& c) {
  std::vector<double> w;
  static const std::regex number(R"([.0-9]+)");
  for (std::sregex_iterator it(c.data.split.begin(), c.data.split.end(), number), end; it != end; ++it)
    w.push_back(std::stod(it->str()));
  if (w.size() > 3 || w.empty()) throw ConfigError(str(c.where("data.split"), ": expected up to three weights, got '",
                                                       c.data.split, "'"));
  w.resize(3, 0.0);
  double sum = w[0] + w[1] + w[2];
  if (sum <= 0) throw ConfigError(str(c.where("data.split"), ": weights must not all be zero"));
  for (double& x : w) x /= sum;
  return w;
}

void validate_inputs(const Config& c) {
  if (c.data.mock) return;
  std::istringstream words(c.data.prefix);
  for (std::string w; words >> w;) {
    char* end = nullptr;
    std::strtod(w.c_str(), &end);
    if (end && *end == 0) continue;  // a blend weight
    for (const std::string& file : {w + ".bin", w + ".idx", c.data.sft ? w + "_loss_mask.idx" : w + ".idx"})
      if (!std::filesystem::exists(file))
        throw ConfigError(str(c.where("data.prefix"), ": no file ", file, " (make it with weft preprocess",
                              c.data.sft ? " --sft" : "", ")"));
  }
}

void validate_config(const Config& c, int world_size) {
  const Checker k(c);
  const ModelSpec& m = c.model;
  k.one_of(m.family, hf_family_names(), "model.family");
  k.require(c.model_init == "random" || c.model_init.rfind("hf:", 0) == 0 || c.model_init.rfind("native:", 0) == 0,
            "model.init", str("expected random, hf:DIR or native:DIR, got '", c.model_init, "'"));
  bool any_dense = false;
  for (int64_t l = 0; l < m.num_layers; ++l) any_dense |= m.mlp_kind(l) == MlpKind::dense;
  for (const ModelField& f : model_fields()) {
    const std::string key = f.deck_key();
    const nlohmann::json v = f.get(m);
    const bool needed = f.required && (key != "model.ffn_hidden_size" || any_dense || m.num_layers == 0);
    if (needed && !c.origin.count(key) && v == 0)
      throw ConfigError(str(c.deck_path, ": missing required key '", key, "' (set it, include a preset, or use "
                            "model.init = hf:DIR)"));
    if (v.is_number_float()) k.require(std::isfinite(v.get<double>()), key, str("expected a finite number, got ", v.dump()));
    if (f.check == FieldCheck::positive && !(f.required && !needed && v == 0))
      k.require(v.get<double>() > 0, key, str("expected a positive number, got ", v.dump()));
    if (f.check == FieldCheck::non_negative) k.require(v.get<double>() >= 0, key, str("expected a number >= 0, got ", v.dump()));
  }
  const int64_t groups = m.groups ? m.groups : m.heads;
  k.require(m.heads % groups == 0, "model.num_query_groups",
            str("must divide model.num_attention_heads = ", m.heads, ", got ", groups));
  if (m.head_dim == 0 && !m.latent_attention())
    k.require(m.hidden % m.heads == 0, "model.hidden_size",
              str("must be divisible by model.num_attention_heads = ", m.heads, " when model.kv_channels is not set"));
  const int64_t head_dim = m.latent_attention() ? m.qk_nope_head_dim + m.qk_rope_head_dim
                           : m.head_dim         ? m.head_dim
                                                : m.hidden / m.heads;
  k.require(head_dim > 0 && head_dim % 2 == 0, "model.kv_channels", str("head dimension must be even for RoPE, got ",
                                                                        head_dim));
  k.one_of(m.rope_scaling.type, {"none", "linear", "llama3", "yarn"}, "model.rope_scaling.type");
  validate_latent_attention(c, k);

  const ParallelConfig& p = c.parallel;
  k.require(p.tp >= 1, "parallel.tp", "expected an integer >= 1");
  k.require(p.pp >= 1, "parallel.pp", "expected an integer >= 1");
  k.require(p.cp >= 1, "parallel.cp", "expected an integer >= 1");
  k.require(p.ep >= 1, "parallel.ep", "expected an integer >= 1");
  const int64_t model_ranks = p.tp * p.pp * p.cp;
  k.require(world_size % model_ranks == 0, "parallel.tp",
            str("world size ", world_size, " must be a multiple of tp·pp·cp = ", p.tp, "·", p.pp, "·", p.cp, " = ",
                model_ranks));
  const int64_t dp = world_size / model_ranks;
  k.require(p.dp == 0 || p.dp == dp, "parallel.dp",
            str("world size ", world_size, " ≠ tp·pp·cp·dp = ", p.tp, "·", p.pp, "·", p.cp, "·", p.dp, " = ",
                model_ranks * p.dp));
  k.require((dp * p.cp) % p.ep == 0, "parallel.ep",
            str("expert-parallel ranks are carved out of the data- and context-parallel ones: must divide dp·cp = ",
                dp, "·", p.cp, " = ", dp * p.cp, ", got ", p.ep));
  validate_experts(c, k);
  k.require(m.heads % p.tp == 0, "parallel.tp",
            str("must divide model.num_attention_heads = ", m.heads, ", got ", p.tp));
  k.require(groups % p.tp == 0, "parallel.tp", str("must divide model.num_query_groups = ", groups, ", got ", p.tp));
  k.require(m.ffn % p.tp == 0, "parallel.tp",
            str("must divide model.ffn_hidden_size = ", m.ffn, ", got ", p.tp));
  k.require(p.pp <= m.num_layers, "parallel.pp", str("must not exceed model.num_layers = ", m.num_layers));
  k.require(p.vpp >= 1, "parallel.vpp", "expected an integer >= 1");
  k.require(p.ddp_bucket_size >= 0, "parallel.ddp_bucket_size", "expected an integer >= 0 (0 = one bucket)");
  k.require(p.vpp == 1 || p.pp >= 2, "parallel.vpp", "the interleaved schedule needs parallel.pp >= 2");
  const bool uneven = p.first_stage_layers > 0 || p.last_stage_layers > 0;
  k.require(p.first_stage_layers >= 0 && p.last_stage_layers >= 0, "parallel.first_stage_layers",
            "expected layer counts >= 0");
  k.require(!uneven || (p.pp >= 2 && p.vpp == 1), "parallel.first_stage_layers",
            "uneven stages need parallel.pp >= 2 and parallel.vpp = 1");
  if (uneven) {
    const int64_t fixed_stages = (p.first_stage_layers > 0) + (p.last_stage_layers > 0);
    const int64_t rest = m.num_layers - p.first_stage_layers - p.last_stage_layers, others = p.pp - fixed_stages;
    k.require(rest >= 0 && (others == 0 ? rest == 0 : rest > 0 && rest % others == 0), "parallel.last_stage_layers",
              str("the remaining ", rest, " layers must split evenly over the other ", others, " stages"));
  } else {
    k.require(m.num_layers % (p.pp * p.vpp) == 0, "parallel.pp",
              str("pp·vpp = ", p.pp * p.vpp, " must divide model.num_layers = ", m.num_layers,
                  " (or set parallel.first_stage_layers / last_stage_layers)"));
  }
  k.require(!p.overlap_param_gather || p.distributed_optimizer, "parallel.overlap_param_gather",
            "overlaps the distributed optimizer's all-gathers: needs parallel.distributed_optimizer = true");

  const DataConfig& d = c.data;
  k.require(d.seq_length > 0, "data.seq_length", "expected a positive integer");
  k.require(d.seq_length <= m.max_positions, "data.seq_length",
            str("must not exceed model.max_position_embeddings = ", m.max_positions));
  parse_split(c);
  k.require(d.seq_length % (2 * p.cp) == 0, "parallel.cp",
            str("context parallelism splits each sequence into 2·cp chunks: data.seq_length = ", d.seq_length,
                " is not a multiple of 2·cp = ", 2 * p.cp));
  k.require(p.cp == 1 || (!d.reset_attention_mask && !d.sft), "parallel.cp",
            "context parallelism needs whole-row attention: not with data.reset_attention_mask or data.sft packing");
  k.require(p.cp == 1 || m.sliding_window == 0 || m.sliding_window >= d.seq_length, "parallel.cp",
            str("context parallelism does not split a sliding window (model.sliding_window = ", m.sliding_window,
                " < data.seq_length); use cp = 1"));

  const TrainConfig& t = c.train;
  k.require(t.micro_batch_size > 0, "train.micro_batch_size", "expected a positive integer");
  k.require(t.global_batch_size > 0 && t.global_batch_size % (t.micro_batch_size * dp) == 0,
            "train.global_batch_size",
            str("must be a positive multiple of train.micro_batch_size·dp = ", t.micro_batch_size, "·", dp, " = ",
                t.micro_batch_size * dp, ", got ", t.global_batch_size));
  k.require(t.train_iters > 0, "train.train_iters", "expected a positive integer");
  const int64_t micro_batches = t.global_batch_size / std::max<int64_t>(1, t.micro_batch_size * dp);
  k.require(p.vpp == 1 || micro_batches % p.pp == 0, "train.global_batch_size",
            str("the interleaved schedule needs the ", micro_batches, " micro-batches per step to be a multiple of ",
                "parallel.pp = ", p.pp));
  const int64_t rank_tokens = t.micro_batch_size * d.seq_length / p.cp;
  k.require(!p.sequence_parallel || rank_tokens % p.tp == 0, "parallel.sequence_parallel",
            str("needs micro_batch_size·seq_length/cp = ", rank_tokens, " divisible by tp = ", p.tp));
  k.require(t.lr >= 0, "train.lr", "expected a non-negative number");
  k.require(t.min_lr >= 0 && t.min_lr <= t.lr, "train.min_lr", str("must lie in [0, train.lr = ", t.lr, "]"));
  k.one_of(t.lr_decay_style, {"constant", "linear", "cosine"}, "train.lr_decay_style");
  k.require(t.lr_warmup_iters >= 0, "train.lr_warmup_iters", "expected a non-negative integer");
  const int64_t decay = t.lr_decay_iters ? t.lr_decay_iters : t.train_iters;
  k.require(t.lr_decay_iters >= 0 && t.lr_warmup_iters <= decay, "train.lr_warmup_iters",
            str("must not exceed the decay steps (", decay, ")"));
  k.require(t.adam_beta1 >= 0 && t.adam_beta1 < 1, "train.adam_beta1", "expected a number in [0, 1)");
  k.require(t.adam_beta2 >= 0 && t.adam_beta2 < 1, "train.adam_beta2", "expected a number in [0, 1)");
  k.require(t.adam_eps > 0, "train.adam_eps", "expected a positive number");
  k.require(t.weight_decay >= 0, "train.weight_decay", "expected a non-negative number");
  k.require(t.clip_grad >= 0, "train.clip_grad", "expected a non-negative number (0 = off)");
  k.require(t.seed >= 0 && t.seed <= 0xffffffffLL, "train.seed", "expected an integer in [0, 2^32)");
  k.one_of(t.precision, {"fp32", "bf16"}, "train.precision");
  k.one_of(t.adam_moments_dtype, {"fp32", "bf16"}, "train.adam_moments_dtype");
  k.one_of(t.grad_dtype, {"fp32", "bf16"}, "train.grad_dtype");
  k.one_of(t.master_weights, {"fp32", "split"}, "train.master_weights");
  k.require(!t.gemm_autotune || t.precision == "bf16", "train.gemm_autotune",
            "GEMM autotuning is for GPUs: it needs train.precision = bf16");
  k.require(!(t.gemm_autotune && t.deterministic), "train.gemm_autotune",
            "timing picks the algorithms, which may differ between runs: not with train.deterministic = true");
  k.require(t.grad_dtype != "bf16" || t.precision == "bf16", "train.grad_dtype",
            "bf16 gradients need train.precision = bf16 (GPUs); the fp32 CPU backend keeps fp32 gradients");
  k.require(t.master_weights != "split" || t.precision == "bf16", "train.master_weights",
            "split masters complete bf16 weights: they need train.precision = bf16 (GPUs)");
  k.require(!t.overlap_optimizer || t.precision == "bf16", "train.overlap_optimizer",
            "the overlapped optimizer step is for GPUs (a side stream): it needs train.precision = bf16");
  k.one_of(t.recompute, {"none", "selective", "full"}, "train.recompute");
  k.require(t.eval_interval >= 0, "train.eval_interval", "expected a non-negative integer");
  k.require(t.eval_iters >= 0, "train.eval_iters", "expected a non-negative integer");
  k.require(c.log.interval > 0, "log.interval", "expected a positive integer");
  k.require(!c.log.tensorboard || !c.log.dir.empty(), "log.tensorboard", "the event file goes into log.dir: set it");
  k.require(t.exit_interval >= 0, "train.exit_interval", "expected a non-negative integer");
  k.one_of(t.nan_policy, {"stop", "skip"}, "train.nan_policy");
  k.require(t.nan_skip_limit >= 1, "train.nan_skip_limit", "expected a positive integer");
  for (auto [key, value] : {std::pair{"train.lr", t.lr}, {"train.min_lr", t.min_lr}, {"train.weight_decay", t.weight_decay},
                            {"train.adam_beta1", t.adam_beta1}, {"train.adam_beta2", t.adam_beta2},
                            {"train.adam_eps", t.adam_eps}, {"train.clip_grad", t.clip_grad}})
    k.require(std::isfinite(value), key, str("expected a finite number, got ", value));
  k.require(c.checkpoint.save_interval >= 0, "checkpoint.save_interval", "expected a non-negative integer");
  k.require(c.checkpoint.keep >= 0, "checkpoint.keep", "expected a non-negative integer (0 = keep all)");
}

}  // namespace weft
