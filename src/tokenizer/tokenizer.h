// weft/src/tokenizer/tokenizer.h v1 — text ↔ token ids.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace weft {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int32_t eod() const = 0;  // the end-of-document id appended between documents
};

// Byte-level ids: each UTF-8 byte is its own id (0..255), EOD = 256; vocabulary 257. Needs no files, so the demo
// and the tests run anywhere.
class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return 257; }
  int32_t eod() const override { return 256; }
};

// "bytes" → ByteTokenizer; otherwise a tokenizer.json path (or its directory) → HfTokenizer.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

}  // namespace weft
