// weft/test/cli/weights_test.cpp v3 — HuggingFace parity (logits, loss, MoE routers' losses, 20 training steps),
// HF → native → HF round trip, exact resume, and clear errors for broken checkpoints. References come from
// test/reference/make_hf_fixtures.py and make_moe_fixtures.py (transformers 5.17 / torch 2.11, on the CPU in float32).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "cli_util.h"
#include "io/npy.h"
#include "io/safetensors.h"

using namespace weft;
using namespace weft::test;
namespace fs = std::filesystem;

namespace {

const char* kCases[] = {"llama2", "llama31", "mistral", "qwen2", "mixtral", "qwen2_moe", "qwen2_moe_norm"};
const char* kMoeCases[] = {"mixtral", "qwen2_moe", "qwen2_moe_norm"};

std::string hf(const std::string& c) { return fixture("hf/" + c); }

double reference_loss(const std::string& c) {
  return nlohmann::json::parse(slurp(hf(c) + "/reference.json"))["loss"].get<double>();
}

// The mean over the MoE layers of a per-layer list in reference.json.
double reference_mean(const std::string& c, const char* key) {
  const auto list = nlohmann::json::parse(slurp(hf(c) + "/reference.json"))[key];
  double sum = 0;
  for (const auto& v : list) sum += v.get<double>();
  return sum / double(list.size());
}

}  // namespace

TEST(HfParity, LogitsAndLossMatchTransformers) {
  for (const char* c : kCases)
    for (int np : {1, 2}) {  // np = 2 splits the model tensor-parallel in two
      TempDir dir;
      const Result r = run_weft(dir, "forward --model " + hf(c) + " --input " + hf(c) + "/input_ids.npy --output " +
                                         dir.file("logits.npy"), np);
      ASSERT_EQ(r.status, 0) << c << " np " << np << r.err;
      const Tensor ours = read_npy(dir.file("logits.npy")), ref = read_npy(hf(c) + "/logits.npy");
      ASSERT_EQ(ours.shape(), ref.shape()) << c;
      EXPECT_LE(relative_max_error(ours, ref), 1e-4) << c << " np " << np;
      EXPECT_NEAR(printed_loss(r.out), reference_loss(c), 1e-5) << c << " np " << np;
    }
}

// The MoE fixtures' routers: weft's load-balancing loss (Megatron's form) and z-loss equal those computed from
// transformers' own router logits; and the logits hold with the experts split over two ranks (ep = 2).
TEST(HfParity, MoeRouterLossesAndExpertParallelLogits) {
  for (const char* c : kMoeCases) {
    TempDir dir;
    const Result r = run_weft(dir, "forward --model " + hf(c) + " --input " + hf(c) + "/input_ids.npy --output " +
                                       dir.file("logits.npy") + " --ep 2", 2);
    ASSERT_EQ(r.status, 0) << c << r.err;
    EXPECT_LE(relative_max_error(read_npy(dir.file("logits.npy")), read_npy(hf(c) + "/logits.npy")), 1e-4) << c;
    EXPECT_NEAR(printed_loss(r.out), reference_loss(c), 1e-5) << c;
    for (const char* key : {"load_balancing_loss", "z_loss"})
      EXPECT_NEAR(printed_loss(r.out, key), reference_mean(c, key), 1e-5 * reference_mean(c, key)) << c << " " << key;
  }
}

TEST(HfParity, TwentyTrainingStepsMatchAPyTorchLoop) {
  TempDir dir;
  const auto ref = nlohmann::json::parse(slurp(fixture("hf/train/reference.json")));
  const std::string deck = dir.write(
      "deck.ini", "[model]\ninit = hf:" + hf(ref["model"]) + "\n[data]\nprefix = " + fixture("hf/train/stream") +
                      "\nseq_length = 32\nshuffle = false\nsplit = 100,0,0\n"
                      "[train]\nmicro_batch_size = 4\nglobal_batch_size = 4\ntrain_iters = 20\nlr = 1e-3\n"
                      "lr_decay_style = constant\nadam_beta1 = 0.9\nadam_beta2 = 0.95\nadam_eps = 1e-8\n"
                      "weight_decay = 0.1\nclip_grad = 1.0\neval_iters = 0\n[log]\ndir = " + dir.file("run") + "\n");
  const Result r = run_weft(dir, "train " + deck);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto lines = train_lines(dir.file("run/metrics.jsonl"));
  ASSERT_EQ(lines.size(), 20u);
  for (size_t i = 0; i < 20; ++i) {
    const double want = ref["losses"][i], got = lines[i]["loss"];
    EXPECT_NEAR(got, want, 1e-4 * std::abs(want)) << "step " << i + 1;
    const double want_norm = ref["grad_norms"][i], got_norm = lines[i]["grad_norm"];
    EXPECT_NEAR(got_norm, want_norm, 1e-3 * want_norm) << "grad norm, step " << i + 1;
  }
}

TEST(Convert, HfToNativeToHfIsBitIdentical) {
  for (const char* c : kCases) {
    TempDir dir;
    ASSERT_EQ(run_weft(dir, str("convert --from ", hf(c), " --to ", dir.file("native"), " --format native")).status, 0);
    // Back out on two ranks: the export gathers tensor-parallel shards.
    const Result r = run_weft(dir, str("convert --from ", dir.file("native"), " --to ", dir.file("hf"),
                                       " --format hf --shard-size 100KB"), 2);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(dir.file("hf/model.safetensors.index.json"))) << "100 KB shards must split the model";
    const SafetensorsDir a(hf(c)), b(dir.file("hf"));
    EXPECT_EQ(a.names(), b.names()) << c;
    for (const std::string& name : a.names()) {
      const auto& ia = a.file_of(name).info(name);
      const auto& ib = b.file_of(name).info(name);
      ASSERT_EQ(ia.shape, ib.shape) << c << " " << name;
      ASSERT_EQ(ia.dtype, ib.dtype) << c << " " << name;
      EXPECT_EQ(0, std::memcmp(a.file_of(name).raw(name), b.file_of(name).raw(name), ia.end - ia.begin))
          << c << " " << name;
    }
    // The exported directory is a model weft (and transformers) can run: same loss.
    const Result f = run_weft(dir, "forward --model " + dir.file("hf") + " --input " + hf(c) + "/input_ids.npy");
    EXPECT_NEAR(printed_loss(f.out), reference_loss(c), 1e-5) << c;
  }
}

namespace {

std::string resume_deck(const TempDir& dir, const std::string& extra) {
  return dir.write("deck.ini", "[model]\ninit = hf:" + hf("qwen2") + "\n[data]\nprefix = " +
                                   fixture("hf/train/stream") + "\nseq_length = 16\nsplit = 100,0,0\n"
                                   "[train]\nmicro_batch_size = 2\nglobal_batch_size = 4\ntrain_iters = 10\nlr = 3e-3\n"
                                   "lr_warmup_iters = 3\nlr_decay_style = cosine\nmin_lr = 1e-4\neval_iters = 0\n" +
                                   extra);
}

}  // namespace

TEST(Checkpoint, ResumeIsBitExact) {
  TempDir dir;
  const std::string deck = resume_deck(dir, "");
  ASSERT_EQ(run_weft(dir, "train " + deck + " --log.dir=" + dir.file("full"), 2).status, 0);
  const Result first = run_weft(dir, "train " + deck + " --log.dir=" + dir.file("part") + " --train.exit_interval=5 "
                                     "--checkpoint.save=" + dir.file("ckpt"), 2);
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_EQ(slurp(dir.file("ckpt/latest")), "iter_0000005\n");
  const Result second = run_weft(dir, "train " + deck + " --log.dir=" + dir.file("part") + " --checkpoint.load=" +
                                      dir.file("ckpt"), 2);
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_NE(second.out.find("resumed"), std::string::npos);
  const auto full = train_lines(dir.file("full/metrics.jsonl")), part = train_lines(dir.file("part/metrics.jsonl"));
  ASSERT_EQ(full.size(), 10u);
  ASSERT_EQ(part.size(), 10u);  // 5 lines before the exit, 5 appended after the resume
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(part[i]["iteration"], full[i]["iteration"]);
    EXPECT_EQ(part[i]["loss"].get<double>(), full[i]["loss"].get<double>()) << "iteration " << i + 1;
    EXPECT_EQ(part[i]["grad_norm"].get<double>(), full[i]["grad_norm"].get<double>()) << "iteration " << i + 1;
    EXPECT_EQ(part[i]["lr"].get<double>(), full[i]["lr"].get<double>());
  }
}

TEST(Checkpoint, ReshardsAcrossTensorAndDataParallelLayouts) {
  TempDir dir;
  const std::string deck = resume_deck(dir, "");
  ASSERT_EQ(run_weft(dir, "train " + deck + " --log.dir=" + dir.file("full"), 1).status, 0);
  // Save at tp=2 (dp=1), resume at tp=1 with dp=2.
  ASSERT_EQ(run_weft(dir, "train " + deck + " --log.dir=" + dir.file("part") + " --parallel.tp=2 "
                          "--train.exit_interval=5 --checkpoint.save=" + dir.file("ckpt"), 2).status, 0);
  const Result r = run_weft(dir, "train " + deck + " --log.dir=" + dir.file("part") + " --checkpoint.load=" +
                                 dir.file("ckpt"), 2);
  ASSERT_EQ(r.status, 0) << r.err;
  expect_resumed_losses(dir.file("full"), dir.file("part"));
}

TEST(CheckpointErrors, MissingLatestAndModelMismatch) {
  TempDir dir;
  fs::create_directories(dir.file("empty"));
  const std::string deck = resume_deck(dir, "");
  Result r = run_weft(dir, "train " + deck + " --checkpoint.load=" + dir.file("empty"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("no 'latest' marker"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(dir.file("empty")), std::string::npos) << r.err;
  // Resuming the deck's qwen2 model from a checkpoint of another model (llama2: no qkv bias, untied).
  ASSERT_EQ(run_weft(dir, str("convert --from ", hf("llama2"), " --to ", dir.file("llama2"), " --format native")).status,
            0);
  r = run_weft(dir, "train " + deck + " --checkpoint.load=" + dir.file("llama2"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("saved model has family = \"llama\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("config/checkpoint mismatch"), std::string::npos) << r.err;
  // A deck that contradicts the HF config it initialises from.
  r = run_weft(dir, "train " + deck + " --model.hidden_size=128");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("model.hidden_size"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("says 64"), std::string::npos) << r.err;
}
