// weft/src/tokenizer/bpe.h v1 — the BPE model of HF tokenizer.json: merges applied by rank with a priority queue.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace weft {

class Bpe {
 public:
  // Reads the "model" object of tokenizer.json (merges as "a b" strings or ["a", "b"] pairs).
  explicit Bpe(const nlohmann::json& model, const std::string& where);
  // The ids of one pre-tokenized word: its characters, merged lowest rank first (leftmost on ties); characters
  // missing from the vocabulary become <0xXX> byte tokens (byte_fallback) or the unknown token.
  std::vector<int32_t> tokenize(std::string_view word) const;
  std::optional<int32_t> id_of(std::string_view token) const;
  // The token string of an id, or nullptr.
  const std::string* token_of(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  bool byte_fallback() const { return byte_fallback_; }

 private:
  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  // (left id, right id) → (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::optional<int32_t> unk_;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  int32_t byte_ids_[256];
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace weft
