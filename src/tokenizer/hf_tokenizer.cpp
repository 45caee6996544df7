// weft/src/tokenizer/hf_tokenizer.cpp v1 — tokenizer.json loading, encoding and decoding.
#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "util/error.h"

namespace weft {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const fs::path& p) {
  std::ifstream in(p);
  WEFT_CHECK(in, "cannot open '", p.string(), "'");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail(str(p.string(), ": not valid JSON: ", e.what()));
  }
}

// The post-processor's template for one sequence: specials before and after the text.
void read_template(const json& pp, std::vector<std::string>& before, std::vector<std::string>& after,
                   const std::string& where) {
  if (pp.is_null()) return;
  const std::string type = pp.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : pp.at("processors")) read_template(p, before, after, where);
  } else if (type == "TemplateProcessing") {
    bool seen_sequence = false;
    for (const auto& item : pp.at("single")) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
      } else {
        const std::string id = item.at("SpecialToken").at("id");
        const auto& tokens = pp.at("special_tokens").at(id).at("tokens");
        for (const auto& t : tokens) (seen_sequence ? after : before).push_back(t.get<std::string>());
      }
    }
  } else if (type != "ByteLevel") {
    fail(str(where, ": post-processor '", type, "' is not supported (TemplateProcessing, ByteLevel, Sequence)"));
  }
}

bool is_space_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

HfTokenizer::HfTokenizer(const std::string& path) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "tokenizer.json";
  path_ = file.string();
  const json j = read_json(file);
  model_ = std::make_unique<Bpe>(j.at("model"), path_);
  normalizer_ = Normalizer::from_json(j.value("normalizer", json()), path_);
  pre_tokenizer_ = PreTokenizer::from_json(j.value("pre_tokenizer", json()), path_);
  decoder_ = Decoder::from_json(j.value("decoder", json()), path_);
  byte_level_decoder_ = j.contains("decoder") && j["decoder"].is_object() && j["decoder"].value("type", "") == "ByteLevel";
  vocab_size_ = model_->max_id() + 1;
  for (const auto& a : j.value("added_tokens", json::array())) {
    Added t{a.at("content"), a.at("id"), a.value("special", false), a.value("normalized", false),
            a.value("lstrip", false), a.value("rstrip", false), a.value("single_word", false)};
    vocab_size_ = std::max<int64_t>(vocab_size_, t.id + 1);
    added_by_id_[t.id] = t.content;
    added_.push_back(std::move(t));
  }
  // Longest first, so the first content that matches at a position is the longest one.
  std::stable_sort(added_.begin(), added_.end(), [](const Added& a, const Added& b) { return a.content.size() > b.content.size(); });
  for (const Added& a : added_)
    if (!a.content.empty()) by_first_byte_[static_cast<unsigned char>(a.content[0])].push_back(&a);
  std::vector<std::string> before, after;
  read_template(j.value("post_processor", json()), before, after, path_);
  for (const auto& t : before) prefix_specials_.push_back(require_id(t));
  for (const auto& t : after) suffix_specials_.push_back(require_id(t));

  const fs::path config = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(config)) {
    const json c = read_json(config);
    if (c.contains("eos_token") && !c["eos_token"].is_null()) {
      const json& e = c["eos_token"];
      eos_ = require_id(e.is_string() ? e.get<std::string>() : e.at("content").get<std::string>());
    }
  }
}

std::optional<int32_t> HfTokenizer::token_id(const std::string& token) const {
  for (const Added& a : added_)
    if (a.content == token) return a.id;
  return model_->id_of(token);
}

int32_t HfTokenizer::require_id(const std::string& token) const {
  const auto id = token_id(token);
  WEFT_CHECK(id.has_value(), path_, ": no token '", token, "'");
  return *id;
}

int32_t HfTokenizer::eod() const {
  WEFT_CHECK(eos_.has_value(), path_, ": no eos_token in tokenizer_config.json to use as end-of-document");
  return *eos_;
}

// Splits the text pieces around added tokens whose `normalized` flag equals `normalized` (leftmost-longest).
void HfTokenizer::split_added(std::vector<Piece>& pieces, bool normalized) const {
  std::vector<Piece> out;
  for (Piece& p : pieces) {
    if (p.added_id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    const std::string& s = p.text;
    size_t start = 0;
    for (size_t i = 0; i < s.size();) {
      const Added* hit = nullptr;
      for (const Added* candidate : by_first_byte_[static_cast<unsigned char>(s[i])]) {
        const Added& a = *candidate;
        if (a.normalized != normalized || s.compare(i, a.content.size(), a.content) != 0) continue;
        if (a.single_word) {
          const bool left_ok = i == 0 || is_space_byte(s[i - 1]);
          const size_t e = i + a.content.size();
          if (!left_ok || (e < s.size() && !is_space_byte(s[e]))) continue;
        }
        hit = &a;
        break;
      }
      if (!hit) {
        ++i;
        continue;
      }
      size_t text_end = i, next = i + hit->content.size();
      if (hit->lstrip)
        while (text_end > start && is_space_byte(s[text_end - 1])) --text_end;
      if (hit->rstrip)
        while (next < s.size() && is_space_byte(s[next])) ++next;
      if (text_end > start) out.push_back({s.substr(start, text_end - start), -1});
      out.push_back({hit->content, hit->id});
      start = i = next;
    }
    if (start < s.size()) out.push_back({s.substr(start), -1});
  }
  pieces = std::move(out);
}

std::vector<int32_t> HfTokenizer::encode_pieces(std::string_view text) const {
  std::vector<Piece> pieces{{std::string(text), -1}};
  split_added(pieces, false);
  if (normalizer_)
    for (Piece& p : pieces)
      if (p.added_id < 0) p.text = normalizer_->apply(std::move(p.text));
  split_added(pieces, true);
  std::vector<int32_t> ids;
  for (const Piece& p : pieces) {
    if (p.added_id >= 0) {
      ids.push_back(p.added_id);
      continue;
    }
    if (p.text.empty()) continue;
    const std::vector<std::string> words = pre_tokenizer_ ? pre_tokenizer_->apply({p.text}) : std::vector{p.text};
    for (const std::string& w : words) {
      const std::vector<int32_t> w_ids = model_->tokenize(w);
      ids.insert(ids.end(), w_ids.begin(), w_ids.end());
    }
  }
  return ids;
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text) const { return encode_pieces(text); }

std::vector<int32_t> HfTokenizer::encode_with_specials(std::string_view text) const {
  std::vector<int32_t> ids = prefix_specials_;
  const std::vector<int32_t> body = encode_pieces(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.insert(ids.end(), suffix_specials_.begin(), suffix_specials_.end());
  return ids;
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<std::string> tokens;
  std::vector<bool> added;
  for (int32_t id : ids) {
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
      tokens.push_back(it->second);
      added.push_back(true);
    } else if (const std::string* t = model_->token_of(id)) {
      tokens.push_back(*t);
      added.push_back(false);
    } else {
      fail(str(path_, ": cannot decode id ", id, " (outside the vocabulary)"));
    }
  }
  if (!decoder_) {
    std::string out;
    for (const auto& t : tokens) out += t;
    return out;
  }
  if (!byte_level_decoder_) {
    std::string out;
    for (const auto& t : decoder_->apply(tokens)) out += t;
    return out;
  }
  // Byte-level decoding maps characters back to bytes; added tokens are text already and pass through as is.
  std::string out;
  std::vector<std::string> run;
  auto flush = [&] {
    if (run.empty()) return;
    for (const auto& t : decoder_->apply(run)) out += t;
    run.clear();
  };
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (added[i]) {
      flush();
      out += tokens[i];
    } else {
      run.push_back(tokens[i]);
    }
  }
  flush();
  return out;
}

}  // namespace weft
