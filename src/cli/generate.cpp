// weft/src/cli/generate.cpp v1 — `weft generate`: continue prompts with a model, greedy or sampled.
//
// The CPU backend in fp32, tensor-parallel over the ranks: the prompts run once (prefill), then each step runs only
// the sequences' newest tokens against a cache of their keys and values (--no-cache: every step reruns the whole
// sequences, the reference the cache is tested against; latent attention caches its normed latent and unrotated key
// dims, as DeepSeek-V2 does). Every rank draws the same token from the same logits.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "cli/model_loading.h"
#include "generate/sampling.h"
#include "io/atomic_file.h"
#include "io/npy.h"
#include "model/layers.h"
#include "ops/ops.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

namespace weft {
namespace {

const char* kUsage =
    "weft generate --model DIR (--prompt-ids ids.npy | --prompt TEXT | --prompts F.jsonl) [--tokenizer T]\n"
    "              [--max-new-tokens N] [--output F] [--temperature T] [--top-k K] [--top-p P]\n"
    "              [--repetition-penalty R] [--seed S] [--eos ID ...] [--stop TEXT ...] [--no-cache]\n"
    "              [--scores F.npy (the logit of each chosen token)]\n"
    "              [--chat (prompts as chats in the model's own template; --prompts lines may hold \"messages\") |\n"
    "               --chat-template model|llama2|llama3|mistral|qwen|deepseek]";

// The full-vocabulary logits after the last token of each of `seqs`, on every rank. With a cache, only each
// sequence's tokens from new_from[i] on run (the cache holds the earlier ones' keys and values, and takes these).
std::vector<std::vector<double>> last_logits(LoadedModel& m, const std::vector<std::vector<int32_t>>& seqs,
                                             const std::vector<size_t>& new_from, KvCache* cache) {
  const ModelSpec& spec = m.model->spec();
  std::vector<Sequence> batch;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto& s = seqs[i];
    WEFT_CHECK(int64_t(s.size()) <= spec.max_positions, "weft generate: ", s.size(),
               " tokens exceed the model's max_position_embeddings ", spec.max_positions);
    const size_t from = cache ? new_from[i] : 0;
    batch.push_back({.tokens = {s.begin() + static_cast<ptrdiff_t>(from), s.end()},
                     .first_position = static_cast<int32_t>(from)});
  }
  const int64_t rows = static_cast<int64_t>(seqs.size());
  Batch b = sequences_batch(batch);
  b.cache = cache;
  ModelSaved saved;
  const Tensor hidden = m.model->forward_layers(m.model->embed(b), b, saved);
  Tensor last = Tensor::empty({rows, hidden.size(1)}, hidden.dtype(), hidden.device());
  const int32_t* cu = b.cu_seqlens.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r) {
    Tensor row = last.rows(r, r + 1);
    write_into(row, hidden.rows(cu[r + 1] - 1, cu[r + 1]));
  }
  const Tensor logits = gather_vocab(m, m.model->logits(last));
  std::vector<std::vector<double>> out;
  const std::vector<double> all = logits.to_doubles();
  for (int64_t r = 0; r < rows; ++r) out.emplace_back(all.begin() + r * spec.vocab, all.begin() + (r + 1) * spec.vocab);
  return out;
}

// generation_config.json's eos_token_id (a number or a list), where the model directory has one.
std::vector<int32_t> model_eos(const std::string& dir) {
  std::ifstream in(std::filesystem::path(dir) / "generation_config.json");
  if (!in) return {};
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.contains("eos_token_id")) return {};
  std::vector<int32_t> ids;
  for (const auto& v : j["eos_token_id"].is_array() ? j["eos_token_id"] : nlohmann::json::array({j["eos_token_id"]}))
    if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
  return ids;
}

}  // namespace

int cmd_generate(const Args& args, const MpiEnv& mpi) {
  std::string model_dir, prompt_ids, prompt, prompts, tokenizer, output, scores_file, chat_template;
  bool use_cache = true;
  int64_t max_new = 32;
  uint64_t seed = 0;
  SamplingOptions o;
  std::vector<int32_t> eos;
  std::vector<std::string> stops;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() {
      if (i + 1 >= args.size()) throw ConfigError(str("weft generate: ", a, " needs a value"));
      return args[++i];
    };
    auto number = [&](const std::string& text) {
      size_t used = 0;
      double v = 0;
      try {
        v = std::stod(text, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != text.size() || !std::isfinite(v))
        throw ConfigError(str("weft generate: ", a, " expects a number, got '", text, "'"));
      return v;
    };
    if (a == "--help" || a == "-h") {
      if (mpi.rank() == 0) std::printf("usage: %s\n", kUsage);
      return 0;
    }
    if (a == "--model") model_dir = value();
    else if (a == "--prompt-ids") prompt_ids = value();
    else if (a == "--prompt") prompt = value();
    else if (a == "--prompts") prompts = value();
    else if (a == "--tokenizer") tokenizer = value();
    else if (a == "--output") output = value();
    else if (a == "--max-new-tokens") max_new = parse_count("weft generate: --max-new-tokens", value());
    else if (a == "--temperature") o.temperature = number(value());
    else if (a == "--top-k") o.top_k = parse_count("weft generate: --top-k", value());
    else if (a == "--top-p") o.top_p = number(value());
    else if (a == "--repetition-penalty") o.repetition_penalty = number(value());
    else if (a == "--seed") seed = static_cast<uint64_t>(number(value()));
    else if (a == "--eos") eos.push_back(static_cast<int32_t>(number(value())));
    else if (a == "--stop") stops.push_back(value());
    else if (a == "--no-cache") use_cache = false;
    else if (a == "--chat-template") chat_template = value();
    else if (a == "--chat") chat_template = "model";
    else if (a == "--scores") scores_file = value();
    else throw ConfigError(str("weft generate: unknown argument '", a, "'; usage: ", kUsage));
  }
  if (model_dir.empty() || (!prompt_ids.empty()) + (!prompt.empty()) + (!prompts.empty()) != 1)
    throw ConfigError(str("usage: ", kUsage));
  WEFT_CHECK(o.temperature >= 0 && o.top_p > 0 && o.top_p <= 1 && o.repetition_penalty > 0,
             "weft generate: --temperature must be >= 0, --top-p in (0, 1], --repetition-penalty > 0");
  if (prompt_ids.empty() && tokenizer.empty())
    throw ConfigError("weft generate: text prompts need --tokenizer (the model's tokenizer.json, or bytes)");

  const WeightSource src = WeightSource::parse(model_dir);
  LoadedModel m = load_model(src, mpi.size(), mpi.rank());
  const ModelSpec& spec = m.model->spec();
  const std::unique_ptr<Tokenizer> tok = tokenizer.empty() ? nullptr : load_tokenizer(tokenizer);
  if (eos.empty() && src.kind == WeightSource::hf) eos = model_eos(src.dir);
  if (eos.empty() && tok) eos = {tok->eod()};

  std::vector<std::vector<int32_t>> seqs;
  std::vector<nlohmann::json> texts;  // each text prompt as given: a string, or a chat record
  if (!prompt_ids.empty()) {
    const Tensor raw = read_npy(prompt_ids);
    WEFT_CHECK(raw.ndim() == 2 && raw.size(1) > 0 && (raw.dtype() == DType::i32 || raw.dtype() == DType::i64),
               prompt_ids, ": expected integer token ids of shape [batch, length], got ", raw.describe());
    const std::vector<double> v = raw.to_doubles();
    for (int64_t r = 0; r < raw.size(0); ++r) seqs.emplace_back(v.begin() + r * raw.size(1), v.begin() + (r + 1) * raw.size(1));
  } else if (!prompt.empty()) {
    texts = {nlohmann::json(prompt)};
  } else {
    std::ifstream in(prompts);
    if (!in) throw ConfigError(str("weft generate: cannot open '", prompts, "'"));
    int line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      const bool chat = !chat_template.empty() && j.is_object() && (j.contains("messages") || j.contains("instruction"));
      WEFT_CHECK(!j.is_discarded() && (chat || (j.contains("prompt") && j["prompt"].is_string())), prompts, ":",
                 line_no, chat_template.empty() ? ": expected {\"prompt\": text}"
                                                : ": expected {\"prompt\": text} or {\"messages\": [...]}");
      texts.push_back(chat ? j : j["prompt"]);
    }
  }
  if (chat_template.empty()) {
    for (const nlohmann::json& t : texts) seqs.push_back(tok->encode(t.get<std::string>()));
  } else {
    // Chats rendered by the family's template, ending with what opens the assistant's reply.
    const auto* hf = dynamic_cast<const HfTokenizer*>(tok.get());
    WEFT_CHECK(hf, "weft generate: --chat needs a tokenizer.json (its template and special tokens), not '", tokenizer,
               "'");
    const ChatFormat t = chat_format(chat_template, tokenizer);
    for (const nlohmann::json& p : texts) {
      const nlohmann::json record = p.is_string() ? nlohmann::json{{"messages", {{{"role", "user"}, {"content", p}}}}}
                                                  : p;
      seqs.push_back(apply_chat_template(*hf, t, chat_messages(record, true), true).ids);
    }
  }
  for (const auto& s : seqs)
    for (int32_t id : s)
      WEFT_CHECK(id >= 0 && id < spec.vocab, "weft generate: prompt token ", id, " is outside the vocabulary (",
                 spec.vocab, ")");

  const size_t n = seqs.size();
  std::vector<size_t> prompt_len(n);
  for (size_t i = 0; i < n; ++i) prompt_len[i] = seqs[i].size();
  std::vector<bool> done(n, false);
  std::vector<std::vector<double>> scores(n);
  std::mt19937_64 gen(seed);
  KvCache cache;
  KvCache* kv = use_cache ? &cache : nullptr;
  std::vector<size_t> cached(n, 0);  // tokens of each sequence whose keys and values the cache holds
  const bool stream = !prompt.empty() && mpi.rank() == 0;
  for (int64_t step = 0; step < max_new; ++step) {
    std::vector<size_t> live, from;
    std::vector<std::vector<int32_t>> batch;
    for (size_t i = 0; i < n; ++i)
      if (!done[i]) {
        live.push_back(i);
        batch.push_back(seqs[i]);
        from.push_back(cached[i]);
      }
    if (live.empty()) break;
    if (kv) kv->sequence_of_segment.assign(live.begin(), live.end());
    const auto logits = last_logits(m, batch, from, kv);
    for (size_t j = 0; j < live.size(); ++j) {
      std::vector<int32_t>& s = seqs[live[j]];
      cached[live[j]] = s.size();
      const int32_t next = next_token(logits[j], s, o, gen);
      scores[live[j]].push_back(logits[j][static_cast<size_t>(next)]);
      s.push_back(next);
      if (std::find(eos.begin(), eos.end(), next) != eos.end()) done[live[j]] = true;
      if (tok && !stops.empty()) {
        const std::string text = tok->decode({s.begin() + prompt_len[live[j]], s.end()});
        for (const std::string& stop : stops)
          if (text.find(stop) != std::string::npos) done[live[j]] = true;
      }
      if (stream && !done[live[j]]) {
        std::fputs(tok->decode({next}).c_str(), stdout);
        std::fflush(stdout);
      }
    }
  }
  if (stream) std::printf("\n");
  if (mpi.rank() != 0) return 0;
  if (!scores_file.empty()) {
    std::vector<double> flat;
    for (const auto& row : scores)
      for (int64_t k = 0; k < max_new; ++k) flat.push_back(k < int64_t(row.size()) ? row[k] : NAN);
    write_npy(scores_file, Tensor::from_vector(flat, {int64_t(n), max_new}));
  }

  if (!prompt_ids.empty()) {
    // [batch, prompt + new], a sequence that ended early padded with its end id (HF pads with pad = eos).
    size_t width = 0;
    for (const auto& s : seqs) width = std::max(width, s.size());
    std::vector<int64_t> flat;
    for (const auto& s : seqs)
      for (size_t i = 0; i < width; ++i) flat.push_back(i < s.size() ? s[i] : s.back());
    const Tensor out = Tensor::from_vector(flat, {int64_t(n), int64_t(width)});
    if (!output.empty()) write_npy(output, out);
    std::printf("weft generate: %zu sequences, %zu tokens each%s\n", n, width,
                output.empty() ? "" : str(", written to ", output).c_str());
    return 0;
  }
  if (!prompts.empty()) {
    std::string lines;
    for (size_t i = 0; i < n; ++i) {
      std::string completion = tok->decode({seqs[i].begin() + prompt_len[i], seqs[i].end()});
      for (const std::string& stop : stops)
        if (const size_t at = completion.find(stop); at != std::string::npos) completion.resize(at);
      // Bytes that are not UTF-8 (a sequence cut mid-character) become U+FFFD, as HF's decode writes them.
      lines += nlohmann::json({{"prompt", texts[i]}, {"prompt_tokens", prompt_len[i]}, {"completion", completion}})
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    if (output.empty()) std::fputs(lines.c_str(), stdout);
    else write_text_atomically(output, lines);
  }
  return 0;
}

}  // namespace weft
