// weft/test/cli/gpu_train_test.cpp v1 — bf16 training on the GPU follows the CPU's fp32 loss curve.
// Skips where weft has no GPU to run on (CI).
#include <gtest/gtest.h>

#include "cli_util.h"

using namespace weft;
using namespace weft::test;

TEST(GpuTraining, FiftyBf16StepsTrackTheFp32Curve) {
  TempDir dir;
  const std::string prefix = dir.file("moby");
  ASSERT_EQ(run_weft(dir, "preprocess --input " + source_dir() + "/inputs/corpus/moby-dick.jsonl --tokenizer bytes "
                          "--output-prefix " + prefix + " --append-eod").status, 0);
  // Head dim 64, so the tensor-core attention runs; GQA; two data-parallel ranks on the GPU run.
  const std::string deck = dir.write(
      "deck.ini", "[model]\nnum_layers = 2\nhidden_size = 256\nffn_hidden_size = 704\nnum_attention_heads = 4\n"
                  "num_query_groups = 2\nvocab_size = 257\nmax_position_embeddings = 256\n"
                  "[data]\nprefix = " + prefix + "\ntokenizer = bytes\nseq_length = 128\nsplit = 100,0,0\n"
                  "[train]\nmicro_batch_size = 8\nglobal_batch_size = 16\ntrain_iters = 50\nlr = 2e-3\nmin_lr = 2e-4\n"
                  "lr_warmup_iters = 5\nlr_decay_style = cosine\neval_iters = 0\nseed = 11\n");
  const Result gpu = run_weft(dir, "train " + deck + " --train.precision=bf16 --log.dir=" + dir.file("gpu"));
  if (gpu.status != 0 && (gpu.err.find("needs a GPU") != std::string::npos ||
                          gpu.err.find("built without") != std::string::npos))
    GTEST_SKIP() << "no GPU: " << gpu.err;
  ASSERT_EQ(gpu.status, 0) << gpu.out << gpu.err;
  const Result cpu = run_weft(dir, "train " + deck + " --log.dir=" + dir.file("cpu"), 2);
  ASSERT_EQ(cpu.status, 0) << cpu.err;
  const auto a = train_lines(dir.file("gpu/metrics.jsonl")), b = train_lines(dir.file("cpu/metrics.jsonl"));
  ASSERT_EQ(a.size(), 50u);
  ASSERT_EQ(b.size(), 50u);
  double worst = 0;
  for (size_t i = 0; i < 50; ++i) {
    const double x = a[i]["loss"], y = b[i]["loss"];
    worst = std::max(worst, std::abs(x - y) / y);
    EXPECT_LE(std::abs(x - y), 0.01 * y) << "step " << i + 1 << ": bf16 GPU " << x << ", fp32 CPU " << y;
  }
  std::printf("bf16 GPU vs fp32 CPU over 50 steps: worst relative loss difference %.4f%%\n", 100 * worst);
  EXPECT_LT(b.back()["loss"].get<double>(), b.front()["loss"].get<double>() - 1.0);
}
