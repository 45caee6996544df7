// weft/src/tokenizer/bpe.cpp v1 — BPE merges in O(n log n) per word, with a per-word cache.
#include "tokenizer/bpe.h"

#include <cstdio>
#include <queue>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace weft {

Bpe::Bpe(const nlohmann::json& model, const std::string& where) {
  WEFT_CHECK(model.value("type", "") == "BPE", where, ": model type '", model.value("type", ""),
             "' is not supported (weft reads BPE tokenizers)");
  WEFT_CHECK(model.contains("vocab") && model["vocab"].is_object(), where, ": model has no vocab");
  for (auto& [token, id] : model["vocab"].items()) {
    WEFT_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < (int64_t(1) << 26), where,
               ": vocab entry '", token, "' has id ", id.dump(), " (expected an integer in [0, 2^26))");
    const int32_t i = id.get<int32_t>();
    vocab_[token] = i;
    if (static_cast<size_t>(i) >= id_to_token_.size()) id_to_token_.resize(i + 1);
    id_to_token_[i] = token;
  }
  byte_fallback_ = model.value("byte_fallback", false);
  fuse_unk_ = model.value("fuse_unk", false);
  ignore_merges_ = model.value("ignore_merges", false);
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab_.find(model["unk_token"].get<std::string>());
    WEFT_CHECK(it != vocab_.end(), where, ": unk_token is not in the vocabulary");
    unk_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = vocab_.find(name);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
  const auto& merges = model.at("merges");
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    std::string a, b;
    if (merges[rank].is_string()) {
      const std::string m = merges[rank].get<std::string>();
      const auto sp = m.find(' ', 1);
      WEFT_CHECK(sp != std::string::npos, where, ": merge ", rank, " '", m, "' is not 'a b'");
      a = m.substr(0, sp);
      b = m.substr(sp + 1);
    } else {
      a = merges[rank].at(0).get<std::string>();
      b = merges[rank].at(1).get<std::string>();
    }
    const auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
    WEFT_CHECK(ia != vocab_.end() && ib != vocab_.end() && im != vocab_.end(), where, ": merge ", rank, " ('", a,
               "', '", b, "') uses a token missing from the vocabulary");
    const uint64_t key = (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second);
    merges_.emplace(key, std::pair{static_cast<int32_t>(rank), im->second});  // the first (lowest) rank wins
  }
}

std::optional<int32_t> Bpe::id_of(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::token_of(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || id_to_token_[id].empty()) return nullptr;
  return &id_to_token_[id];
}

std::vector<int32_t> Bpe::tokenize(std::string_view word) const {
  if (word.empty()) return {};
  const std::string key(word);
  if (auto hit = cache_.find(key); hit != cache_.end()) return hit->second;
  if (ignore_merges_) {
    if (auto it = vocab_.find(key); it != vocab_.end()) return cache_[key] = {it->second};
  }
  // Symbols: one per character (or per byte when a character falls back to bytes); -1 marks "unknown".
  std::vector<int32_t> ids;
  for (size_t i = 0; i < word.size();) {
    const int n = utf8_length(static_cast<unsigned char>(word[i]));
    const std::string ch(word.substr(i, n));
    i += n;
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      ids.push_back(it->second);
    } else if (byte_fallback_) {
      for (unsigned char c : ch) {
        WEFT_CHECK(byte_ids_[c] >= 0, "tokenizer: byte_fallback without a <0x", std::hex, int(c), "> token");
        ids.push_back(byte_ids_[c]);
      }
    } else {
      WEFT_CHECK(unk_.has_value(), "tokenizer: character '", ch, "' is not in the vocabulary and there is no unk_token");
      if (!(fuse_unk_ && !ids.empty() && ids.back() == *unk_)) ids.push_back(*unk_);
    }
  }
  // Doubly linked symbols and a heap of candidate merges (rank, left position); stale entries are skipped.
  const int n = static_cast<int>(ids.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  using Cand = std::tuple<int32_t, int, int32_t, int32_t>;  // rank, left, left id, right id
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int left) {
    const int right = next[left];
    if (left < 0 || right < 0) return;
    const auto it = merges_.find((uint64_t(uint32_t(ids[left])) << 32) | uint32_t(ids[right]));
    if (it != merges_.end()) heap.emplace(it->second.first, left, ids[left], ids[right]);
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const auto [rank, left, lid, rid] = heap.top();
    heap.pop();
    const int right = next[left];
    if (ids[left] != lid || right < 0 || ids[right] != rid) continue;  // a neighbour merged meanwhile
    ids[left] = merges_.at((uint64_t(uint32_t(lid)) << 32) | uint32_t(rid)).second;
    ids[right] = -2;  // removed
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    push(left);
    if (prev[left] >= 0) push(prev[left]);
  }
  std::vector<int32_t> out;
  for (int i = 0; i >= 0 && i < n; i = next[i]) out.push_back(ids[i]);
  cache_[key] = out;
  return out;
}

}  // namespace weft
