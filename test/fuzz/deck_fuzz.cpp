// weft/test/fuzz/deck_fuzz.cpp v1 — input decks: the INI reader, includes, the schema's typing and the checks.
#include "config/deck.h"
#include "config/validate.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string deck = weft::fuzz::as_file(data, size, ".ini");
  weft::fuzz::expect_clean([&] { weft::validate_config(weft::load_config(deck, {}), 2); });
  return 0;
}
