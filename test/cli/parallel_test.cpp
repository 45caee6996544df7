// weft/test/cli/parallel_test.cpp v3 — model-parallel layouts give the single-rank run: 10 fp32 steps of a tiny
// model at each layout, compared with one rank on losses and gradient norms (and the resharded checkpoints).
#include <gtest/gtest.h>

#include "cli_util.h"

using namespace weft;
using namespace weft::test;

namespace {

// Four layers so that pp = 2 with vpp = 2 has a layer per virtual stage; untied output layer; GQA.
std::string deck(const TempDir& dir, const std::string& prefix, const std::string& model_extra = "") {
  return dir.write("deck.ini", "[model]\nnum_layers = 4\nhidden_size = 64\nffn_hidden_size = 160\n"
                               "num_attention_heads = 4\nnum_query_groups = 2\nvocab_size = 257\n"
                               "max_position_embeddings = 64\n" + model_extra +
                               "[data]\nprefix = " + prefix + "\ntokenizer = bytes\nseq_length = 32\nsplit = 100,0,0\n"
                               "[train]\nmicro_batch_size = 2\nglobal_batch_size = 8\ntrain_iters = 10\nlr = 2e-3\n"
                               "lr_warmup_iters = 2\nlr_decay_style = cosine\nmin_lr = 2e-4\neval_iters = 0\n"
                               "seed = 5\n");
}


}  // namespace

TEST(ParallelLayouts, EveryLayoutGivesTheSingleRankLosses) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = deck(dir, prefix);
  const Result one = run_weft(dir, "train " + d + " --log.dir=" + dir.file("single"));
  ASSERT_EQ(one.status, 0) << one.err;
  const auto ref = train_lines(dir.file("single/metrics.jsonl"));
  ASSERT_EQ(ref.size(), 10u);
  expect_same_run(dir, d, "--parallel.tp=2", 2, ref);
  expect_same_run(dir, d, "--parallel.tp=2 --parallel.sequence_parallel=true", 2, ref);
  expect_same_run(dir, d, "--parallel.pp=2", 2, ref);
  expect_same_run(dir, d, "--parallel.pp=2 --parallel.vpp=2", 2, ref);
  expect_same_run(dir, d, "--parallel.pp=2 --parallel.first_stage_layers=1", 2, ref);
  expect_same_run(dir, d, "--parallel.tp=2 --parallel.pp=2", 4, ref);
  expect_same_run(dir, d, "--parallel.tp=2 --parallel.pp=2 --parallel.sequence_parallel=true", 4, ref);
  expect_same_run(dir, d, "--parallel.distributed_optimizer=true", 2, ref);
  expect_same_run(dir, d, "--parallel.tp=2 --parallel.distributed_optimizer=true", 4, ref);
  // Many small buckets, sharded and not, reduced during the backward or after it.
  expect_same_run(dir, d, "--parallel.distributed_optimizer=true --parallel.ddp_bucket_size=3000", 2, ref);
  expect_same_run(dir, d,
                  "--parallel.distributed_optimizer=true --parallel.overlap_param_gather=true "
                  "--parallel.ddp_bucket_size=3000 --parallel.pp=2",
                  4, ref);
  expect_same_run(dir, d, "--parallel.ddp_bucket_size=3000 --parallel.overlap_grad_reduce=false", 2, ref);
  expect_same_run(dir, d, "--parallel.cp=2", 2, ref);
  expect_same_run(dir, d, "--parallel.cp=2 --parallel.tp=2 --parallel.sequence_parallel=true", 4, ref);
  expect_same_run(dir, d, "--parallel.cp=2 --parallel.pp=2", 4, ref);
  expect_same_run(dir, d, "--train.recompute=full --parallel.tp=2 --parallel.sequence_parallel=true", 2, ref);
  expect_same_run(dir, d, "--train.recompute=selective --parallel.pp=2", 2, ref);
}

// log.comm_wait: each log line says how long compute waited for the data-parallel collectives (on the CPU they run
// at once, so all of their time), and the losses stay those of the run without it.
TEST(ParallelLayouts, CommWaitIsLoggedBesideTheSameLosses) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = deck(dir, prefix) +
                        " --parallel.distributed_optimizer=true --parallel.ddp_bucket_size=3000 --log.interval=5";
  ASSERT_EQ(run_weft(dir, "train " + d + " --log.dir=" + dir.file("plain"), 2).status, 0);
  const Result r = run_weft(dir, "train " + d + " --log.comm_wait=true --log.dir=" + dir.file("counted"), 2);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("| comm wait "), std::string::npos) << r.out;
  const auto plain = train_lines(dir.file("plain/metrics.jsonl"));
  const auto counted = train_lines(dir.file("counted/metrics.jsonl"));
  ASSERT_EQ(plain.size(), 2u);
  ASSERT_EQ(counted.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_FALSE(plain[i].contains("comm_wait_ms"));
    const double ms = counted[i].at("comm_wait_ms");
    // On the CPU the collectives run at once, inside the step: some time, and less than the step's own.
    const double step_ms = 1e3 * 8 * 32 / counted[i].at("tokens_per_s").get<double>();  // 8 samples of 32 tokens
    EXPECT_GT(ms, 0.0);
    EXPECT_LT(ms, step_ms) << "a step of " << step_ms << " ms";
    EXPECT_EQ(counted[i]["loss"], plain[i]["loss"]);
  }
}

TEST(ParallelLayouts, DistributedOptimizerCheckpointsReshard) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = deck(dir, prefix);
  ASSERT_EQ(run_weft(dir, "train " + d + " --log.dir=" + dir.file("full")).status, 0);
  // Masters and moments sharded over dp = 4, saved, and resumed without sharding at tp = 2, dp = 1.
  ASSERT_EQ(run_weft(dir, "train " + d + " --parallel.distributed_optimizer=true --parallel.ddp_bucket_size=3000 "
                          "--train.exit_interval=5 --log.dir=" +
                          dir.file("part") + " --checkpoint.save=" + dir.file("ckpt"), 4).status, 0);
  const Result r = run_weft(dir, "train " + d + " --parallel.tp=2 --log.dir=" + dir.file("part") +
                                     " --checkpoint.load=" + dir.file("ckpt"), 2);
  ASSERT_EQ(r.status, 0) << r.err;
  // Sharded over dp = 2 × cp = 2 (the gradient group), resumed at cp = 2, dp = 1.
  ASSERT_EQ(run_weft(dir, "train " + d + " --parallel.cp=2 --parallel.distributed_optimizer=true "
                          "--train.exit_interval=5 --log.dir=" + dir.file("cp") + " --checkpoint.save=" +
                          dir.file("ckpt_cp"), 4).status, 0);
  const Result rc = run_weft(dir, "train " + d + " --parallel.cp=2 --log.dir=" + dir.file("cp") +
                                      " --checkpoint.load=" + dir.file("ckpt_cp"), 2);
  ASSERT_EQ(rc.status, 0) << rc.err;
  for (const char* run : {"part", "cp"}) expect_resumed_losses(dir.file("full"), dir.file(run), run);
}

// bf16 Adam moments sharded over dp = 4 and checkpointed (as fp32) resume unsharded at dp = 2 on the same curve.
TEST(ParallelLayouts, Bf16MomentsShardAndResume) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = deck(dir, prefix) + " --train.adam_moments_dtype=bf16";
  ASSERT_EQ(run_weft(dir, "train " + d + " --log.dir=" + dir.file("full"), 2).status, 0);
  ASSERT_EQ(run_weft(dir, "train " + d + " --parallel.distributed_optimizer=true --train.exit_interval=5 --log.dir=" +
                          dir.file("part") + " --checkpoint.save=" + dir.file("ckpt"), 4).status, 0);
  const Result r = run_weft(dir, "train " + d + " --log.dir=" + dir.file("part") + " --checkpoint.load=" +
                                     dir.file("ckpt"), 2);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_resumed_losses(dir.file("full"), dir.file("part"));
  // The moments' rounding shows in the curve, and stays small: every later loss differs from the fp32-moment run's,
  // by less than 1 %.
  ASSERT_EQ(run_weft(dir, "train " + deck(dir, prefix) + " --log.dir=" + dir.file("fp32"), 2).status, 0);
  const auto fp32 = train_lines(dir.file("fp32/metrics.jsonl")), bf16 = train_lines(dir.file("full/metrics.jsonl"));
  ASSERT_EQ(fp32.size(), bf16.size());
  // (The first update uses the moments before they are stored rounded: the runs part from step 3.)
  for (size_t i = 2; i < fp32.size(); ++i) {
    const double a = bf16[i]["loss"], b = fp32[i]["loss"];
    EXPECT_NE(a, b) << "step " << i + 1;
    EXPECT_LT(std::abs(a - b), 0.01 * b) << "step " << i + 1;
  }
}

TEST(ParallelLayouts, TiedEmbeddingsAcrossPipelineStages) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = deck(dir, prefix, "tie_embeddings = true\n");
  ASSERT_EQ(run_weft(dir, "train " + d + " --log.dir=" + dir.file("single")).status, 0);
  const auto ref = train_lines(dir.file("single/metrics.jsonl"));
  expect_same_run(dir, d, "--parallel.pp=2", 2, ref);
  expect_same_run(dir, d, "--parallel.pp=2 --parallel.vpp=2 --parallel.tp=2", 4, ref);
}

TEST(ParallelLayouts, CheckpointsReshardAcrossTensorAndPipelineLayouts) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = deck(dir, prefix, "tie_embeddings = true\n");
  ASSERT_EQ(run_weft(dir, "train " + d + " --log.dir=" + dir.file("full")).status, 0);
  // Save at tp = 2, pp = 1; resume at tp = 1, pp = 2 (and the data-parallel size changes from 1 to 2).
  ASSERT_EQ(run_weft(dir, "train " + d + " --parallel.tp=2 --train.exit_interval=5 --log.dir=" + dir.file("part") +
                          " --checkpoint.save=" + dir.file("ckpt"), 2).status, 0);
  const Result r = run_weft(dir, "train " + d + " --parallel.pp=2 --log.dir=" + dir.file("part") +
                                     " --checkpoint.load=" + dir.file("ckpt"), 4);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_resumed_losses(dir.file("full"), dir.file("part"));
}

TEST(ParallelLayouts, BadLayoutsAreClearErrors) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = deck(dir, prefix);
  struct Case {
    std::string args, key;
    int np;
  };
  for (const Case& c : std::vector<Case>{{"--parallel.tp=4 --model.num_query_groups=2", "parallel.tp", 4},
                                         {"--parallel.tp=3", "parallel.tp", 3},
                                         {"--parallel.pp=5", "parallel.pp", 5},
                                         {"--parallel.pp=3", "parallel.pp", 3},
                                         {"--parallel.pp=2 --parallel.vpp=2 --train.global_batch_size=6 "
                                          "--train.micro_batch_size=2", "train.global_batch_size", 2},
                                         {"--parallel.pp=2 --parallel.last_stage_layers=3 --parallel.first_stage_layers=3",
                                          "parallel.last_stage_layers", 2},
                                         {"--parallel.cp=3", "parallel.cp", 3},
                                         {"--parallel.cp=2 --data.reset_attention_mask=true", "parallel.cp", 2}}) {
    const Result r = run_weft(dir, "train " + d + " " + c.args, c.np);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.key), std::string::npos) << c.args << "\n" << r.err;
  }
}
