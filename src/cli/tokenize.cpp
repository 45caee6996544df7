// weft/src/cli/tokenize.cpp v2 — `weft tokenize`: text → ids or ids → text, for checking a tokenizer by hand.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/cli.h"
#include "tokenizer/chat.h"
#include "tokenizer/hf_tokenizer.h"

namespace weft {

int cmd_tokenize(const Args& args, const MpiEnv& mpi) {
  const char* usage = "weft tokenize --tokenizer PATH [--decode] [--specials] [--text TEXT]   (else lines of stdin)\n"
                      "       weft tokenize --tokenizer PATH --chat F.json [--chat-template NAME] [--add-generation-prompt]";
  std::string path, text, chat, chat_template;
  bool decode = false, specials = false, have_text = false, generation_prompt = false;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() {
      if (i + 1 >= args.size()) throw ConfigError(str("weft tokenize: ", args[i], " needs a value"));
      return args[++i];
    };
    if (args[i] == "--tokenizer") path = value();
    else if (args[i] == "--text") text = value(), have_text = true;
    else if (args[i] == "--decode") decode = true;
    else if (args[i] == "--specials") specials = true;
    else if (args[i] == "--chat") chat = value();
    else if (args[i] == "--chat-template") chat_template = value();
    else if (args[i] == "--add-generation-prompt") generation_prompt = true;
    else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n  text → space-separated ids; with --decode, ids → text; --specials adds the "
                  "post-processor's BOS/EOS; --chat renders a chat ({\"messages\": [...]} or a list of messages) with the "
                  "model's own template (or the built-in --chat-template llama2|llama3|mistral|qwen|deepseek) and "
                  "prints the text, then the ids\n", usage);
      return 0;
    } else throw ConfigError(str("weft tokenize: unknown argument '", args[i], "'; usage: ", usage));
  }
  if (path.empty()) throw ConfigError(str("usage: ", usage));
  if (mpi.rank() != 0) return 0;
  const auto tok = load_tokenizer(path);
  const auto* hf = dynamic_cast<const HfTokenizer*>(tok.get());
  if (!chat.empty()) {
    if (!hf) throw ConfigError(str("weft tokenize: --chat needs a tokenizer.json; usage: ", usage));
    std::ifstream in(chat);
    if (!in) throw ConfigError(str("weft tokenize: cannot open '", chat, "'"));
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded()) throw ConfigError(str("weft tokenize: ", chat, " is not JSON"));
    if (j.is_array()) j = {{"messages", j}};
    const std::vector<ChatMessage> messages = chat_messages(j, generation_prompt);
    const ChatFormat format = chat_format(chat_template.empty() ? "model" : chat_template, path);
    const std::vector<int32_t> ids = apply_chat_template(*hf, format, messages, generation_prompt).ids;
    std::cout << (format.model ? render_chat(*format.model, messages, generation_prompt) : tok->decode(ids)) << "\n";
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << "\n";
    return 0;
  }
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
