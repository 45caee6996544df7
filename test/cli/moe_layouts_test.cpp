// weft/test/cli/moe_layouts_test.cpp v1 — MoE models train the same at every layout: 10 fp32 steps of tiny
// Mixtral- and Qwen-MoE-style models with expert parallelism (and tensor, sequence, pipeline, context parallelism,
// the distributed optimizer, capacity dropping) against one rank, on losses, gradient norms and the routers'
// losses within 1e-5; checkpoints saved at ep = 2 resume at ep = 1 and tp = 2.
#include <gtest/gtest.h>

#include "cli_util.h"

using namespace weft;
using namespace weft::test;

namespace {

const std::vector<std::string> kKeys = {"loss", "grad_norm", "load_balancing_loss", "z_loss"};

// Four layers, so that pp = 2 with vpp = 2 has one per virtual stage; the Qwen-style model's layer 1 is dense.
std::string deck(const TempDir& dir, const std::string& prefix, bool qwen, const std::string& extra = "") {
  const std::string model = qwen ? "include = tiny-qwen2-moe.ini\n[model]\nnum_layers = 4\nnum_experts = 4\n"
                                 : "include = tiny-mixtral.ini\n[model]\nnum_layers = 4\n";
  return dir.write(str(qwen ? "qwen" : "mixtral", std::hash<std::string>{}(extra), ".ini"),
                   model + "hidden_size = 32\nvocab_size = 257\nmax_position_embeddings = 64\n"
                           "[moe]\naux_loss_coeff = 0.05\nz_loss_coeff = 0.01\n" + extra +
                           "[data]\nprefix = " + prefix + "\ntokenizer = bytes\nseq_length = 32\nsplit = 100,0,0\n"
                           "[train]\nmicro_batch_size = 2\nglobal_batch_size = 8\ntrain_iters = 10\nlr = 3e-3\n"
                           "lr_warmup_iters = 2\nlr_decay_style = cosine\nmin_lr = 3e-4\neval_iters = 0\nseed = 7\n");
}


std::vector<nlohmann::json> single_rank(const TempDir& dir, const std::string& d, const std::string& name) {
  const Result one = run_weft(dir, "train " + d + " --log.dir=" + dir.file(name));
  EXPECT_EQ(one.status, 0) << one.out << one.err;
  return train_lines(dir.file(name + "/metrics.jsonl"));
}

}  // namespace

TEST(MoeLayouts, ExpertParallelLayoutsGiveTheSingleRankRun) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  for (const bool qwen : {false, true}) {
    const std::string d = deck(dir, prefix, qwen);
    const auto ref = single_rank(dir, d, qwen ? "single_qwen" : "single_mixtral");
    ASSERT_EQ(ref.size(), 10u);
    expect_same_run(dir, d, "--parallel.ep=2", 2, ref, kKeys);
    expect_same_run(dir, d, "--parallel.ep=4", 4, ref, kKeys);
    expect_same_run(dir, d, "--parallel.ep=2 --parallel.tp=2", 4, ref, kKeys);
    expect_same_run(dir, d, "--parallel.ep=2 --parallel.distributed_optimizer=true --parallel.ddp_bucket_size=2000", 2,
                    ref, kKeys);
    expect_same_run(dir, d, "--parallel.ep=2 --parallel.pp=2", 4, ref, kKeys);
  }
  const std::string d = deck(dir, prefix, true);
  const auto ref = train_lines(dir.file("single_qwen/metrics.jsonl"));
  expect_same_run(dir, d, "--parallel.tp=2 --parallel.sequence_parallel=true", 2, ref, kKeys);
  expect_same_run(dir, d, "--parallel.ep=2 --parallel.tp=2 --parallel.sequence_parallel=true", 4, ref, kKeys);
  expect_same_run(dir, d, "--parallel.pp=2 --parallel.vpp=2", 2, ref, kKeys);
  expect_same_run(dir, d, "--parallel.cp=2 --parallel.ep=2", 2, ref, kKeys);
  expect_same_run(dir, d, "--parallel.ep=2 --parallel.tp=2 --parallel.distributed_optimizer=true", 4, ref, kKeys);
  expect_same_run(dir, d, "--train.recompute=full --parallel.ep=2", 2, ref, kKeys);
}

// Dropping past capacity depends only on each micro-batch's own tokens: at ep = 2 the same as on one rank.
TEST(MoeLayouts, CapacityDroppingMatchesAcrossExpertParallelism) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  for (const char* policy : {"probs", "position"}) {
    const std::string d = deck(dir, prefix, false,
                               str("expert_capacity_factor = 0.8\ntoken_drop_policy = ", policy,
                                   "\npad_expert_input_to_capacity = ",
                                   std::string(policy) == "position" ? "true" : "false", "\n"));
    const auto ref = single_rank(dir, d, str("single_", policy));
    const auto dropless = single_rank(dir, deck(dir, prefix, false), "dropless");
    EXPECT_NE(ref.back()["loss"], dropless.back()["loss"]) << "a capacity of 0.8 drops tokens";
    expect_same_run(dir, d, "--parallel.ep=2", 2, ref, kKeys);
  }
}

TEST(MoeLayouts, CheckpointsSavedAtEp2ResumeAtEp1AndTp2) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = deck(dir, prefix, true);
  ASSERT_EQ(run_weft(dir, "train " + d + " --log.dir=" + dir.file("full")).status, 0);
  ASSERT_EQ(run_weft(dir, "train " + d + " --parallel.ep=2 --parallel.distributed_optimizer=true "
                          "--train.exit_interval=5 --log.dir=" + dir.file("part") + " --checkpoint.save=" +
                          dir.file("ckpt"), 2).status, 0);
  ASSERT_EQ(run_weft(dir, "train " + d + " --parallel.ep=2 --train.exit_interval=5 --log.dir=" + dir.file("part_tp") +
                          " --checkpoint.save=" + dir.file("ckpt_tp"), 2).status, 0);
  const Result one = run_weft(dir, "train " + d + " --log.dir=" + dir.file("part") + " --checkpoint.load=" +
                                       dir.file("ckpt"));
  ASSERT_EQ(one.status, 0) << one.err;
  const Result tp = run_weft(dir, "train " + d + " --parallel.tp=2 --log.dir=" + dir.file("part_tp") +
                                      " --checkpoint.load=" + dir.file("ckpt_tp"), 2);
  ASSERT_EQ(tp.status, 0) << tp.err;
  expect_resumed_losses(dir.file("full"), dir.file("part"), "ep 2 → 1");
  expect_resumed_losses(dir.file("full"), dir.file("part_tp"), "ep 2 → tp 2");
}

TEST(MoeLayouts, BadExpertLayoutsAreClearErrors) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string moe = deck(dir, prefix, false);
  const std::string dense = dir.write("dense.ini", "include = tiny-llama.ini\n[model]\nvocab_size = 257\n"
                                                   "[data]\nprefix = " + prefix + "\ntokenizer = bytes\n"
                                                   "seq_length = 32\n[train]\nglobal_batch_size = 8\n"
                                                   "train_iters = 1\nlr = 1e-3\n");
  struct Case {
    std::string deck, args, key;
    int np;
  };
  for (const Case& c : std::vector<Case>{{moe, "--parallel.ep=3", "parallel.ep", 3},          // 4 experts
                                         {moe, "--parallel.ep=2 --parallel.tp=2", "parallel.ep", 2},  // dp·cp = 1
                                         {moe, "--parallel.etp=1 --parallel.tp=2", "parallel.etp", 2},
                                         {moe, "--moe.pad_expert_input_to_capacity=true", "moe.pad_expert_input", 1},
                                         {moe, "--model.moe_router_topk=5", "model.moe_router_topk", 1},
                                         {moe, "--moe.token_drop_policy=random", "moe.token_drop_policy", 1},
                                         {dense, "--parallel.ep=2", "parallel.ep", 2}}) {
    const Result r = run_weft(dir, "train " + c.deck + " " + c.args, c.np);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.key), std::string::npos) << c.args << "\n" << r.err;
  }
}
