// weft/src/config/schema.cpp v5 — the deck schema. Names follow Megatron's flags; see the README's deck keys.
// The [model] keys come from the model field table (model/model_fields.cpp).
#include "config/schema.h"

#include <algorithm>
#include <iomanip>
#include <ostream>

#include "model/model_fields.h"
#include "util/error.h"

namespace weft {
namespace po = boost::program_options;

namespace {

template <typename T>
po::typed_value<T>* opt(T* field, const char* type) {
  return po::value<T>(field)->default_value(*field)->value_name(type);
}
template <typename T>
po::typed_value<T>* required(T* field, const char* type) {
  return po::value<T>(field)->required()->value_name(type);
}
// Doubles print their defaults compactly (1e-05, not 1.0000000000000001e-05).
po::typed_value<double>* real(double* field) {
  std::ostringstream os;
  os << *field;
  return po::value<double>(field)->default_value(*field, os.str())->value_name("float");
}
po::typed_value<bool>* flag(bool* field) {
  return po::value<bool>(field)->default_value(*field, *field ? "true" : "false")->value_name("bool");
}

// A [model] key bound to its field of `spec`. An int list is written "1,3" (empty: none).
void add_model_field(po::options_description& d, const ModelField& f, ModelSpec& spec) {
  const std::string key = f.deck_key();
  std::visit(
      [&](auto ref) {
        auto& field = ref(spec);
        using T = std::decay_t<decltype(field)>;
        if constexpr (std::is_same_v<T, double>) {
          d.add_options()(key.c_str(), real(&field), f.doc);
        } else if constexpr (std::is_same_v<T, bool>) {
          d.add_options()(key.c_str(), flag(&field), f.doc);
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          d.add_options()(key.c_str(),
                          po::value<std::string>()->default_value("")->value_name(f.type())->notifier(
                              [&field, key](const std::string& text) {
                                try {
                                  field = parse_int_list(text);
                                } catch (const std::exception&) {
                                  throw ConfigError(str("key '", key, "': expected comma-separated integers, got '",
                                                        text, "'"));
                                }
                              }),
                          f.doc);
        } else {
          d.add_options()(key.c_str(), opt(&field, f.type()), f.doc);
        }
      },
      f.ref);
}

}  // namespace

po::options_description deck_schema(Config& c) {
  po::options_description d("deck keys");
  d.add_options()("model.init", opt(&c.model_init, "random|hf:DIR|native:DIR"),
                   "initial weights: Megatron's normal init, a HuggingFace directory, or a weft checkpoint (weights "
                   "only); hf/native also give the model shape");
  for (const ModelField& f : model_fields()) add_model_field(d, f, c.model);

  DataConfig& a = c.data;
  d.add_options()
      ("data.prefix", opt(&a.prefix, "string"), "Megatron .bin/.idx prefix, or 'W1 P1 W2 P2 ...' to blend")
      ("data.split", opt(&a.split, "string"), "train,valid,test weights over the documents, e.g. 969,30,1")
      ("data.seq_length", required(&a.seq_length, "int"), "tokens per sample")
      ("data.shuffle", flag(&a.shuffle), "Megatron's shuffled GPTDataset order; false = consecutive windows")
      ("data.tokenizer", opt(&a.tokenizer, "string"), "'bytes' (256 byte ids + EOD 256) or a tokenizer.json path")
      ("data.eod_token", opt(&a.eod_token, "int"), "end-of-document id; -1 = from data.tokenizer")
      ("data.eod_mask_loss", flag(&a.eod_mask_loss), "no loss where the input token is EOD (Megatron)")
      ("data.reset_position_ids", flag(&a.reset_position_ids), "positions restart after each EOD (Megatron)")
      ("data.reset_attention_mask", flag(&a.reset_attention_mask), "attention does not cross an EOD (Megatron)")
      ("data.sft", flag(&a.sft), "prefix holds chats from `weft preprocess --sft`: loss on assistant tokens only")
      ("data.pack", flag(&a.pack), "SFT: pack several chats into each row (positions and attention per chat)")
      ("data.mock", flag(&a.mock), "train on random tokens instead of data.prefix (benchmarks, smoke tests)");

  TrainConfig& t = c.train;
  d.add_options()
      ("train.micro_batch_size", opt(&t.micro_batch_size, "int"), "samples per forward/backward on one rank")
      ("train.global_batch_size", required(&t.global_batch_size, "int"),
       "samples per optimizer step over all data-parallel ranks (micro_batch_size·dp·accumulation steps)")
      ("train.train_iters", required(&t.train_iters, "int"), "optimizer steps")
      ("train.lr", required(&t.lr, "float"), "peak learning rate")
      ("train.min_lr", real(&t.min_lr), "learning rate floor after decay")
      ("train.lr_decay_style", opt(&t.lr_decay_style, "constant|linear|cosine"), "decay after warmup")
      ("train.lr_warmup_iters", opt(&t.lr_warmup_iters, "int"), "linear warmup steps from 0")
      ("train.lr_decay_iters", opt(&t.lr_decay_iters, "int"), "steps over which to decay; 0 = train_iters")
      ("train.weight_decay", real(&t.weight_decay), "decoupled weight decay (not on 1-D parameters)")
      ("train.adam_beta1", real(&t.adam_beta1), "Adam beta1")
      ("train.adam_beta2", real(&t.adam_beta2), "Adam beta2")
      ("train.adam_eps", real(&t.adam_eps), "Adam epsilon")
      ("train.adam_moments_dtype", opt(&t.adam_moments_dtype, "fp32|bf16"),
       "storage of Adam's two moments: bf16 saves 4 bytes per parameter each (Megatron's --exp-avg-dtype and "
       "--exp-avg-sq-dtype bf16; DeepSeek-V3 trains so); the masters stay fp32")
      ("train.grad_dtype", opt(&t.grad_dtype, "fp32|bf16"),
       "GPUs: the dtype gradients accumulate and are reduced in. bf16 is Megatron's default without "
       "--accumulate-allreduce-grads-in-fp32: half the gradient memory, bytes and data-parallel traffic; sums "
       "inside a kernel stay fp32")
      ("train.master_weights", opt(&t.master_weights, "fp32|split"),
       "GPUs: how AdamW's fp32 master weights are kept. fp32: a copy beside the bf16 weights (Megatron's); split: "
       "the bf16 weights are the masters' upper halves and only the lower 16 bits are stored beside them, the same "
       "fp32 masters in 2 bytes less per parameter and 2 fewer bytes moved per parameter and step (the weights "
       "round ties toward zero instead of to even)")
      ("train.clip_grad", real(&t.clip_grad), "global gradient-norm clip; 0 = off")
      ("train.seed", opt(&t.seed, "int"), "seed for weights and data order")
      ("train.precision", opt(&t.precision, "fp32|bf16"),
       "fp32: the CPU reference backend; bf16: GPUs (bf16 weights and activations; fp32 optimizer, and grads unless "
       "train.grad_dtype = bf16)")
      ("train.recompute", opt(&t.recompute, "none|selective|full"),
       "activation recomputation: selective = the SwiGLU output (the flash backward recomputes the attention "
       "core anyway), full = each decoder layer rerun from its input in the backward")
      ("train.gemm_autotune", flag(&t.gemm_autotune),
       "GPUs: each GEMM shape's first call times cuBLASLt's first 8 candidate algorithms and keeps the fastest "
       "(PyTorch's TunableOp does the like); the choice may differ between runs, so not with train.deterministic")
      ("train.deterministic", flag(&t.deterministic),
       "GPUs: the same bits on every rerun (Megatron's --deterministic-mode); the attention backward then takes two "
       "passes instead of adding dQ up in L2 in scheduling order (slower); the CPU backend always is")
      ("train.overlap_optimizer", flag(&t.overlap_optimizer),
       "GPUs: the step's AdamW updates run on a low-priority side stream on into the next step's forward, which "
       "waits for a bucket's update only when it reaches the bucket's parameters; the same bits as without")
      ("train.eval_interval", opt(&t.eval_interval, "int"), "steps between validation runs; 0 = never")
      ("train.eval_iters", opt(&t.eval_iters, "int"), "global batches per validation run")
      ("train.nan_policy", opt(&t.nan_policy, "stop|skip"),
       "a non-finite loss or gradient norm (checked every step, from values the step computes anyway): stop the job "
       "at once naming the ranks and parameters whose gradients are not finite, without updating or saving; or skip "
       "the step's update and go on")
      ("train.nan_skip_limit", opt(&t.nan_skip_limit, "int"),
       "with nan_policy = skip: stop once this many steps in a row were skipped")
      ("train.exit_interval", opt(&t.exit_interval, "int"), "stop after a step that is a multiple of this "
       "(saving first when checkpoint.save is set); 0 = run to train_iters");

  MoeConfig& e = c.moe;
  d.add_options()
      ("moe.aux_loss_coeff", real(&e.aux_loss_coeff),
       "load-balancing loss per MoE layer, Switch/GShard form as Megatron computes it (--moe-aux-loss-coeff); "
       "0 = off (still logged)")
      ("moe.z_loss_coeff", real(&e.z_loss_coeff), "router z-loss per MoE layer (--moe-z-loss-coeff); 0 = off")
      ("moe.device_balance_loss_coeff", real(&e.device_balance_loss_coeff),
       "DeepSeek-V2's device-level balance loss per MoE layer, its devices the router's expert groups "
       "(model.moe_router_num_groups); 0 = off (still logged with groups)")
      ("moe.comm_balance_loss_coeff", real(&e.comm_balance_loss_coeff),
       "DeepSeek-V2's communication balance loss per MoE layer over the expert groups; 0 = off (still logged "
       "with groups)")
      ("moe.expert_capacity_factor", real(&e.expert_capacity_factor),
       "0 = dropless (every routed token reaches its experts); > 0: an expert takes at most "
       "ceil(tokens·topk/experts·factor) tokens per micro-batch and rank, the rest are dropped "
       "(--moe-expert-capacity-factor)")
      ("moe.token_drop_policy", opt(&e.token_drop_policy, "probs|position"),
       "past capacity an expert keeps its highest-probability tokens, or its first ones (--moe-token-drop-policy)")
      ("moe.pad_expert_input_to_capacity", flag(&e.pad_expert_input_to_capacity),
       "with a capacity factor: every expert's input padded with zero rows to its capacity "
       "(--moe-pad-expert-input-to-capacity)");

  CheckpointConfig& k = c.checkpoint;
  d.add_options()
      ("checkpoint.save", opt(&k.save, "string"), "directory for checkpoints (iter_N/ + latest); empty = none")
      ("checkpoint.load", opt(&k.load, "string"), "resume from this directory's latest checkpoint: weights, "
       "optimizer, iteration, data position")
      ("checkpoint.save_interval", opt(&k.save_interval, "int"), "steps between saves; 0 = at the end only")
      ("checkpoint.keep", opt(&k.keep, "int"), "after each save only this many newest checkpoints stay in "
       "checkpoint.save (the latest always); 0 = keep all");

  ParallelConfig& p = c.parallel;
  d.add_options()
      ("parallel.tp", opt(&p.tp, "int"), "tensor-parallel size")
      ("parallel.pp", opt(&p.pp, "int"), "pipeline-parallel size")
      ("parallel.cp", opt(&p.cp, "int"), "context-parallel size: each sequence split over cp ranks, ring attention "
       "(data.seq_length a multiple of 2·cp)")
      ("parallel.ep", opt(&p.ep, "int"), "expert-parallel size: each MoE layer's experts split over ep ranks carved "
       "out of the data- and context-parallel ones (Megatron's order); tokens travel to their experts by all-to-all")
      ("parallel.etp", opt(&p.etp, "int"), "expert tensor-parallel size; 0 = parallel.tp, the only size weft supports "
       "(each expert's SwiGLU split over the tensor-parallel ranks like the dense MLPs)")
      ("parallel.dp", opt(&p.dp, "int"), "data-parallel size; 0 = world size / (tp·pp·cp), else must equal it")
      ("parallel.vpp", opt(&p.vpp, "int"), "model chunks per pipeline rank: > 1 runs the interleaved schedule")
      ("parallel.first_stage_layers", opt(&p.first_stage_layers, "int"), "layers on the first pipeline stage; 0 = even")
      ("parallel.last_stage_layers", opt(&p.last_stage_layers, "int"), "layers on the last pipeline stage; 0 = even")
      ("parallel.sequence_parallel", flag(&p.sequence_parallel),
       "split the token axis over tp between the tensor-parallel blocks (norms, residuals, dropout-free regions)")
      ("parallel.distributed_optimizer", flag(&p.distributed_optimizer),
       "shard fp32 masters and Adam moments over the data- (and context-) parallel ranks (ZeRO-1): grads "
       "reduce-scattered, weights all-gathered")
      ("parallel.overlap_grad_reduce", flag(&p.overlap_grad_reduce),
       "start each gradient bucket's data-parallel reduction as soon as the backward has finished it, beside the "
       "rest of the backward; false = all buckets after the backward")
      ("parallel.overlap_param_gather", flag(&p.overlap_param_gather),
       "with the distributed optimizer: the step leaves each bucket's all-gather of updated values running, and the "
       "next forward waits for a bucket only when it reaches its parameters")
      ("parallel.ddp_bucket_size", opt(&p.ddp_bucket_size, "int"),
       "elements per gradient bucket (buckets hold whole parameters); 0 = one bucket");

  LogConfig& l = c.log;
  d.add_options()
      ("log.dir", opt(&l.dir, "string"), "where metrics.jsonl goes; empty = no file")
      ("log.interval", opt(&l.interval, "int"), "steps between log lines")
      ("log.comm_wait", flag(&l.comm_wait),
       "log comm_wait_ms: per step, how long compute waited for the overlapped data-parallel collectives (gradient "
       "reductions, parameter all-gathers); on GPUs timed on the device with two CUDA events per wait, and the "
       "host waits for the device at each log line")
      ("log.tensorboard", flag(&l.tensorboard),
       "also write a TensorBoard event file into log.dir (tensorboard --logdir DIR): every number of metrics.jsonl as "
       "train/<key>, the validation loss as validation/loss");
  return d;
}

void print_schema(std::ostream& os, const po::options_description& schema) {
  // Column widths from the longest key and type, so every line lines up.
  size_t key_width = 0, type_width = 0;
  for (const auto& o : schema.options()) {
    const std::string& key = o->long_name();
    key_width = std::max(key_width, key.size() - key.find('.'));
    type_width = std::max(type_width, o->semantic()->name().size() + (o->semantic()->is_required() ? 11 : 0));
  }
  std::string section;
  for (const auto& o : schema.options()) {
    const std::string& key = o->long_name();
    const std::string sec = key.substr(0, key.find('.'));
    if (sec != section) {
      os << "\n[" << sec << "]\n";
      section = sec;
    }
    std::string type = o->semantic()->name();
    if (o->semantic()->is_required()) type += " (required)";
    os << "  " << std::left << std::setw(static_cast<int>(key_width + 1)) << key.substr(sec.size() + 1)
       << std::setw(static_cast<int>(type_width + 2)) << type << o->description() << "\n";
  }
}

}  // namespace weft
