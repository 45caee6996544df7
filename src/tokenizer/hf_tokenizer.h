// weft/src/tokenizer/hf_tokenizer.h v1 — a HuggingFace tokenizer.json (+ tokenizer_config.json) in C++.
//
// Encoding follows the library's pipeline: added tokens are split out of the raw text first (leftmost-longest;
// special tokens are recognised inside text), each remaining piece is normalized, pre-tokenized and run through
// the BPE model; the post-processor adds BOS/EOS when asked. Covers the byte-level BPE files of Llama 3, Qwen2
// and DeepSeek, and the metaspace / byte-fallback BPE of Llama 2 and Mistral.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace weft {

class HfTokenizer final : public Tokenizer {
 public:
  // `path`: tokenizer.json, or a directory holding it (tokenizer_config.json beside it is read when present).
  explicit HfTokenizer(const std::string& path);
  // Ids of `text` without the post-processor's special tokens (add_special_tokens = false).
  std::vector<int32_t> encode(std::string_view text) const override;
  // Ids with the post-processor's special tokens (BOS for Llama 2, ...).
  std::vector<int32_t> encode_with_specials(std::string_view text) const;
  // Text of ids, special tokens included.
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  // The end-of-document id: tokenizer_config.json's eos_token.
  int32_t eod() const override;
  // The id of a token string (added token or vocabulary entry).
  std::optional<int32_t> token_id(const std::string& token) const;
  // The id of a token string, or an error naming the tokenizer and the token.
  int32_t require_id(const std::string& token) const;
  const std::string& path() const { return path_; }

 private:
  struct Added {
    std::string content;
    int32_t id;
    bool special, normalized, lstrip, rstrip, single_word;
  };
  struct Piece {
    std::string text;
    int32_t added_id = -1;  // >= 0: an added token
  };
  void split_added(std::vector<Piece>& pieces, bool normalized) const;
  std::vector<int32_t> encode_pieces(std::string_view text) const;

  std::string path_;
  std::unique_ptr<Bpe> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  bool byte_level_decoder_ = false;
  std::vector<Added> added_;
  std::vector<const Added*> by_first_byte_[256];  // added tokens by their first byte, longest first
  std::unordered_map<int32_t, std::string> added_by_id_;
  std::vector<int32_t> prefix_specials_, suffix_specials_;  // the post-processor's template around the text
  int64_t vocab_size_ = 0;
  std::optional<int32_t> eos_;
};

}  // namespace weft
