// weft/src/cli/preprocess.cpp v1 — `weft preprocess`: JSONL → Megatron .bin/.idx, in parallel over MPI ranks.
//
// Ranks split the input by byte ranges (a line belongs to the rank holding its first byte), each writes a partial
// dataset, and rank 0 merges them in rank order, so the result is the same for any number of ranks.
// With --sft, records become chat-formatted token sequences plus a parallel PREFIX_loss_mask dataset (uint8, 1 on
// assistant tokens) that `data.sft = true` reads.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "data/indexed_dataset.h"
#include "io/mapped_file.h"
#include "tokenizer/chat.h"
#include "tokenizer/hf_tokenizer.h"
#include "train/metrics.h"

namespace weft {
namespace {

struct Options {
  std::string input, tokenizer, prefix, key = "text", chat_template, bad_records = "fail";
  bool append_eod = false, specials = true, sft = false;
};

struct Counts {
  int64_t documents = 0, tokens = 0, skipped = 0, bytes = 0;
};

Options parse(const Args& args, bool* help) {
  const char* usage =
      "weft preprocess --input F.jsonl --tokenizer PATH|bytes --output-prefix P [--json-key text] [--append-eod]\n"
      "                [--no-specials] [--sft --chat-template model|llama2|llama3|mistral|qwen|deepseek]\n"
      "                [--bad-records fail|skip]";
  Options o;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() {
      if (i + 1 >= args.size()) throw ConfigError(str("weft preprocess: ", args[i], " needs a value"));
      return args[++i];
    };
    const std::string& a = args[i];
    if (a == "--input") o.input = value();
    else if (a == "--tokenizer") o.tokenizer = value();
    else if (a == "--output-prefix") o.prefix = value();
    else if (a == "--json-key") o.key = value();
    else if (a == "--append-eod") o.append_eod = true;
    else if (a == "--no-specials") o.specials = false;
    else if (a == "--sft") o.sft = true;
    else if (a == "--chat-template") o.chat_template = value();
    else if (a == "--bad-records") o.bad_records = value();
    else if (a == "--help" || a == "-h") {
      std::printf("usage: %s\n", usage);
      *help = true;
      return o;
    } else throw ConfigError(str("weft preprocess: unknown argument '", a, "'\nusage: ", usage));
  }
  if (o.input.empty() || o.tokenizer.empty() || o.prefix.empty()) throw ConfigError(str("usage: ", usage));
  if (o.bad_records != "skip" && o.bad_records != "fail")
    throw ConfigError("weft preprocess: --bad-records expects skip or fail");
  if (o.sft && o.chat_template.empty()) throw ConfigError("weft preprocess: --sft needs --chat-template");
  if (o.sft && o.chat_template != "model") chat_template_named(o.chat_template);  // rejects unknown names up front
  return o;
}

std::string part_name(const std::string& prefix, int rank, int world) {
  return str(prefix, ".part", rank, "of", world);
}

}  // namespace

int cmd_preprocess(const Args& args, const MpiEnv& mpi) {
  bool help = false;
  const Options o = parse(args, &help);
  if (help) return 0;
  const auto tokenizer = load_tokenizer(o.tokenizer);
  const auto* hf = dynamic_cast<const HfTokenizer*>(tokenizer.get());
  WEFT_CHECK(!o.sft || hf, "weft preprocess --sft needs a tokenizer.json (chat templates use its special tokens)");
  const ChatFormat chat = o.sft ? chat_format(o.chat_template, o.tokenizer) : ChatFormat{};

  const MappedFile file(o.input);
  const char* data = reinterpret_cast<const char*>(file.data());
  const size_t size = file.size();
  const int rank = mpi.rank(), world = mpi.size();
  // This rank's lines: those whose first byte lies in [begin, end).
  size_t begin = size * rank / world, end = size * (rank + 1) / world;
  auto line_start = [&](size_t at) {
    if (at == 0 || at >= size) return std::min(at, size);
    const void* nl = std::memchr(data + at - 1, '\n', size - (at - 1));
    return nl ? static_cast<size_t>(static_cast<const char*>(nl) - data) + 1 : size;
  };
  begin = line_start(begin);
  end = line_start(end);
  int64_t lineno = 1;
  for (const char* p = data; (p = static_cast<const char*>(std::memchr(p, '\n', data + begin - p))); ++p) ++lineno;

  const std::string out_prefix = world == 1 ? o.prefix : part_name(o.prefix, rank, world);
  Counts c;
  std::string error;  // this rank's first bad record under --bad-records fail
  const auto t0 = std::chrono::steady_clock::now();
  {
    IndexedDatasetWriter tokens_out(out_prefix, optimal_token_dtype(tokenizer->vocab_size()));
    std::unique_ptr<IndexedDatasetWriter> mask_out;
    if (o.sft) mask_out = std::make_unique<IndexedDatasetWriter>(out_prefix + "_loss_mask", TokenDType::u8);
    auto last_report = t0;
    auto bad = [&](int64_t line, const std::string& why) {
      if (o.bad_records == "fail") {
        if (error.empty()) error = str(o.input, ":", line, ": ", why, " (--bad-records skip to skip such lines)");
        return;
      }
      if (c.skipped < 20)
        std::fprintf(stderr, "weft preprocess: %s:%lld: %s; skipped\n", o.input.c_str(), (long long)line, why.c_str());
      ++c.skipped;
    };
    for (size_t at = begin; at < end && error.empty(); ++lineno) {
      const char* nl = static_cast<const char*>(std::memchr(data + at, '\n', end - at));
      const size_t stop = nl ? static_cast<size_t>(nl - data) : end;
      const std::string_view line(data + at, stop - at);
      at = stop + 1;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      nlohmann::json rec;
      try {
        rec = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        bad(lineno, "not valid JSON");
        continue;
      }
      std::vector<int32_t> ids;
      std::vector<int32_t> mask;
      if (o.sft) {
        try {
          const TokenizedChat tc = apply_chat_template(*hf, chat, chat_messages(rec));
          ids = tc.ids;
          mask.assign(tc.loss_mask.begin(), tc.loss_mask.end());
        } catch (const Error& e) {
          bad(lineno, e.what());
          continue;
        }
      } else {
        if (!rec.is_object() || !rec.contains(o.key) || !rec[o.key].is_string()) {
          bad(lineno, str("no string field '", o.key, "'"));
          continue;
        }
        const std::string text = rec[o.key].get<std::string>();
        if (text.empty()) {
          bad(lineno, str("empty '", o.key, "'"));
          continue;
        }
        ids = o.specials && hf ? hf->encode_with_specials(text) : tokenizer->encode(text);
        if (o.append_eod) ids.push_back(tokenizer->eod());
      }
      if (ids.empty()) {
        bad(lineno, "no tokens");
        continue;
      }
      tokens_out.add_sequence(ids);
      tokens_out.end_document();
      if (mask_out) {
        mask_out->add_sequence(mask);
        mask_out->end_document();
      }
      ++c.documents;
      c.tokens += static_cast<int64_t>(ids.size());
      c.bytes = static_cast<int64_t>(at - begin);
      const auto now = std::chrono::steady_clock::now();
      if (rank == 0 && std::chrono::duration<double>(now - last_report).count() > 5) {
        last_report = now;
        const double s = std::chrono::duration<double>(now - t0).count(), share = double(end - begin);
        std::fprintf(stderr, "weft preprocess: %.1f of %.1f MB (rank 0's share), %.2f MB/s, ETA %s\n",
                     c.bytes / 1e6, share / 1e6, c.bytes / 1e6 / s,
                     format_duration((share - double(c.bytes)) / (c.bytes / s)).c_str());
      }
    }
    c.bytes = static_cast<int64_t>(end - begin);
    if (error.empty()) {
      tokens_out.finish();
      if (mask_out) mask_out->finish();
    }
  }  // an unfinished writer removes its temporary files
  // A bad record on any rank stops every rank, and no part of the output stays behind.
  int mine = error.empty() ? INT_MAX : rank, first = INT_MAX;
  MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (first != INT_MAX) {
    if (world > 1)
      for (const std::string& part : {out_prefix, out_prefix + "_loss_mask"})
        for (const char* ext : {".bin", ".idx"}) std::filesystem::remove(part + ext);
    throw ConfigError(rank == first ? error : "");
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  int64_t local[4] = {c.documents, c.tokens, c.skipped, c.bytes}, total[4];
  MPI_CHECK(MPI_Allreduce(local, total, 4, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
  double slowest = 0;
  MPI_CHECK(MPI_Allreduce(&seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  if (world > 1 && rank == 0) {
    std::vector<std::string> parts, masks;
    for (int r = 0; r < world; ++r) {
      parts.push_back(part_name(o.prefix, r, world));
      masks.push_back(part_name(o.prefix, r, world) + "_loss_mask");
    }
    merge_indexed_datasets(parts, o.prefix);
    if (o.sft) merge_indexed_datasets(masks, o.prefix + "_loss_mask");
    if (o.sft) parts.insert(parts.end(), masks.begin(), masks.end());
    for (const auto& part : parts)
      for (const char* ext : {".bin", ".idx"}) std::filesystem::remove(part + ext);
  }
  if (rank == 0)
    std::printf("weft preprocess: %lld documents, %lld tokens → %s.bin/.idx%s (%lld bad records skipped) in %.1f s: "
                "%.2f MB/s, %.0f tokens/s over %d rank%s\n",
                (long long)total[0], (long long)total[1], o.prefix.c_str(), o.sft ? " + _loss_mask" : "",
                (long long)total[2], slowest, total[3] / 1e6 / slowest, total[1] / slowest, world, world > 1 ? "s" : "");
  return 0;
}

}  // namespace weft
