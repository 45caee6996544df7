// weft/src/tokenizer/pipeline.h v1 — the stages of a tokenizer.json around its model: normalizers,
// pre-tokenizers and decoders, built from their JSON descriptions.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/regex.h"

namespace weft {

// NFC, Prepend, Replace (string or regex patterns), Lowercase, Strip, and Sequences of them.
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string text) const = 0;
  // null → nullptr (no normalization); unknown types are errors naming the type.
  static std::unique_ptr<Normalizer> from_json(const nlohmann::json& j, const std::string& where);
};

// Split (regex or string; Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous), ByteLevel,
// Metaspace, Digits, and Sequences of them. Each turns pieces of text into finer pieces.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual std::vector<std::string> apply(const std::vector<std::string>& pieces) const = 0;
  static std::unique_ptr<PreTokenizer> from_json(const nlohmann::json& j, const std::string& where);
};

// ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, and Sequences of them, over token strings.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> apply(std::vector<std::string> tokens) const = 0;
  static std::unique_ptr<Decoder> from_json(const nlohmann::json& j, const std::string& where);
};

// GPT-2's byte ↔ printable-character map used by ByteLevel stages.
const std::string& byte_to_char(unsigned char b);
// The byte a ByteLevel character stands for, or -1.
int char_to_byte(uint32_t cp);

}  // namespace weft
