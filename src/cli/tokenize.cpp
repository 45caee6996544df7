// weft/src/cli/tokenize.cpp v1 — `weft tokenize`: text → ids or ids → text, for checking a tokenizer by hand.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/cli.h"
#include "tokenizer/hf_tokenizer.h"

namespace weft {

int cmd_tokenize(const Args& args, const MpiEnv& mpi) {
  const char* usage = "weft tokenize --tokenizer PATH [--decode] [--specials] [--text TEXT]   (else lines of stdin)";
  std::string path, text;
  bool decode = false, specials = false, have_text = false;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() {
      if (i + 1 >= args.size()) throw ConfigError(str("weft tokenize: ", args[i], " needs a value"));
      return args[++i];
    };
    if (args[i] == "--tokenizer") path = value();
    else if (args[i] == "--text") text = value(), have_text = true;
    else if (args[i] == "--decode") decode = true;
    else if (args[i] == "--specials") specials = true;
    else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n  text → space-separated ids; with --decode, ids → text; --specials adds the "
                  "post-processor's BOS/EOS\n", usage);
      return 0;
    } else throw ConfigError(str("weft tokenize: unknown argument '", args[i], "'; usage: ", usage));
  }
  if (path.empty()) throw ConfigError(str("usage: ", usage));
  if (mpi.rank() != 0) return 0;
  const auto tok = load_tokenizer(path);
  const auto* hf = dynamic_cast<const HfTokenizer*>(tok.get());
  auto run = [&](const std::string& line) {
    if (decode) {
      std::istringstream in(line);
      std::vector<int32_t> ids;
      for (int64_t id; in >> id;) ids.push_back(static_cast<int32_t>(id));
      std::cout << tok->decode(ids) << "\n";
      return;
    }
    const std::vector<int32_t> ids = specials && hf ? hf->encode_with_specials(line) : tok->encode(line);
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << "\n";
  };
  if (have_text) run(text);
  else
    for (std::string line; std::getline(std::cin, line);) run(line);
  return 0;
}

}  // namespace weft
