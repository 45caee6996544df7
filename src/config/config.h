// weft/src/config/config.h v5 — the typed configuration a deck produces, and where each value came from.
//
// Every field is declared once, with its type, default and one-line doc, in config/schema.cpp (the [model] fields in
// model/model_fields.cpp); decks are read by config/deck.cpp and checked by config/validate.cpp. Field names follow
// the deck keys (Megatron's flag names).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/model_spec.h"

namespace weft {

struct DataConfig {
  std::string prefix;  // "PATH" or "W1 PATH1 W2 PATH2 ..." (Megatron's --data-path)
  std::string split = "969,30,1";
  int64_t seq_length = 0;
  bool shuffle = true;
  std::string tokenizer;  // "bytes" or a tokenizer.json path; gives the EOD id
  int64_t eod_token = -1;
  bool eod_mask_loss = false;
  bool reset_position_ids = false;
  bool reset_attention_mask = false;
  bool sft = false;   // prefix holds `weft preprocess --sft` chats (+ PREFIX_loss_mask)
  bool mock = false;  // random tokens instead of data.prefix (benchmarks, smoke tests)
  bool pack = true;   // SFT: pack several chats per row
};

struct TrainConfig {
  int64_t micro_batch_size = 1;
  int64_t global_batch_size = 0;
  int64_t train_iters = 0;
  double lr = 0;
  double min_lr = 0;
  std::string lr_decay_style = "linear";
  int64_t lr_warmup_iters = 0;
  int64_t lr_decay_iters = 0;  // 0: train_iters
  double weight_decay = 0.01;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  std::string adam_moments_dtype = "fp32";  // fp32 | bf16
  std::string grad_dtype = "fp32";          // fp32 | bf16 (GPUs)
  std::string master_weights = "fp32";      // fp32 | split (GPUs: the bf16 weights plus their low 16 bits)
  double clip_grad = 1.0;
  int64_t seed = 1234;
  std::string precision = "fp32";  // fp32: CPU backend; bf16: CUDA backend
  std::string recompute = "none";  // none | selective | full
  bool gemm_autotune = false;      // GPUs: each GEMM shape times cuBLASLt's candidates once and keeps the fastest
  bool deterministic = false;      // GPU reruns give the same bits (the attention backward's two-pass form)
  bool overlap_optimizer = false;  // GPUs: AdamW runs on a side stream into the next step's forward
  int64_t eval_interval = 1000;
  int64_t eval_iters = 100;
  int64_t exit_interval = 0;  // stop (after saving) once the iteration is a multiple of this; 0 = never
  std::string nan_policy = "stop";  // a non-finite loss or gradient norm: stop, or skip the step
  int64_t nan_skip_limit = 5;       // skip: at most this many steps in a row
};

// How MoE layers train (Megatron's --moe-* training flags); the model's experts are [model] fields.
struct MoeConfig {
  double aux_loss_coeff = 0;           // load-balancing loss (Switch/GShard form) per MoE layer
  double z_loss_coeff = 0;             // router z-loss per MoE layer
  double device_balance_loss_coeff = 0;  // DeepSeek-V2's device-level balance loss over the expert groups
  double comm_balance_loss_coeff = 0;    // and its communication balance loss
  double expert_capacity_factor = 0;   // 0: dropless; > 0: each expert takes at most this · tokens·topk/experts
  std::string token_drop_policy = "probs";  // probs | position: which tokens an expert past capacity keeps
  bool pad_expert_input_to_capacity = false;  // every expert's input padded to its capacity
};

struct ParallelConfig {
  int64_t tp = 1, pp = 1, cp = 1, ep = 1;
  int64_t etp = 0;  // expert tensor parallelism; 0 = tp (the only size weft supports)
  int64_t dp = 0;  // 0: world / (tp·pp·cp); otherwise must equal it
  int64_t vpp = 1;  // model chunks per pipeline rank (interleaved schedule when > 1)
  int64_t first_stage_layers = 0, last_stage_layers = 0;  // uneven pipelines; 0 = even split
  bool sequence_parallel = false;
  bool distributed_optimizer = false;  // ZeRO-1: masters and moments sharded over data-parallel ranks
  bool overlap_grad_reduce = true;     // bucket reductions start during the backward
  bool overlap_param_gather = false;   // the updated values' all-gathers run on into the next forward
  int64_t ddp_bucket_size = 40000000;  // elements per gradient bucket (Megatron's default)
};

struct CheckpointConfig {
  std::string save;           // directory to save into; empty = no saves
  std::string load;           // directory to resume from (its `latest`); empty = fresh start
  int64_t save_interval = 0;  // steps between saves; 0 = only at the end
  int64_t keep = 0;           // > 0: only this many newest checkpoints stay (the latest always)
};

struct LogConfig {
  std::string dir;
  int64_t interval = 1;
  bool comm_wait = false;  // log how long compute waits for the overlapped data-parallel collectives
  bool tensorboard = false;  // an event file beside metrics.jsonl
};

struct Config {
  ModelSpec model;                   // [model] as the deck wrote it (model/model_fields.cpp declares its keys)
  std::string model_init = "random";  // model.init: random | hf:DIR | native:DIR
  DataConfig data;
  TrainConfig train;
  MoeConfig moe;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  LogConfig log;

  std::string deck_path;
  // key → where its value was set: "deck.ini:12", "command line" or "default".
  std::map<std::string, std::string> origin;
  // key → value as written, for every key that was set (saved beside runs and checkpoints).
  std::map<std::string, std::string> values;

  // "key 'parallel.tp' (deck.ini:12)" — how errors name a key.
  std::string where(const std::string& key) const;
};

}  // namespace weft
