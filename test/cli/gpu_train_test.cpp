// weft/test/cli/gpu_train_test.cpp v8 — bf16 training on the GPU follows the CPU's fp32 loss curve (MoE models too), runs
// repeat bit for bit, split masters resume bit for bit, the overlapped optimizer step changes no bit, and on two
// GPUs every parallel layout follows the single-GPU curve. Skips where weft has no GPU (CI) or one only.
#include <gtest/gtest.h>

#include <cstdio>

#include "cli_util.h"

using namespace weft;
using namespace weft::test;

namespace {

int gpu_count() {
  FILE* p = popen("nvidia-smi -L 2>/dev/null", "r");
  if (!p) return 0;
  int n = 0;
  char line[512];
  while (std::fgets(line, sizeof line, p))
    if (std::string(line).rfind("GPU ", 0) == 0) ++n;
  pclose(p);
  return n;
}

// Moby-Dick as bytes, and a deck for a 2-layer model with head dim 64 (so the tensor-core attention runs) and GQA;
// `train` holds the run's own [train] keys.
std::string small_deck(const TempDir& dir, const std::string& seq_length, const std::string& train) {
  const std::string prefix = byte_dataset(dir);
  return dir.write("deck.ini", "[model]\nnum_layers = 2\nhidden_size = 256\nffn_hidden_size = 704\n"
                               "num_attention_heads = 4\nnum_query_groups = 2\nvocab_size = 257\n"
                               "max_position_embeddings = 256\n[data]\nprefix = " + prefix + "\ntokenizer = bytes\n"
                               "seq_length = " + seq_length + "\nsplit = 100,0,0\n[train]\n" + train +
                               "lr = 2e-3\nmin_lr = 2e-4\nlr_warmup_iters = 5\nlr_decay_style = cosine\neval_iters = 0\n"
                               "seed = 11\n");
}

// Whether weft said it cannot run on a GPU here (CI: no GPU, or built without CUDA).
bool no_gpu(const Result& r) {
  return r.status != 0 &&
         (r.err.find("needs a GPU") != std::string::npos || r.err.find("built without") != std::string::npos);
}

}  // namespace

TEST(GpuTraining, FiftyBf16StepsTrackTheFp32Curve) {
  TempDir dir;
  // Two data-parallel ranks on the CPU run.
  const std::string deck =
      small_deck(dir, "128", "micro_batch_size = 8\nglobal_batch_size = 16\ntrain_iters = 50\n");
  // The GPU runs: fp32 optimizer state; bf16 Adam moments; bf16 gradients (Megatron's default without
  // --accumulate-allreduce-grads-in-fp32), accumulated over the step's two micro-batches; all three halvings with
  // the masters split into the weights and their low halves.
  struct GpuRun {
    const char *dir, *flags, *label;
  };
  const GpuRun runs[] = {{"gpu", "", ""},
                         {"gpu_bf16_moments", " --train.adam_moments_dtype=bf16", " (bf16 Adam moments)"},
                         {"gpu_bf16_grads", " --train.grad_dtype=bf16", " (bf16 gradients)"},
                         {"gpu_split_masters",
                          " --train.adam_moments_dtype=bf16 --train.grad_dtype=bf16 --train.master_weights=split",
                          " (bf16 moments and gradients, split masters)"}};
  for (const GpuRun& run : runs) {
    const Result r =
        run_weft(dir, "train " + deck + " --train.precision=bf16" + run.flags + " --log.dir=" + dir.file(run.dir));
    if (no_gpu(r)) GTEST_SKIP() << "no GPU: " << r.err;
    ASSERT_EQ(r.status, 0) << run.dir << ": " << r.out << r.err;
  }
  const Result cpu = run_weft(dir, "train " + deck + " --log.dir=" + dir.file("cpu"), 2);
  ASSERT_EQ(cpu.status, 0) << cpu.err;
  const auto b = train_lines(dir.file("cpu/metrics.jsonl"));
  ASSERT_EQ(b.size(), 50u);
  for (const GpuRun& run : runs) {
    const auto a = train_lines(dir.file(run.dir) + "/metrics.jsonl");
    ASSERT_EQ(a.size(), 50u);
    double worst = 0;
    for (size_t i = 0; i < 50; ++i) {
      const double x = a[i]["loss"], y = b[i]["loss"];
      worst = std::max(worst, std::abs(x - y) / y);
      EXPECT_LE(std::abs(x - y), 0.01 * y) << run.dir << " step " << i + 1 << ": bf16 GPU " << x << ", fp32 CPU "
                                           << y;
    }
    std::printf("bf16 GPU%s vs fp32 CPU over 50 steps: worst relative loss difference %.4f%%\n", run.label,
                100 * worst);
  }
  EXPECT_LT(b.back()["loss"].get<double>(), b.front()["loss"].get<double>() - 1.0);
}

// A small Mixtral-style and a Qwen-MoE-style model (routing in fp32 from bf16 activations on the GPU): 50 bf16 steps
// within 1 % of the CPU's fp32 losses, the routers' losses logged on both.
TEST(GpuTraining, MoeFiftyBf16StepsTrackTheFp32Curve) {
  TempDir dir;
  const std::string base = small_deck(dir, "128", "micro_batch_size = 8\nglobal_batch_size = 16\ntrain_iters = 50\n");
  for (const char* model : {"mixtral", "qwen2_moe"}) {
    const std::string moe =
        std::string(model) == "mixtral"
            ? " --model.family=mixtral --model.num_experts=8 --model.moe_ffn_hidden_size=256 --model.moe_router_topk=2"
            : " --model.family=qwen2_moe --model.num_experts=16 --model.moe_ffn_hidden_size=128 "
              "--model.moe_router_topk=4 --model.moe_router_pre_softmax=true "
              "--model.moe_shared_expert_intermediate_size=256 --model.moe_shared_expert_gate=true --model.qkv_bias=true";
    const std::string flags = base + moe + " --moe.aux_loss_coeff=0.01 --moe.z_loss_coeff=0.001";
    const Result r = run_weft(dir, "train " + flags + " --train.precision=bf16 --log.dir=" + dir.file(str("gpu_", model)));
    if (no_gpu(r)) GTEST_SKIP() << "no GPU: " << r.err;
    ASSERT_EQ(r.status, 0) << model << ": " << r.out << r.err;
    const Result cpu = run_weft(dir, "train " + flags + " --log.dir=" + dir.file(str("cpu_", model)), 2);
    ASSERT_EQ(cpu.status, 0) << cpu.err;
    const auto a = train_lines(dir.file(str("gpu_", model, "/metrics.jsonl")));
    const auto b = train_lines(dir.file(str("cpu_", model, "/metrics.jsonl")));
    ASSERT_EQ(a.size(), 50u);
    ASSERT_EQ(b.size(), 50u);
    double worst = 0;
    for (size_t i = 0; i < 50; ++i) {
      const double x = a[i]["loss"], y = b[i]["loss"];
      worst = std::max(worst, std::abs(x - y) / y);
      EXPECT_LE(std::abs(x - y), 0.01 * y) << model << " step " << i + 1 << ": bf16 GPU " << x << ", fp32 CPU " << y;
      EXPECT_TRUE(a[i].contains("load_balancing_loss") && a[i].contains("z_loss")) << model;
    }
    std::printf("MoE %s: bf16 GPU vs fp32 CPU over 50 steps: worst relative loss difference %.4f%%\n", model,
                100 * worst);
    EXPECT_LT(b.back()["loss"].get<double>(), b.front()["loss"].get<double>() - 1.0);
  }
}

// With train.deterministic no GPU kernel sums in scheduling order, so two runs give the same losses and gradient
// norms to the last bit. A QKV bias makes every summing kernel of the backward run (attention, embedding, bias,
// norms).
TEST(GpuTraining, RunsRepeatBitForBit) {
  TempDir dir;
  const std::string deck = small_deck(
      dir, "256", "precision = bf16\nmicro_batch_size = 4\nglobal_batch_size = 8\ntrain_iters = 20\n");
  std::vector<std::vector<nlohmann::json>> runs;
  for (int run = 0; run < 2; ++run) {
    const std::string log = dir.file("run" + std::to_string(run));
    const Result r =
        run_weft(dir, "train " + deck + " --model.qkv_bias=true --train.deterministic=true --log.dir=" + log);
    if (no_gpu(r)) GTEST_SKIP() << "no GPU: " << r.err;
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    runs.push_back(train_lines(log + "/metrics.jsonl"));
    ASSERT_EQ(runs.back().size(), 20u);
  }
  for (size_t i = 0; i < 20; ++i)
    for (const char* key : {"loss", "grad_norm"})
      EXPECT_EQ(runs[0][i][key].get<double>(), runs[1][i][key].get<double>()) << key << " at step " << i + 1;
  if (!HasFailure()) std::printf("two bf16 runs of 20 steps: losses and gradient norms equal bit for bit\n");
}

// A run with split masters that stops at step 5 and resumes from its checkpoint gives the uninterrupted run's
// losses and gradient norms bit for bit: the checkpoint's fp32 masters are joined from the weights and their low
// halves, and split again on loading, without losing a bit.
TEST(GpuTraining, SplitMastersResumeBitForBit) {
  TempDir dir;
  const std::string deck =
      small_deck(dir, "256", "precision = bf16\nmicro_batch_size = 4\nglobal_batch_size = 8\ntrain_iters = 10\n") +
      " --train.deterministic=true --train.adam_moments_dtype=bf16 --train.grad_dtype=bf16 "
      "--train.master_weights=split";
  const Result full = run_weft(dir, "train " + deck + " --log.dir=" + dir.file("full"));
  if (no_gpu(full)) GTEST_SKIP() << "no GPU: " << full.err;
  ASSERT_EQ(full.status, 0) << full.out << full.err;
  const Result first = run_weft(dir, "train " + deck + " --log.dir=" + dir.file("part") +
                                         " --train.exit_interval=5 --checkpoint.save=" + dir.file("ckpt"));
  ASSERT_EQ(first.status, 0) << first.err;
  const Result second =
      run_weft(dir, "train " + deck + " --log.dir=" + dir.file("part") + " --checkpoint.load=" + dir.file("ckpt"));
  ASSERT_EQ(second.status, 0) << second.err;
  const auto a = train_lines(dir.file("full/metrics.jsonl")), b = train_lines(dir.file("part/metrics.jsonl"));
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(b.size(), 10u);
  for (size_t i = 0; i < 10; ++i)
    for (const char* key : {"loss", "grad_norm"})
      EXPECT_EQ(a[i][key].get<double>(), b[i][key].get<double>()) << key << " at step " << i + 1;
  if (!HasFailure()) std::printf("split masters: a run resumed at step 5 equals the uninterrupted one bit for bit\n");
}

// With train.overlap_optimizer the AdamW updates run on a side stream into the next forward, which waits for each
// bucket before reading its weights: the same kernels on the same data, so the same bits as the run without it.
// Small buckets make one wait per layer; validation runs and a checkpoint save read the weights between steps.
TEST(GpuTraining, OverlappedOptimizerStepGivesTheSameBits) {
  TempDir dir;
  const std::string deck =
      small_deck(dir, "256", "precision = bf16\nmicro_batch_size = 4\nglobal_batch_size = 8\ntrain_iters = 20\n") +
      " --train.deterministic=true --train.adam_moments_dtype=bf16 --train.grad_dtype=bf16 "
      "--train.master_weights=split --parallel.ddp_bucket_size=100000 --data.split=95,5,0 --train.eval_interval=5 "
      "--train.eval_iters=1 --checkpoint.save_interval=10";
  std::vector<std::vector<nlohmann::json>> runs, validations;
  for (const char* overlap : {"false", "true"}) {
    const std::string log = dir.file(std::string("overlap_") + overlap);
    const Result r = run_weft(dir, "train " + deck + " --train.overlap_optimizer=" + overlap + " --log.dir=" + log +
                                       " --checkpoint.save=" + log + "/ckpt");
    if (no_gpu(r)) GTEST_SKIP() << "no GPU: " << r.err;
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    runs.push_back(train_lines(log + "/metrics.jsonl"));
    ASSERT_EQ(runs.back().size(), 20u);
    validations.emplace_back();
    for (auto& j : read_jsonl(log + "/metrics.jsonl"))
      if (j.contains("val_loss")) validations.back().push_back(j);
    ASSERT_EQ(validations.back().size(), 4u);  // after steps 5, 10, 15 and 20
  }
  for (size_t i = 0; i < 20; ++i)
    for (const char* key : {"loss", "grad_norm"})
      EXPECT_EQ(runs[0][i][key].get<double>(), runs[1][i][key].get<double>()) << key << " at step " << i + 1;
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(validations[0][i]["val_loss"].get<double>(), validations[1][i]["val_loss"].get<double>())
        << "validation " << i + 1;
  if (!HasFailure()) std::printf("overlapped optimizer step: 20 steps equal the plain run's bit for bit\n");
}

namespace {

// Runs `layouts` on 2 GPUs and the same deck (with `common` flags) on 1 GPU; every layout's 30 losses must stay
// within 1% of the single-GPU ones.
void expect_layouts_track_one_gpu(const TempDir& dir, const std::string& deck, const std::string& common,
                                  const std::vector<std::string>& layouts) {
  const std::string one = dir.file("one" + std::to_string(std::hash<std::string>{}(common)));
  ASSERT_EQ(run_weft(dir, "train " + deck + " " + common + " --log.dir=" + one).status, 0);
  const auto ref = train_lines(one + "/metrics.jsonl");
  ASSERT_EQ(ref.size(), 30u);
  for (const std::string& layout : layouts) {
    const std::string log = dir.file("run" + std::to_string(std::hash<std::string>{}(common + layout)));
    const Result r = run_weft(dir, "train " + deck + " " + common + " " + layout + " --log.dir=" + log, 2);
    ASSERT_EQ(r.status, 0) << layout << "\n" << r.out << r.err;
    const auto got = train_lines(log + "/metrics.jsonl");
    ASSERT_EQ(got.size(), 30u) << layout;
    double worst = 0;
    for (size_t i = 0; i < 30; ++i) {
      // With log.comm_wait, the device-timed waits of the step: a finite, non-negative time.
      if (layout.find("--log.comm_wait=true") != std::string::npos) {
        const double ms = got[i].at("comm_wait_ms");
        EXPECT_TRUE(ms >= 0 && ms < 60'000) << layout << " step " << i + 1 << ": comm_wait_ms " << ms;
      }
      const double x = got[i]["loss"], y = ref[i]["loss"];
      worst = std::max(worst, std::abs(x - y) / y);
      // The README's claim: every two-GPU layout within 0.07 % (the worst measured, tp 2, 0.0619 %).
      EXPECT_LE(std::abs(x - y), 0.0007 * y) << common << " " << layout << " step " << i + 1 << ": " << x << " vs "
                                             << y;
    }
    const std::string label = common.empty() ? (layout.empty() ? "dp=2" : layout) : common + " " + layout;
    std::printf("2 GPUs [%s] vs 1 GPU, 30 bf16 steps: worst relative loss difference %.4f%%\n", label.c_str(),
                100 * worst);
  }
}

}  // namespace

TEST(GpuTraining, TwoGpuLayoutsTrackTheSingleGpuRun) {
  if (gpu_count() < 2) GTEST_SKIP() << "needs 2 GPUs";
  TempDir dir;
  const std::string deck = small_deck(
      dir, "256", "precision = bf16\nmicro_batch_size = 4\nglobal_batch_size = 8\ntrain_iters = 30\n");
  // Small buckets (the 2-layer model has about 1.7M parameters) so that many reductions overlap the backward.
  expect_layouts_track_one_gpu(dir, deck, "",
                               {"", "--parallel.ddp_bucket_size=100000",
                                "--parallel.distributed_optimizer=true --parallel.ddp_bucket_size=100000",
                                "--parallel.distributed_optimizer=true --parallel.overlap_param_gather=true "
                                "--parallel.ddp_bucket_size=100000 --log.comm_wait=true",
                                "--parallel.distributed_optimizer=true --parallel.overlap_param_gather=true "
                                "--train.overlap_optimizer=true --parallel.ddp_bucket_size=100000",
                                "--parallel.tp=2", "--parallel.tp=2 --parallel.sequence_parallel=true",
                                "--parallel.cp=2", "--parallel.pp=2 --train.micro_batch_size=2",
                                "--parallel.tp=2 --parallel.sequence_parallel=true --train.recompute=full"});
  // bf16 gradients reduced in bf16, whole and sharded; split masters sharded.
  expect_layouts_track_one_gpu(dir, deck, "--train.grad_dtype=bf16",
                               {"", "--parallel.distributed_optimizer=true --parallel.ddp_bucket_size=100000"});
  expect_layouts_track_one_gpu(dir, deck, "--train.master_weights=split",
                               {"--parallel.distributed_optimizer=true --parallel.ddp_bucket_size=100000"});
  // The interleaved schedule needs a layer per virtual stage. At lr 2e-3 this 4-layer model passes a loss spike
  // near step 14 whose timing shifts with bf16 rounding (every layout that changes the arithmetic moved by 3-4%
  // there, data parallelism stayed bit-identical), so it trains at 5e-4.
  expect_layouts_track_one_gpu(dir, deck, "--model.num_layers=4 --train.lr=5e-4 --train.min_lr=5e-5",
                               {"--parallel.pp=2 --train.micro_batch_size=2",
                                "--parallel.pp=2 --parallel.vpp=2 --train.micro_batch_size=2"});
}
