// weft/test/unit/decks_test.cpp v1 — every deck in inputs/ loads, validates for the ranks its launch line names and,
// for GPUs, plans within an 80 GB card; every preset in inputs/models/ validates.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "config/deck.h"
#include "config/validate.h"
#include "test_util.h"
#include "train/memory_plan.h"
#include "train/setup.h"

namespace weft::test {
namespace {

namespace fs = std::filesystem;

// A GPU deck's plan must leave an 80 GB card (74.5 GiB) room for the CUDA context, NCCL's buffers and cuBLASLt's
// workspace, which the plan does not count: 2.5 GiB.
constexpr double kGpuPlanLimitGiB = 72.0;

// The decks: every .ini under inputs/ except the presets (inputs/models/) and the recipes decks include.
std::vector<fs::path> decks() {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(source_dir() + "/inputs")) {
    const std::string path = e.path().string();
    if (e.path().extension() == ".ini" && path.find("/models/") == std::string::npos &&
        path.find("/recipes/") == std::string::npos)
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The ranks of the launch line in the deck's header: "mpirun -np N" or "--nodes=A --ntasks-per-node=B"; 0 if none.
int launch_ranks(const fs::path& deck) {
  std::ifstream in(deck);
  const std::regex mpirun(R"(mpirun -np (\d+) )"), sbatch(R"(--nodes=(\d+) --ntasks-per-node=(\d+))");
  for (std::string line; std::getline(in, line) && line.rfind("#", 0) == 0;) {
    std::smatch m;
    if (std::regex_search(line, m, mpirun)) return std::stoi(m[1]);
    if (std::regex_search(line, m, sbatch)) return std::stoi(m[1]) * std::stoi(m[2]);
  }
  return 0;
}

TEST(Decks, EveryDeckValidatesAndFitsItsLayout) {
  const std::vector<fs::path> all = decks();
  ASSERT_GE(all.size(), 25u);  // the two demos and the examples
  for (const fs::path& deck : all) {
    SCOPED_TRACE(deck.string());
    const int ranks = launch_ranks(deck);
    ASSERT_GT(ranks, 0) << "the deck's header names no launch line (mpirun -np N, or sbatch --nodes --ntasks-per-node)";
    // HF weights and datasets are the user's; the included preset gives the shape the weights must have.
    Config cfg = load_config(deck.string(), {"--model.init=random"});
    resolve_model(cfg);
    ASSERT_NO_THROW(validate_config(cfg, ranks));
    const MemoryPlan plan = plan_memory(cfg, ranks);
    if (plan.gpu) {
      EXPECT_LE(plan.peak() / double(1 << 30), kGpuPlanLimitGiB) << plan.summary();
    }
  }
}

TEST(Decks, ExampleDecksCoverEveryFamilyAndMode) {
  const std::string dir = source_dir() + "/inputs/examples/";
  for (const char* family : {"llama2-7b", "llama3-8b", "mistral-7b", "qwen2-7b", "qwen1.5-moe-a2.7b", "mixtral-8x7b"}) {
    SCOPED_TRACE(family);
    for (const char* mode : {"-pretrain-4nodes", "-continue", "-sft"})
      EXPECT_TRUE(fs::exists(dir + family + mode + ".ini")) << mode;
    // Mixtral 8x7B's 47B parameters with their gradients and Adam state need about 750 GB: more than one node.
    if (std::string(family) != "mixtral-8x7b") {
      EXPECT_TRUE(fs::exists(dir + family + "-pretrain-1node.ini"));
    }
    Config sft = load_config(dir + family + "-sft.ini", {});
    EXPECT_TRUE(sft.data.sft);
    EXPECT_EQ(sft.model_init.rfind("hf:", 0), 0u);
    EXPECT_EQ(load_config(dir + family + "-continue.ini", {}).model_init.rfind("hf:", 0), 0u);
  }
}

TEST(Decks, EveryPresetValidates) {
  int presets = 0;
  for (const auto& e : fs::directory_iterator(source_dir() + "/inputs/models")) {
    SCOPED_TRACE(e.path().string());
    Config cfg = load_config(e.path().string(), {"--data.mock=true", "--data.seq_length=128",
                                                 "--train.global_batch_size=1", "--train.train_iters=1",
                                                 "--train.lr=1e-4"});
    ASSERT_NO_THROW(validate_config(cfg, 1));
    ++presets;
  }
  EXPECT_GE(presets, 15);
}

}  // namespace
}  // namespace weft::test
