// weft/src/cli/eval.cpp v1 — `weft eval`: how good a model is, without training it.
//
//   weft eval DECK --model DIR            the validation loss and perplexity on the deck's validation samples, as
//                                         training's validation computes them (the deck's layout under mpirun)
//   weft eval --model DIR --task F.jsonl  multiple-choice accuracy by log-likelihood (tensor-parallel over the ranks)
//   weft eval --model DIR --data PREFIX   token-level loss and perplexity over a dataset's tokens in order (or
//        | --jsonl F --tokenizer T        JSONL texts tokenized here, each ended by the end-of-document id): windows
//                                         of --seq-length + 1 tokens, as Megatron's unshuffled samples are
//
// Multiple choice follows lm-evaluation-harness: each choice is scored by the summed log-probability of its tokens
// after the context (the context's trailing spaces moved to the choice, the choice's tokens being those the whole
// text has beyond the context's); acc takes the best score, acc_norm the best score per byte of the choice.
#include <cmath>
#include <limits>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "cli/model_loading.h"
#include "data/indexed_dataset.h"
#include "dist/process_grid.h"
#include "io/atomic_file.h"
#include "ops/device.h"
#include "tokenizer/tokenizer.h"
#include "train/setup.h"
#include "train/trainer.h"

namespace weft {
namespace {

const char* kUsage =
    "weft eval DECK --model DIR [--validation-run R (from 0)] [--output F.json] [--section.key=value ...]\n"
    "       weft eval --model DIR --task F.jsonl --tokenizer PATH|bytes [--output F.json]\n"
    "       weft eval --model DIR (--data PREFIX | --jsonl F --tokenizer T) --seq-length N [--max-samples K] "
    "[--output F.json]";

struct Choice {
  std::vector<int32_t> context, continuation;
  size_t chars = 0;  // of the choice's text (Unicode code points): acc_norm's length
};

// lm-evaluation-harness's pair encoding: trailing spaces of the context go to the continuation, whose tokens are
// those of the whole text beyond the context's.
Choice encode_pair(const Tokenizer& tok, std::string context, std::string continuation) {
  size_t chars = 0;
  for (unsigned char b : continuation) chars += (b & 0xC0) != 0x80;
  const size_t end = context.find_last_not_of(' ');
  const size_t spaces = end == std::string::npos ? context.size() : context.size() - end - 1;
  continuation = context.substr(context.size() - spaces) + continuation;
  context.resize(context.size() - spaces);
  Choice c;
  c.chars = chars;
  c.context = tok.encode(context);
  const std::vector<int32_t> whole = tok.encode(context + continuation);
  const size_t n = std::min(c.context.size(), whole.size());
  c.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(n), whole.end());
  return c;
}

// Σ log p(continuation | context) of each choice, the choices run as segments of one batch.
std::vector<double> log_likelihoods(LoadedModel& m, const std::vector<Choice>& choices, const std::string& where) {
  const ModelSpec& spec = m.model->spec();
  std::vector<Sequence> seqs;
  for (const Choice& c : choices) {
    std::vector<int32_t> ids = c.context;
    ids.insert(ids.end(), c.continuation.begin(), c.continuation.end());
    WEFT_CHECK(!c.continuation.empty(), where, ": a choice has no tokens of its own after the context");
    WEFT_CHECK(ids.size() >= 2 && int64_t(ids.size()) - 1 <= spec.max_positions, where, ": ", ids.size(),
               " tokens do not fit max_position_embeddings ", spec.max_positions);
    Sequence& s = seqs.emplace_back();
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      WEFT_CHECK(ids[i] >= 0 && ids[i] < spec.vocab && ids[i + 1] < spec.vocab, where, ": token id outside the "
                 "model's vocabulary (", spec.vocab, "): is --tokenizer the model's?");
      s.tokens.push_back(ids[i]);
      s.labels.push_back(ids[i + 1]);
      s.loss_mask.push_back(i + 1 >= c.context.size() ? 1.f : 0.f);  // predicting a continuation token
    }
  }
  const Batch b = sequences_batch(seqs);
  ModelSaved saved;
  const std::vector<double> loss = m.model->loss(m.model->forward_layers(m.model->embed(b), b, saved), b, saved)
                                       .to_doubles();
  std::vector<double> ll(choices.size(), 0.0);
  size_t at = 0;
  for (size_t c = 0; c < choices.size(); ++c)
    for (const float weight : seqs[c].loss_mask) ll[c] -= double(weight) * loss[at++];
  return ll;
}

int eval_task(const std::string& model_dir, const std::string& task, const std::string& tokenizer,
              const std::string& output, const MpiEnv& mpi) {
  if (tokenizer.empty()) throw ConfigError(str("weft eval: --task needs --tokenizer (the model's tokenizer.json, or "
                                               "bytes); usage: ", kUsage));
  std::ifstream in(task);
  if (!in) throw ConfigError(str("weft eval: cannot open the task file '", task, "'"));
  const std::unique_ptr<Tokenizer> tok = load_tokenizer(tokenizer);
  LoadedModel m = load_model(WeightSource::parse(model_dir), mpi.size(), mpi.rank());
  int64_t items = 0, correct = 0, correct_norm = 0, line_no = 0;
  nlohmann::json per_item = nlohmann::json::array();
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = str(task, ":", line_no);
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    WEFT_CHECK(!j.is_discarded() && j.is_object() && j.contains("context") && j["context"].is_string() &&
                   j.contains("choices") && j["choices"].is_array() && j["choices"].size() >= 2 &&
                   j.contains("answer") && j["answer"].is_number_integer(),
               where, ": expected {\"context\": text, \"choices\": [two or more texts], \"answer\": index}");
    const int64_t answer = j["answer"].get<int64_t>();
    WEFT_CHECK(answer >= 0 && answer < int64_t(j["choices"].size()), where, ": answer ", answer, " is not a choice");
    std::vector<Choice> choices;
    for (const auto& c : j["choices"]) {
      WEFT_CHECK(c.is_string(), where, ": a choice is not text");
      choices.push_back(encode_pair(*tok, j["context"].get<std::string>(), c.get<std::string>()));
    }
    const std::vector<double> ll = log_likelihoods(m, choices, where);
    size_t best = 0, best_norm = 0;
    for (size_t c = 1; c < ll.size(); ++c) {
      if (ll[c] > ll[best]) best = c;
      if (ll[c] / double(choices[c].chars) > ll[best_norm] / double(choices[best_norm].chars)) best_norm = c;
    }
    ++items;
    correct += int64_t(best) == answer;
    correct_norm += int64_t(best_norm) == answer;
    per_item.push_back({{"log_likelihoods", ll}, {"prediction", best}, {"prediction_norm", best_norm},
                        {"answer", answer}});
  }
  WEFT_CHECK(items > 0, task, ": no items");
  const double acc = double(correct) / double(items), acc_norm = double(correct_norm) / double(items);
  if (mpi.rank() != 0) return 0;
  std::printf("weft eval: %s: %lld items, acc %.4f, acc_norm %.4f\n", task.c_str(), (long long)items, acc, acc_norm);
  if (!output.empty())
    write_text_atomically(output, nlohmann::json({{"task", task}, {"model", model_dir}, {"items", items},
                                                  {"acc", acc}, {"acc_norm", acc_norm}, {"per_item", per_item}})
                                          .dump(1) + "\n");
  return 0;
}

// The token stream of a Megatron dataset (its documents in order) or of JSONL texts ("text", each ended by EOD).
std::vector<int32_t> token_stream(const std::string& data, const std::string& jsonl, const std::string& tokenizer,
                                  size_t want) {
  std::vector<int32_t> out;
  if (!data.empty()) {
    const IndexedDataset ds(data);
    for (int64_t i = 0; i < ds.num_sequences() && out.size() < want; ++i) {
      std::vector<int32_t> seq(static_cast<size_t>(ds.sequence_length(i)));
      ds.read(i, 0, ds.sequence_length(i), seq.data());
      out.insert(out.end(), seq.begin(), seq.end());
    }
    return out;
  }
  if (tokenizer.empty()) throw ConfigError(str("weft eval: --jsonl needs --tokenizer; usage: ", kUsage));
  const std::unique_ptr<Tokenizer> tok = load_tokenizer(tokenizer);
  std::ifstream in(jsonl);
  if (!in) throw ConfigError(str("weft eval: cannot open '", jsonl, "'"));
  int line_no = 0;
  for (std::string line; out.size() < want && std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    WEFT_CHECK(!j.is_discarded() && j.contains("text") && j["text"].is_string(), jsonl, ":", line_no,
               ": expected {\"text\": ...}");
    for (int32_t id : tok->encode(j["text"].get<std::string>())) out.push_back(id);
    out.push_back(tok->eod());
  }
  return out;
}

int eval_data(const std::string& model_dir, const std::string& data, const std::string& jsonl,
              const std::string& tokenizer, int64_t seq, int64_t max_samples, const std::string& output,
              const MpiEnv& mpi) {
  if (seq <= 0) throw ConfigError(str("weft eval: --data and --jsonl need --seq-length; usage: ", kUsage));
  LoadedModel m = load_model(WeightSource::parse(model_dir), mpi.size(), mpi.rank());
  const ModelSpec& spec = m.model->spec();
  WEFT_CHECK(seq <= spec.max_positions, "weft eval: --seq-length ", seq, " exceeds max_position_embeddings ",
             spec.max_positions);
  const size_t limit = max_samples > 0 ? size_t(max_samples * seq + 1) : std::numeric_limits<size_t>::max();
  const std::vector<int32_t> stream = token_stream(data, jsonl, tokenizer, limit);
  const int64_t samples = std::min<int64_t>((int64_t(stream.size()) - 1) / seq, max_samples > 0 ? max_samples : INT64_MAX);
  WEFT_CHECK(samples > 0, "weft eval: fewer than ", seq + 1, " tokens in ", data.empty() ? jsonl : data);
  // Sample i: tokens [i·seq, (i + 1)·seq + 1), its first seq tokens the input, the last seq the labels.
  constexpr int64_t kRowsPerBatch = 8;
  double total = 0;
  for (int64_t first = 0; first < samples; first += kRowsPerBatch) {
    const int64_t rows = std::min(kRowsPerBatch, samples - first);
    std::vector<Sequence> seqs(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < seq; ++i) {
        const size_t at = size_t((first + r) * seq + i);
        WEFT_CHECK(stream[at] >= 0 && stream[at] < spec.vocab && stream[at + 1] < spec.vocab, "weft eval: token id ",
                   stream[at], " is outside the model's vocabulary (", spec.vocab, ")");
        seqs[size_t(r)].tokens.push_back(stream[at]);
        seqs[size_t(r)].labels.push_back(stream[at + 1]);
        seqs[size_t(r)].loss_mask.push_back(1.f);
      }
    const Batch b = sequences_batch(seqs);
    ModelSaved saved;
    for (double l : m.model->loss(m.model->forward_layers(m.model->embed(b), b, saved), b, saved).to_doubles())
      total += l;
  }
  const double loss = total / double(samples * seq);
  if (mpi.rank() != 0) return 0;
  std::printf("weft eval: %s on %s: %lld samples of %lld tokens: loss %.6f, perplexity %.4f\n", model_dir.c_str(),
              (data.empty() ? jsonl : data).c_str(), (long long)samples, (long long)seq, loss, std::exp(loss));
  if (!output.empty())
    write_text_atomically(output, nlohmann::json({{"data", data.empty() ? jsonl : data}, {"model", model_dir},
                                                  {"samples", samples}, {"seq_length", seq}, {"loss", loss},
                                                  {"perplexity", std::exp(loss)}})
                                          .dump(1) + "\n");
  return 0;
}

int eval_deck(const std::string& deck, const std::string& model_dir, Args overrides, int64_t run,
              const std::string& output, const MpiEnv& mpi) {
  const WeightSource src = WeightSource::parse(model_dir);
  overrides.push_back(str("--model.init=", src.kind == WeightSource::hf ? "hf:" : "native:", src.dir));
  // Evaluation writes nothing and resumes nothing.
  for (const char* key : {"--log.dir=", "--checkpoint.save=", "--checkpoint.load=", "--log.tensorboard=false"})
    overrides.push_back(key);
  const Config cfg = load_config_collectively(deck, overrides, mpi.size());
  const ProcessGrid grid(mpi.size(), mpi.rank(), parallel_sizes(cfg));
  if (cfg.train.precision == "bf16") require_gpu(cfg.where("train.precision"));
  Comms comms = Comms::create(grid, cfg.train.precision == "bf16" ? device_support().comm_factory : make_mpi_comm);
  Trainer trainer(cfg, grid, comms);
  const double loss = trainer.validation_loss(run);
  if (mpi.rank() != 0) return 0;
  const int64_t samples = cfg.train.eval_iters * cfg.train.global_batch_size;
  std::printf("weft eval: %s on %s: validation run %lld, %lld samples of %lld tokens: loss %.6f, perplexity %.4f\n",
              model_dir.c_str(), deck.c_str(), (long long)run, (long long)samples, (long long)cfg.data.seq_length,
              loss, std::exp(loss));
  if (!output.empty())
    write_text_atomically(output, nlohmann::json({{"deck", deck}, {"model", model_dir}, {"validation_run", run},
                                                  {"samples", samples}, {"seq_length", cfg.data.seq_length},
                                                  {"loss", loss}, {"perplexity", std::exp(loss)}})
                                          .dump(1) + "\n");
  return 0;
}

}  // namespace

int cmd_eval(const Args& args, const MpiEnv& mpi) {
  std::string deck, model_dir, task, tokenizer, output, data, jsonl;
  int64_t run = 0, seq = 0, max_samples = 0;
  Args overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() {
      if (i + 1 >= args.size()) throw ConfigError(str("weft eval: ", a, " needs a value"));
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      if (mpi.rank() == 0) std::printf("usage: %s\n", kUsage);
      return 0;
    }
    if (a == "--model") model_dir = value();
    else if (a == "--task") task = value();
    else if (a == "--tokenizer") tokenizer = value();
    else if (a == "--output") output = value();
    else if (a == "--data") data = value();
    else if (a == "--jsonl") jsonl = value();
    else if (a == "--seq-length") seq = parse_count("weft eval: --seq-length", value());
    else if (a == "--max-samples") max_samples = parse_count("weft eval: --max-samples", value());
    else if (a == "--validation-run") {
      const std::string v = value();
      run = v == "0" ? 0 : parse_count("weft eval: --validation-run", v);
    }
    else if (a.rfind("--", 0) == 0 && a.find('.') != std::string::npos) overrides.push_back(a);
    else if (a.rfind("--", 0) == 0) throw ConfigError(str("weft eval: unknown option '", a, "'; usage: ", kUsage));
    else if (deck.empty()) deck = a;
    else throw ConfigError(str("weft eval: a second deck '", a, "'; usage: ", kUsage));
  }
  const int modes = !deck.empty() + !task.empty() + !data.empty() + !jsonl.empty();
  if (model_dir.empty() || modes != 1) throw ConfigError(str("usage: ", kUsage));
  if (!task.empty()) return eval_task(model_dir, task, tokenizer, output, mpi);
  if (!data.empty() || !jsonl.empty()) return eval_data(model_dir, data, jsonl, tokenizer, seq, max_samples, output, mpi);
  return eval_deck(deck, model_dir, overrides, run, output, mpi);
}

}  // namespace weft
