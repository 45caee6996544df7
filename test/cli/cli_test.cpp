// weft/test/cli/cli_test.cpp v1 — the weft executable end to end: data-parallel equivalence, `weft samples`
// against Megatron's own samples, deck errors as users see them, help, and a short training run.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_util.h"

using namespace weft::test;

namespace {

std::string tiny_deck(const TempDir& dir, const std::string& prefix, const std::string& extra) {
  return dir.write("deck.ini", "include = " + source_dir() + "/inputs/models/tiny-llama.ini\n"
                   "[model]\nvocab_size = 257\n"
                   "[data]\nprefix = " + prefix + "\nseq_length = 32\nsplit = 98,2,0\ntokenizer = bytes\n"
                   "[train]\nlr = 1e-3\nmin_lr = 1e-4\nlr_warmup_iters = 2\nlr_decay_style = cosine\n"
                   "train_iters = 10\neval_interval = 5\neval_iters = 1\nseed = 7\n" + extra);
}

}  // namespace


TEST(Cli, DataParallelMatchesGradientAccumulation) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string deck = tiny_deck(dir, prefix, "global_batch_size = 4\nmicro_batch_size = 2\n");
  const Result dp2 = run_weft(dir, "train " + deck + " --log.dir=" + dir.file("dp2"), 2);
  ASSERT_EQ(dp2.status, 0) << dp2.out << dp2.err;
  const Result dp1 = run_weft(dir, "train " + deck + " --log.dir=" + dir.file("dp1"), 1);  // two accumulation steps
  ASSERT_EQ(dp1.status, 0) << dp1.out << dp1.err;
  EXPECT_NE(dp1.out.find("2 micro-batches"), std::string::npos) << dp1.out;
  const auto a = records(dir.file("dp2/metrics.jsonl")), b = records(dir.file("dp1/metrics.jsonl"));
  ASSERT_EQ(a.size(), b.size());
  int steps = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].contains("loss")) {
      EXPECT_NEAR(a[i]["val_loss"].get<double>(), b[i]["val_loss"].get<double>(),
                  1e-5 * b[i]["val_loss"].get<double>());
      continue;
    }
    ++steps;
    const double la = a[i]["loss"], lb = b[i]["loss"];
    EXPECT_NEAR(la, lb, 1e-5 * std::abs(lb)) << "iteration " << a[i]["iteration"];
    EXPECT_NEAR(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>(),
                1e-5 * b[i]["grad_norm"].get<double>());
    EXPECT_EQ(a[i]["lr"], b[i]["lr"]);
  }
  EXPECT_EQ(steps, 10);
}

TEST(Cli, SamplesReproduceMegatronGptDataset) {
  TempDir dir;
  const auto ref = nlohmann::json::parse(slurp(fixture("megatron/tiny_uint16_s16_gptdataset.json")));
  const std::string deck = dir.write("deck.ini", "include = tiny-llama.ini\n[model]\nvocab_size = 32000\n"
                                     "[data]\nprefix = " + fixture("megatron/tiny_uint16") +
                                     "\nseq_length = 16\nsplit = 100,0,0\n"
                                     "[train]\nglobal_batch_size = 8\ntrain_iters = 8\nlr = 1e-4\nseed = 1234\n");
  const Result r = run_weft(dir, "samples " + deck + " --num 64 --output " + dir.file("s.jsonl"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto got = read_jsonl(dir.file("s.jsonl"));
  ASSERT_EQ(got.size(), 64u);
  for (size_t i = 0; i < 64; ++i) {
    const auto& want = ref["samples"][i];
    EXPECT_EQ(got[i]["tokens"], want["tokens"]) << "sample " << i;
    EXPECT_EQ(got[i]["labels"], want["labels"]) << "sample " << i;
    EXPECT_EQ(got[i]["loss_mask"], want["loss_mask"]) << "sample " << i;
  }
}

TEST(Cli, BadDecksExitWithOneLineNamingKeyAndLine) {
  TempDir dir;
  const std::string base = "include = tiny-llama.ini\n[data]\nprefix = x\nseq_length = 32\n"
                           "[train]\nglobal_batch_size = 4\ntrain_iters = 1\nlr = 1e-4\n";
  struct Case {
    std::string extra, want_key, want_where;
    int np;
  };
  const std::vector<Case> cases = {
      {"[model]\nhidden = 3\n", "model.hidden", ":10", 1},                   // unknown key
      {"[train]\nlr_warmup_iters = soon\n", "train.lr_warmup_iters", ":10", 1},  // wrong type
      {"[parallel]\ntp = 3\n", "parallel.tp", ":10", 3},                      // heads not divisible by tp
      {"[parallel]\ndp = 4\n", "parallel.dp", ":10", 2},                      // world ≠ tp·pp·cp·dp
      {"[train]\nmicro_batch_size = 3\n", "train.global_batch_size", ":6", 2},  // gbs % (mbs·dp)
      {"", "data.prefix", ":3", 2},                                           // no such dataset
      {"[train]\nrecompute = attention\n", "train.recompute", ":10", 1},     // not one of the choices
      {"[parallel]\nddp_bucket_size = -1\n", "parallel.ddp_bucket_size", ":10", 1},  // negative
  };
  for (const Case& c : cases) {
    const std::string deck = dir.write("bad.ini", base + c.extra);
    const Result r = run_weft(dir, "train " + deck, c.np);
    EXPECT_NE(r.status, 0) << c.want_key;
    const std::string weft_lines = [&] {
      std::string lines;
      std::istringstream in(r.err);
      for (std::string l; std::getline(in, l);)
        if (l.rfind("weft:", 0) == 0) lines += l + "\n";
      return lines;
    }();
    EXPECT_EQ(std::count(weft_lines.begin(), weft_lines.end(), '\n'), 1) << r.err;
    EXPECT_NE(weft_lines.find(c.want_key), std::string::npos) << weft_lines;
    EXPECT_NE(weft_lines.find(deck + c.want_where), std::string::npos) << weft_lines;
  }
  // Missing required key: names the key and the deck.
  const std::string deck = dir.write("missing.ini", "include = tiny-llama.ini\n[data]\nseq_length = 32\n");
  const Result r = run_weft(dir, "train " + deck);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("missing required key 'train.global_batch_size'"), std::string::npos) << r.err;
}

TEST(Cli, TrainHelpListsEveryKeyWithTypeAndDefault) {
  TempDir dir;
  const Result r = run_weft(dir, "train --help");
  ASSERT_EQ(r.status, 0);
  for (const char* s : {"[model]", "num_query_groups", "int (=0)", "rope_scaling.type", "[train]", "lr_decay_style",
                        "constant|linear|cosine (=linear)", "[parallel]", "[data]", "shuffle", "bool (=true)",
                        "(required)", "[log]"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " missing from:\n" << r.out;
}

TEST(Cli, ShortRunLowersTheLossAndWritesMetrics) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string deck = tiny_deck(dir, prefix, "global_batch_size = 8\nmicro_batch_size = 4\n");
  const Result r = run_weft(dir, "train " + deck + " --train.train_iters=30 --log.dir=" + dir.file("run") +
                          " --log.interval=5 --train.lr_decay_style=constant --train.eval_interval=0", 2);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto lines = read_jsonl(dir.file("run/metrics.jsonl"));
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0]["run"]["ranks"], 2) << "a run's first line says what ran";
  const auto m = records(dir.file("run/metrics.jsonl"));
  ASSERT_GE(m.size(), 6u);
  for (const char* key : {"iteration", "loss", "lr", "grad_norm", "tokens_per_s"}) EXPECT_TRUE(m[0].contains(key));
  EXPECT_EQ(m[0]["iteration"], 5);
  EXPECT_LT(m[5]["loss"].get<double>(), m[0]["loss"].get<double>() - 0.5) << r.out;
  EXPECT_NE(r.out.find("ETA"), std::string::npos);
}

// weft --version names the version, the commit and the libraries it runs on.
TEST(Cli, VersionNamesTheBuild) {
  TempDir dir;
  const Result r = run_weft(dir, "--version");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* want : {"weft 0.", "(commit ", "MPI: ", "GPU backend: "})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " missing from " << r.out;
}
