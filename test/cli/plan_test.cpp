// weft/test/cli/plan_test.cpp v1 — the memory plan against what runs hold: the plan weft train prints at its start
// within 5 % of the tensors' measured peak (the CPU backend counts them as the CUDA allocator does) for every
// layout; a run that cannot fit stops at once saying why; `weft plan` prints the table.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>

#include "cli_util.h"

using namespace weft::test;

namespace {

// The bytes of "memory plan: 52.7 MiB per rank" in a run's output.
double planned_bytes(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(R"(memory plan: ([0-9.]+) (B|KiB|MiB|GiB))"))) return -1;
  const double units[] = {1, 1024, 1024.0 * 1024, 1024.0 * 1024 * 1024};
  const std::string u = m[2];
  return std::stod(m[1]) * units[u == "B" ? 0 : u == "KiB" ? 1 : u == "MiB" ? 2 : 3];
}

}  // namespace

TEST(MemoryPlan, PredictsThePeakOfEveryLayoutWithinFivePercent) {
  TempDir dir;
  const std::string d = source_dir() + "/inputs/demo.ini";
  ASSERT_EQ(run_weft(dir, "preprocess --input " + source_dir() + "/inputs/corpus/moby-dick.jsonl --tokenizer bytes "
                          "--output-prefix " + dir.file("moby") + " --append-eod").status, 0);
  const std::string common = " --data.prefix=" + dir.file("moby") + " --train.train_iters=3 "
                             "--train.lr_warmup_iters=1 --train.eval_interval=0 --log.dir=";
  const std::vector<std::pair<int, std::string>> layouts = {
      {2, ""},
      {2, "--parallel.tp=2"},
      {2, "--parallel.tp=2 --parallel.sequence_parallel=true"},
      {2, "--parallel.pp=2"},
      {4, "--parallel.pp=4 --train.global_batch_size=64"},
      {2, "--parallel.pp=2 --parallel.vpp=2"},
      {2, "--parallel.cp=2"},
      {2, "--parallel.distributed_optimizer=true"},
      {2, "--train.recompute=selective"},
      {2, "--train.recompute=full"},
  };
  for (size_t i = 0; i < layouts.size(); ++i) {
    const auto& [np, layout] = layouts[i];
    const std::string log = dir.file("run" + std::to_string(i));
    const Result r = run_weft(dir, "train " + d + common + log + " " + layout, np);
    ASSERT_EQ(r.status, 0) << layout << "\n" << r.err;
    const double plan = planned_bytes(r.out);
    ASSERT_GT(plan, 0) << r.out;
    // Rank 0 logs: the first pipeline stage, which holds the most in every layout here.
    const double peak = train_lines(log + "/metrics.jsonl").back()["peak_memory_gib"].get<double>() * (1 << 30);
    EXPECT_NEAR(plan, peak, 0.05 * peak) << layout << ": planned " << plan / (1 << 20) << " MiB, held "
                                         << peak / (1 << 20) << " MiB";
  }
}

// The llama3-8b preset on a machine without the memory used to run 75 s and die of std::bad_alloc.
TEST(MemoryPlan, ARunThatCannotFitStopsAtOnceSayingWhy) {
  TempDir dir;
  const std::string d = dir.write("big.ini", "include = llama3-8b.ini\n[data]\nmock = true\nseq_length = 4096\n"
                                             "[train]\nmicro_batch_size = 1\nglobal_batch_size = 1\ntrain_iters = 2\n"
                                             "lr = 1e-4\neval_iters = 0\n");
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = run_weft(dir, "train " + d + " --model.num_layers=320");  // 75B parameters: no host has it
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_LT(seconds, 20.0);
  EXPECT_NE(r.err.find("this run does not fit: memory plan: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("What would help: a smaller train.micro_batch_size, train.recompute = full"), std::string::npos)
      << r.err;
  const Result plan = run_weft(dir, "plan " + d + " --ranks 8 --parallel.tp=8");
  ASSERT_EQ(plan.status, 0) << plan.err;
  EXPECT_NE(plan.out.find("weft plan: " + d + " on 8 ranks, fp32 on the CPU"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("activations none/sel/full"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("step: "), std::string::npos) << plan.out;
}
