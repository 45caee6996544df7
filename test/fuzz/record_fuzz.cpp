// weft/test/fuzz/record_fuzz.cpp v1 — one JSONL record as `weft preprocess --sft` reads it: the chat's messages.
#include <string>

#include "fuzz_util.h"
#include "tokenizer/chat.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  weft::fuzz::expect_clean([&] { weft::chat_messages(nlohmann::json::parse(line)); });
  return 0;
}
