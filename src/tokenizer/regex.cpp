// weft/src/tokenizer/regex.cpp v1 — PCRE2 wrapper.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace weft {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  pcre2_match_data* match = nullptr;
};

Regex::Regex(const std::string& pattern) : pattern_(pattern), impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &offset, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail(str("tokenizer regex '", pattern, "' does not compile at offset ", offset, ": ", reinterpret_cast<char*>(msg)));
  }
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter where JIT is unavailable
  impl_->match = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
}

Regex::~Regex() {
  if (impl_->match) pcre2_match_data_free(impl_->match);
  if (impl_->code) pcre2_code_free(impl_->code);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  size_t start = 0;
  // PCRE2 validates the whole subject's UTF-8 on every call unless told not to: check it on the first call only,
  // or scanning a text match by match costs quadratic time.
  uint32_t options = 0;
  while (start <= text.size()) {
    const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start, options,
                               impl_->match, nullptr);
    options = PCRE2_NO_UTF_CHECK;
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21) fail("tokenizer: the text is not valid UTF-8");
    WEFT_CHECK(rc >= 0, "tokenizer regex '", pattern_, "': match error ", rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(impl_->match);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      start = e;
    } else {  // an empty match: step over one character
      start = e + (e < text.size() ? utf8_length(static_cast<unsigned char>(text[e])) : 1);
    }
  }
  return out;
}

}  // namespace weft
