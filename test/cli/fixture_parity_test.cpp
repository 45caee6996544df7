// weft/test/cli/fixture_parity_test.cpp v1 — parity with transformers on fixtures that the GPU machine makes
// (test/reference/make_deepseek_fixtures.py, make_eval_fixtures.py; `jobscripts/gpu-check.sh deepseek-fixtures
// eval-fixtures`): DeepSeek-V2 logits, loss and round trip, multiple-choice log-likelihoods, greedy generation. Each
// test skips, and ctest shows cli_transformers_fixtures as skipped, until its fixture is committed.
#include <gtest/gtest.h>

#include <cmath>

#include "cli_util.h"
#include "io/npy.h"
#include "io/safetensors.h"

using namespace weft;
using namespace weft::test;
namespace fs = std::filesystem;

namespace {

std::string hf(const std::string& c) { return fixture("hf/" + c); }

}  // namespace

TEST(TransformersFixtures, DeepseekV2LogitsLossAndRoundTrip) {
  for (const char* c : {"deepseek_v2", "deepseek_v2_lite"}) {
    if (!fs::exists(hf(c) + "/reference.json")) GTEST_SKIP() << hf(c) << " is not made yet (make_deepseek_fixtures.py)";
    const double loss = nlohmann::json::parse(slurp(hf(c) + "/reference.json"))["loss"];
    for (const std::string extra : {"", " --ep 2"})
      for (int np : {1, 2}) {
        if (!extra.empty() && np == 1) continue;
        TempDir dir;
        const Result r = run_weft(dir, "forward --model " + hf(c) + " --input " + hf(c) + "/input_ids.npy --output " +
                                           dir.file("logits.npy") + extra, np);
        ASSERT_EQ(r.status, 0) << c << r.err;
        EXPECT_LE(relative_max_error(read_npy(dir.file("logits.npy")), read_npy(hf(c) + "/logits.npy")), 1e-4)
            << c << " np " << np << extra;
        EXPECT_NEAR(printed_loss(r.out), loss, 1e-5) << c << " np " << np << extra;
      }
    TempDir dir;
    ASSERT_EQ(run_weft(dir, str("convert --from ", hf(c), " --to ", dir.file("native"), " --format native")).status, 0);
    ASSERT_EQ(run_weft(dir, str("convert --from ", dir.file("native"), " --to ", dir.file("hf"), " --format hf"), 2)
                  .status, 0);
    const SafetensorsDir a(hf(c)), b(dir.file("hf"));
    EXPECT_EQ(a.names(), b.names()) << c;
    for (const std::string& name : a.names()) {
      const auto& ia = a.file_of(name).info(name);
      ASSERT_EQ(ia.shape, b.file_of(name).info(name).shape) << c << " " << name;
      EXPECT_EQ(0, std::memcmp(a.file_of(name).raw(name), b.file_of(name).raw(name), ia.end - ia.begin))
          << c << " " << name;
    }
  }
}

TEST(TransformersFixtures, MultipleChoiceLogLikelihoods) {
  const std::string ref_file = hf("llama2/task_reference.json");
  if (!fs::exists(ref_file)) GTEST_SKIP() << ref_file << " is not made yet (make_eval_fixtures.py)";
  TempDir dir;
  const Result r = run_weft(dir, "eval --model " + hf("llama2") + " --task " + hf("llama2/task.jsonl") +
                                     " --tokenizer bytes --output " + dir.file("task.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto got = nlohmann::json::parse(slurp(dir.file("task.json"))), ref = nlohmann::json::parse(slurp(ref_file));
  ASSERT_EQ(got["per_item"].size(), ref["per_item"].size());
  for (size_t i = 0; i < ref["per_item"].size(); ++i) {
    const auto &g = got["per_item"][i]["log_likelihoods"], &w = ref["per_item"][i]["log_likelihoods"];
    ASSERT_EQ(g.size(), w.size());
    for (size_t c = 0; c < w.size(); ++c)
      EXPECT_NEAR(g[c].get<double>(), w[c].get<double>(), 1e-4 * std::abs(w[c].get<double>())) << i << " " << c;
  }
  EXPECT_EQ(got["acc"], ref["acc"]);
  EXPECT_EQ(got["acc_norm"], ref["acc_norm"]);
}

TEST(TransformersFixtures, GreedyGenerationEqualsTransformers) {
  const std::string ref_file = hf("llama2/generate_reference.json");
  if (!fs::exists(ref_file)) GTEST_SKIP() << ref_file << " is not made yet (make_eval_fixtures.py)";
  const auto ref = nlohmann::json::parse(slurp(ref_file));
  TempDir dir;
  std::vector<int64_t> prompt;
  for (const auto& row : ref["prompt"])
    for (const auto& id : row) prompt.push_back(id.get<int64_t>());
  write_npy(dir.file("prompt.npy"), Tensor::from_vector(prompt, {int64_t(ref["prompt"].size()), 7}));
  for (int np : {1, 2}) {
    const Result r = run_weft(dir, "generate --model " + hf("llama2") + " --prompt-ids " + dir.file("prompt.npy") +
                                       " --max-new-tokens 8 --eos 100000 --output " + dir.file("out.npy"), np);
    ASSERT_EQ(r.status, 0) << r.err;
    std::vector<double> want;
    for (const auto& row : ref["tokens"])
      for (const auto& id : row) want.push_back(id.get<double>());
    EXPECT_EQ(read_npy(dir.file("out.npy")).to_doubles(), want) << "np " << np;
  }
}
