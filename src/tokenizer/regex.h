// weft/src/tokenizer/regex.h v1 — PCRE2 (UTF + UCP, JIT-compiled) for the tokenizers' split patterns.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft {

class Regex {
 public:
  // Compiles `pattern` (UTF-8) with Unicode properties for \s, \w, \d; throws weft::Error with the PCRE2 message.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Every non-overlapping match in `text`, as byte ranges [begin, end).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft
