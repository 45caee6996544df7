// weft/test/fuzz/tokenizer_fuzz.cpp v1 — a tokenizer.json: its model, normalizer, pre-tokenizer regexes, added
// tokens and decoder, then a round of encoding and decoding.
#include "fuzz_util.h"
#include "tokenizer/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = weft::fuzz::as_file(data, size, "-tokenizer.json");
  weft::fuzz::expect_clean([&] {
    const weft::HfTokenizer t(path);
    const auto ids = t.encode("Call me Ishmael. 123 ünïcödé\n\t  spaces");
    t.decode(ids);
  });
  return 0;
}
