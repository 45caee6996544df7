// weft/test/fuzz/jinja_fuzz.cpp v1 — a chat template (tokenizer_config.json's Jinja): parsed, then rendered for a
// small chat, as weft does with the templates of downloaded models.
#include "fuzz_util.h"
#include "tokenizer/jinja.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::ordered_json context = {
      {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi 👋"}},
                    {{"role", "assistant"}, {"content", "Hello"}}}},
      {"tools", nullptr},
      {"add_generation_prompt", true},
      {"bos_token", "<s>"},
      {"eos_token", "</s>"}};
  const std::string source(reinterpret_cast<const char*>(data), size);
  weft::fuzz::expect_clean([&] { weft::JinjaTemplate(source, "fuzz").render(context); });
  return 0;
}
