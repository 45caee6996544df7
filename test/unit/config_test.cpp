// weft/test/unit/config_test.cpp v2 — decks: includes, overrides, and one clear error per kind of mistake.
#include <gtest/gtest.h>

#include "config/deck.h"
#include "config/validate.h"
#include "test_util.h"

using namespace weft;
using weft::test::TempDir;

namespace {

const char* kModel = R"(# a tiny preset
[model]
num_layers = 2
hidden_size = 64
ffn_hidden_size = 128
num_attention_heads = 4
num_query_groups = 2
vocab_size = 512
max_position_embeddings = 64
)";

const char* kDeck = R"(include = tiny.ini
[data]
prefix = /data/none
seq_length = 32
[train]
global_batch_size = 8
micro_batch_size = 2
train_iters = 10
lr = 3e-4
)";

// The ConfigError message of `f`, or "" if it did not throw one.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

void expect_mentions(const std::string& msg, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(msg.empty()) << "expected a ConfigError";
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' missing from: " << msg;
}

}  // namespace

TEST(Deck, IncludeOverrideAndCommandLine) {
  TempDir dir;
  dir.write("tiny.ini", kModel);
  const std::string deck = dir.write("run.ini", std::string(kDeck) + "[model]\nhidden_size = 128\n");
  const Config c = load_config(deck, {"--train.lr=1e-3", "--parallel.tp", "2"});
  EXPECT_EQ(c.model.num_layers, 2);        // from the include
  EXPECT_EQ(c.model.hidden, 128);     // the deck overrides its include
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-3);      // the command line overrides the deck
  EXPECT_EQ(c.parallel.tp, 2);
  EXPECT_EQ(c.train.micro_batch_size, 2);
  EXPECT_EQ(c.data.split, "969,30,1");     // default
  EXPECT_EQ(c.origin.at("model.num_layers"), dir.file("tiny.ini") + ":3");
  EXPECT_EQ(c.origin.at("train.lr"), "command line");
  EXPECT_NO_THROW(validate_config(c, 2));
}

TEST(Deck, PresetsResolveFromInputsModels) {
  TempDir dir;
  const std::string deck = dir.write("run.ini", std::string("include = llama3-8b.ini\n") + (kDeck + 19));
  const Config c = load_config(deck, {});
  EXPECT_EQ(c.model.hidden, 4096);
  EXPECT_EQ(c.model.groups, 8);
}

TEST(DeckErrors, UnknownKeyNamesKeyFileLineAndSuggests) {
  TempDir dir;
  dir.write("tiny.ini", kModel);
  const std::string deck = dir.write("run.ini", std::string(kDeck) + "[model]\nhiden_size = 64\n");
  expect_mentions(error_of([&] { load_config(deck, {}); }),
                  {deck + ":11", "unknown key 'model.hiden_size'", "model.hidden_size"});
  const std::string clean = dir.write("clean.ini", kDeck);
  expect_mentions(error_of([&] { load_config(clean, {"--train.nope=1"}); }), {"command line", "train.nope"});
}

TEST(DeckErrors, WrongTypeNamesKeyLineAndExpectation) {
  TempDir dir;
  dir.write("tiny.ini", kModel);
  const std::string deck = dir.write("run.ini", std::string(kDeck) + "[model]\nnum_layers = two\n");
  expect_mentions(error_of([&] { load_config(deck, {}); }),
                  {deck + ":11", "model.num_layers", "an integer", "'two'"});
  const std::string deck2 = dir.write("run2.ini", std::string(kDeck) + "[data]\nshuffle = maybe\n");
  expect_mentions(error_of([&] { load_config(deck2, {}); }), {deck2 + ":11", "data.shuffle", "true or false"});
  const std::string clean = dir.write("clean.ini", kDeck);
  expect_mentions(error_of([&] { load_config(clean, {"--train.lr=fast"}); }), {"command line", "train.lr", "a number"});
}

TEST(DeckErrors, MissingRequiredKey) {
  TempDir dir;
  dir.write("tiny.ini", std::string(kModel).replace(std::string(kModel).find("vocab_size = 512\n"), 17, ""));
  const std::string deck = dir.write("run.ini", kDeck);
  expect_mentions(error_of([&] { validate_config(load_config(deck, {}), 1); }),
                  {deck, "missing required key 'model.vocab_size'"});
}

TEST(DeckErrors, SyntaxAndIncludes) {
  TempDir dir;
  const std::string bad = dir.write("bad.ini", "[model]\nnum_layers 2\n");
  expect_mentions(error_of([&] { load_config(bad, {}); }), {bad + ":2", "key = value"});
  const std::string twice = dir.write("twice.ini", "[model]\nnum_layers = 2\nnum_layers = 3\n");
  expect_mentions(error_of([&] { load_config(twice, {}); }), {twice + ":3", "set twice", "line 2"});
  const std::string missing = dir.write("inc.ini", "include = nowhere.ini\n");
  expect_mentions(error_of([&] { load_config(missing, {}); }), {missing + ":1", "nowhere.ini"});
  const std::string a = dir.write("a.ini", "include = b.ini\n");
  dir.write("b.ini", "include = a.ini\n");
  expect_mentions(error_of([&] { load_config(a, {}); }), {"include cycle"});
}

TEST(DeckErrors, InconsistentValuesNameTheKeyAndWhereItWasSet) {
  TempDir dir;
  dir.write("tiny.ini", kModel);
  const std::string deck = dir.write("run.ini", std::string(kDeck) + "[parallel]\ntp = 4\ndp = 2\n");
  const Config c = load_config(deck, {});
  // world 8 with tp 4 (dp 2): tp divides the heads (4) but not the query groups (2).
  expect_mentions(error_of([&] { validate_config(c, 8); }), {"parallel.tp", deck + ":11", "num_query_groups = 2"});
  // world size ≠ tp·pp·cp·dp
  expect_mentions(error_of([&] { validate_config(load_config(deck, {"--parallel.tp=2"}), 8); }),
                  {"parallel.dp", deck + ":12", "world size 8", "≠ tp·pp·cp·dp"});
  expect_mentions(error_of([&] { validate_config(load_config(deck, {"--parallel.tp=2", "--parallel.dp=0"}), 3); }),
                  {"parallel.tp", "world size 3", "tp·pp·cp"});
  // heads not divisible by tp
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=3", "--parallel.dp=0"}), 3);
                  }),
                  {"parallel.tp", "num_attention_heads = 4"});
  // query groups must divide heads
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0",
                                                       "--model.num_query_groups=3"}), 1);
                  }),
                  {"model.num_query_groups", "command line", "must divide model.num_attention_heads"});
  // global batch not divisible by micro batch × dp: 8 % (2·8) != 0
  expect_mentions(error_of([&] { validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0"}), 8); }),
                  {"train.global_batch_size", deck + ":6", "micro_batch_size·dp = 2·8"});
  // sequence longer than the position table
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0", "--data.seq_length=65"}),
                                    1);
                  }),
                  {"data.seq_length", "max_position_embeddings = 64"});
  // a choice outside its set
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0",
                                                       "--train.lr_decay_style=step"}), 1);
                  }),
                  {"train.lr_decay_style", "constant, linear, cosine"});
  // bf16 gradients on the fp32 CPU backend
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0",
                                                       "--train.grad_dtype=bf16"}), 1);
                  }),
                  {"train.grad_dtype", "train.precision = bf16"});
  // split masters complete bf16 weights
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0",
                                                       "--train.master_weights=split"}), 1);
                  }),
                  {"train.master_weights", "train.precision = bf16"});
  // the overlapped optimizer step needs a GPU's side stream
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0",
                                                       "--train.overlap_optimizer=true"}), 1);
                  }),
                  {"train.overlap_optimizer", "train.precision = bf16"});
  // GEMM autotuning picks by timing: not with a deterministic run
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0",
                                                       "--train.precision=bf16", "--train.gemm_autotune=true",
                                                       "--train.deterministic=true"}), 1);
                  }),
                  {"train.gemm_autotune", "train.deterministic"});
  // pp beyond the layer count
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0", "--parallel.pp=4"}), 4);
                  }),
                  {"parallel.pp", "model.num_layers = 2"});
  // the parameter all-gathers to overlap exist only with the distributed optimizer
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--parallel.tp=1", "--parallel.dp=0",
                                                       "--parallel.overlap_param_gather=true"}), 2);
                  }),
                  {"parallel.overlap_param_gather", "parallel.distributed_optimizer"});
}

TEST(Split, NormalisesLikeMegatron) {
  Config c;
  c.data.split = "969,30,1";
  const auto s = parse_split(c);
  EXPECT_NEAR(s[0], 0.969, 1e-12);
  EXPECT_NEAR(s[1], 0.030, 1e-12);
  EXPECT_NEAR(s[2], 0.001, 1e-12);
  c.data.split = "1";
  EXPECT_EQ(parse_split(c), (std::vector<double>{1, 0, 0}));
  c.data.split = "0,0,0";
  EXPECT_THROW(parse_split(c), ConfigError);
}
