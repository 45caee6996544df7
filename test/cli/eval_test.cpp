// weft/test/cli/eval_test.cpp v1 — `weft eval`: the perplexity of a checkpoint equals training's validation loss at
// that iteration; multiple-choice log-likelihoods equal those worked out from `weft forward`'s logits (themselves
// tested against transformers), with lm-evaluation-harness's pair encoding, acc and acc_norm.
#include <gtest/gtest.h>

#include <cmath>

#include "cli_util.h"
#include "io/npy.h"

using namespace weft;
using namespace weft::test;

namespace {

std::string short_demo(const std::string& prefix) {
  return "--data.prefix=" + prefix + " --data.seq_length=64 --train.train_iters=8 --train.lr_warmup_iters=2 "
         "--train.eval_interval=4 --train.eval_iters=2";
}

}  // namespace

TEST(Eval, PerplexityEqualsTrainingsValidationLoss) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir), deck = source_dir() + "/inputs/demo.ini";
  Result r = run_weft(dir, "train " + deck + " " + short_demo(prefix) + " --checkpoint.save=" + dir.file("ckpt") +
                               " --checkpoint.save_interval=4 --log.dir=" + dir.file("log"), 2);
  ASSERT_EQ(r.status, 0) << r.err;
  double val4 = NAN;
  for (const auto& j : records(dir.file("log/metrics.jsonl")))
    if (j.contains("val_loss") && j["iteration"] == 4) val4 = j["val_loss"];
  // The checkpoint at iteration 4 on the samples of the first validation, in the deck's layout (2 ranks: dp 2).
  r = run_weft(dir, "eval " + deck + " --model " + dir.file("ckpt/iter_0000004") + " " + short_demo(prefix) +
                        " --output " + dir.file("eval.json"), 2);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto report = nlohmann::json::parse(slurp(dir.file("eval.json")));
  EXPECT_EQ(report["loss"].get<double>(), val4);
  EXPECT_NEAR(report["perplexity"].get<double>(), std::exp(val4), 1e-12 * std::exp(val4));
  EXPECT_EQ(report["samples"], 64);
  // Another layout, the same loss within the CPU backend's 1e-5.
  r = run_weft(dir, "eval " + deck + " --model " + dir.file("ckpt/iter_0000004") + " " + short_demo(prefix) +
                        " --parallel.tp=2 --output " + dir.file("eval_tp.json"), 2);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NEAR(nlohmann::json::parse(slurp(dir.file("eval_tp.json")))["loss"].get<double>(), val4, 1e-5 * val4);
  // A deck without validation says so.
  r = run_weft(dir, "eval " + deck + " --model " + dir.file("ckpt/iter_0000004") + " " + short_demo(prefix) +
                        " --train.eval_iters=0");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no validation data"), std::string::npos) << r.err;
}

namespace {

// Σ log softmax(logits[i-1])[ids[i]] over the continuation tokens, from `weft forward` on the whole text's ids.
double reference_log_likelihood(const TempDir& dir, const std::string& model, const std::string& context,
                                const std::string& choice) {
  std::vector<int64_t> ids;
  for (unsigned char b : context + choice) ids.push_back(b);
  const size_t first = context.size();
  write_npy(dir.file("ids.npy"), Tensor::from_vector(ids, {1, int64_t(ids.size())}));
  const Result r = run_weft(dir, "forward --model " + model + " --input " + dir.file("ids.npy") + " --output " +
                                     dir.file("logits.npy"));
  EXPECT_EQ(r.status, 0) << r.err;
  const Tensor logits = read_npy(dir.file("logits.npy"));
  const int64_t vocab = logits.size(2);
  double ll = 0;
  for (size_t i = first; i < ids.size(); ++i) {
    const float* row = logits.data<float>() + (i - 1) * vocab;
    double m = -INFINITY, sum = 0;
    for (int64_t v = 0; v < vocab; ++v) m = std::max(m, double(row[v]));
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - m);
    ll += double(row[ids[i]]) - m - std::log(sum);
  }
  return ll;
}

}  // namespace

TEST(Eval, MultipleChoiceScoresByLogLikelihood) {
  TempDir dir;
  const std::string model = fixture("hf/llama2");
  // The contexts' trailing spaces move to the choices (lm-evaluation-harness); choices of different lengths make
  // acc_norm differ from acc.
  const std::vector<std::tuple<std::string, std::vector<std::string>, int>> items = {
      {"The whale is a ", {"mammal", "fish", "very large bird of the sea"}, 0},
      {"Call me", {" Ishmael.", " Ahab.", " Queequeg, the harpooneer."}, 2},
      {"Two plus two is", {" four", " five", " twenty-two", " 4"}, 1},
  };
  std::string task;
  for (const auto& [context, choices, answer] : items)
    task += nlohmann::json({{"context", context}, {"choices", choices}, {"answer", answer}}).dump() + "\n";
  const std::string file = dir.write("task.jsonl", task);
  for (int np : {1, 2}) {
    const Result r = run_weft(dir, "eval --model " + model + " --task " + file + " --tokenizer bytes --output " +
                                       dir.file("task.json"), np);
    ASSERT_EQ(r.status, 0) << r.err;
    const auto report = nlohmann::json::parse(slurp(dir.file("task.json")));
    ASSERT_EQ(report["items"], 3);
    int correct = 0, correct_norm = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const auto& [context, choices, answer] = items[i];
      const auto& got = report["per_item"][i]["log_likelihoods"];
      ASSERT_EQ(got.size(), choices.size());
      size_t best = 0, best_norm = 0;
      std::vector<double> want;
      for (size_t c = 0; c < choices.size(); ++c) {
        // The trailing space of a context belongs to the choice.
        const bool space = context.back() == ' ';
        want.push_back(reference_log_likelihood(dir, model, space ? context.substr(0, context.size() - 1) : context,
                                                space ? " " + choices[c] : choices[c]));
        EXPECT_NEAR(got[c].get<double>(), want[c], 1e-4 * std::abs(want[c])) << "item " << i << " choice " << c;
        if (want[c] > want[best]) best = c;
        if (want[c] / double(choices[c].size()) > want[best_norm] / double(choices[best_norm].size())) best_norm = c;
      }
      EXPECT_EQ(report["per_item"][i]["prediction"], best);
      EXPECT_EQ(report["per_item"][i]["prediction_norm"], best_norm);
      correct += int(best) == answer;
      correct_norm += int(best_norm) == answer;
    }
    EXPECT_DOUBLE_EQ(report["acc"].get<double>(), correct / 3.0) << "np " << np;
    EXPECT_DOUBLE_EQ(report["acc_norm"].get<double>(), correct_norm / 3.0) << "np " << np;
  }
  const std::string bad = dir.write("bad.jsonl", "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0}\n"
                                                 "{\"context\": \"a\", \"choices\": [\"b\"], \"answer\": 0}\n");
  const Result r = run_weft(dir, "eval --model " + model + " --task " + bad + " --tokenizer bytes");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("bad.jsonl:2: expected {\"context\""), std::string::npos) << r.err;
}

// --data and --jsonl: the loss over windows of seq + 1 tokens of the token stream, the mean of `weft forward`'s
// per-token losses on the same windows, from a Megatron dataset and from the JSONL it was made of.
TEST(Eval, DatasetLossIsTheMeanOverWindowsOfTheTokenStream) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir), jsonl = source_dir() + "/inputs/corpus/moby-dick.jsonl";
  const std::string model = fixture("hf/llama2");
  Result r = run_weft(dir, "eval --model " + model + " --data " + prefix + " --seq-length 32 --max-samples 20 --output " +
                               dir.file("data.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_weft(dir, "eval --model " + model + " --jsonl " + jsonl + " --tokenizer bytes --seq-length 32 --max-samples 20 "
                    "--output " + dir.file("jsonl.json"), 2);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto a = nlohmann::json::parse(slurp(dir.file("data.json"))), b = nlohmann::json::parse(slurp(dir.file("jsonl.json")));
  EXPECT_EQ(a["samples"], 20);
  EXPECT_NEAR(a["loss"].get<double>(), b["loss"].get<double>(), 1e-6 * a["loss"].get<double>());
  // The same windows through weft forward: rows of 33 tokens overlapping by one, the last position of each unscored.
  std::vector<int64_t> stream;
  std::ifstream in(jsonl);
  for (std::string line; std::getline(in, line) && stream.size() < 20 * 32 + 1;) {
    for (unsigned char c : nlohmann::json::parse(line)["text"].get<std::string>()) stream.push_back(c);
    stream.push_back(256);
  }
  std::vector<int64_t> rows;
  for (int i = 0; i < 20; ++i) rows.insert(rows.end(), stream.begin() + i * 32, stream.begin() + i * 32 + 33);
  write_npy(dir.file("windows.npy"), Tensor::from_vector(rows, {20, 33}));
  r = run_weft(dir, "forward --model " + model + " --input " + dir.file("windows.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  const double forward_loss = printed_loss(r.out);
  EXPECT_NEAR(a["loss"].get<double>(), forward_loss, 1e-6 * forward_loss);
  // A window longer than the model's positions is refused.
  r = run_weft(dir, "eval --model " + model + " --data " + prefix + " --seq-length 300");
  EXPECT_NE(r.status, 0);
}
