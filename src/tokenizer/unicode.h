// weft/src/tokenizer/unicode.h v1 — the Unicode the tokenizers need: UTF-8 ↔ code points, and NFC.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace weft {

// Code points of UTF-8 text; each invalid byte becomes U+FFFD (as lossy decoders do).
std::vector<uint32_t> utf8_decode(std::string_view s);
void utf8_append(std::string& out, uint32_t cp);
std::string utf8_encode(const std::vector<uint32_t>& cps);
// Byte length of the UTF-8 sequence starting with `lead` (1 for invalid lead bytes).
int utf8_length(unsigned char lead);

// Unicode Normalization Form C (canonical decomposition, reordering, canonical composition), from tables generated
// out of the Unicode Character Database (see make_unicode_tables.py for the version).
std::string nfc(std::string_view s);

}  // namespace weft
