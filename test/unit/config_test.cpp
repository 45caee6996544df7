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

// An MoE model's keys: the experts in [model] (a layer list written "1,3"), how they train in [moe]; and the checks
// that name the key.
TEST(Deck, MoeKeysAndTheirChecks) {
  TempDir dir;
  dir.write("tiny.ini", kModel);
  const std::string deck = dir.write("run.ini", std::string(kDeck) + "[model]\nfamily = qwen2_moe\nnum_experts = 4\n"
                                                "moe_ffn_hidden_size = 32\nmlp_only_layers = 0, 1\n"
                                                "[moe]\naux_loss_coeff = 0.01\nexpert_capacity_factor = 1.5\n");
  const Config c = load_config(deck, {});
  EXPECT_EQ(c.model.mlp_only_layers, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(c.model.moe_layers(), 0);  // both layers listed dense
  EXPECT_DOUBLE_EQ(c.moe.aux_loss_coeff, 0.01);
  EXPECT_DOUBLE_EQ(c.moe.expert_capacity_factor, 1.5);
  EXPECT_NO_THROW(validate_config(c, 2));
  expect_mentions(error_of([&] { load_config(deck, {"--model.mlp_only_layers=1,x"}); }),
                  {"model.mlp_only_layers", "comma-separated integers", "1,x"});
  expect_mentions(error_of([&] { validate_config(load_config(deck, {"--model.mlp_only_layers=5"}), 1); }),
                  {"model.mlp_only_layers", "layer 5"});
  expect_mentions(error_of([&] { validate_config(load_config(deck, {"--model.moe_router_topk=5"}), 1); }),
                  {"model.moe_router_topk", "num_experts = 4"});
  expect_mentions(error_of([&] { validate_config(load_config(deck, {"--parallel.ep=2"}), 1); }),
                  {"parallel.ep", "dp·cp = 1"});
  expect_mentions(error_of([&] { validate_config(load_config(deck, {"--moe.z_loss_coeff=-1"}), 1); }),
                  {"moe.z_loss_coeff", ">= 0"});
  expect_mentions(error_of([&] { validate_config(load_config(deck, {"--model.rope_theta=inf"}), 1); }),
                  {"model.rope_theta", "finite"});
  expect_mentions(error_of([&] {
                    validate_config(load_config(deck, {"--model.num_experts=0", "--parallel.ep=2"}), 2);
                  }),
                  {"parallel.ep", "needs an MoE model"});
}
