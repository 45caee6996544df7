// weft/src/cli/preprocess.cpp v1 — `weft preprocess`: JSONL text → Megatron .bin/.idx.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "data/indexed_dataset.h"
#include "tokenizer/tokenizer.h"

namespace weft {

int cmd_preprocess(const Args& args, const MpiEnv& mpi) {
  const char* usage =
      "weft preprocess --input F.jsonl --tokenizer bytes --output-prefix P [--json-key text] [--append-eod]";
  std::string input, tokenizer_spec, prefix, key = "text";
  bool append_eod = false;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() {
      if (i + 1 >= args.size()) throw ConfigError(str("weft preprocess: ", args[i], " needs a value"));
      return args[++i];
    };
    if (args[i] == "--input") input = value();
    else if (args[i] == "--tokenizer") tokenizer_spec = value();
    else if (args[i] == "--output-prefix") prefix = value();
    else if (args[i] == "--json-key") key = value();
    else if (args[i] == "--append-eod") append_eod = true;
    else if (args[i] == "--help" || args[i] == "-h") {
      if (mpi.rank() == 0) std::printf("usage: %s\n", usage);
      return 0;
    } else throw ConfigError(str("weft preprocess: unknown argument '", args[i], "'; usage: ", usage));
  }
  if (input.empty() || tokenizer_spec.empty() || prefix.empty()) throw ConfigError(str("usage: ", usage));
  if (mpi.rank() != 0) return 0;

  const auto tokenizer = load_tokenizer(tokenizer_spec);
  std::ifstream in(input);
  if (!in) throw Error(str("weft preprocess: cannot open '", input, "'"));
  IndexedDatasetWriter writer(prefix, optimal_token_dtype(tokenizer->vocab_size()));
  std::string line;
  int64_t lineno = 0, documents = 0, tokens = 0, skipped = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json rec;
    try {
      rec = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(str(input, ":", lineno, ": not valid JSON: ", e.what()));
    }
    if (!rec.is_object() || !rec.contains(key) || !rec[key].is_string())
      throw Error(str(input, ":", lineno, ": expected an object with a string field '", key, "'"));
    std::vector<int32_t> ids = tokenizer->encode(rec[key].get<std::string>());
    if (ids.empty()) {
      std::fprintf(stderr, "weft preprocess: %s:%lld: empty '%s', skipped\n", input.c_str(), (long long)lineno,
                   key.c_str());
      ++skipped;
      continue;
    }
    if (append_eod) ids.push_back(tokenizer->eod());
    writer.add_sequence(ids);
    writer.end_document();
    ++documents;
    tokens += static_cast<int64_t>(ids.size());
  }
  writer.finish();
  std::printf("weft preprocess: %lld documents, %lld tokens → %s.bin/.idx (%lld empty records skipped)\n",
              (long long)documents, (long long)tokens, prefix.c_str(), (long long)skipped);
  return 0;
}

}  // namespace weft
