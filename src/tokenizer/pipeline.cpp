// weft/src/tokenizer/pipeline.cpp v1 — normalizers, pre-tokenizers and decoders of tokenizer.json.
#include "tokenizer/pipeline.h"

#include <array>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace weft {
using nlohmann::json;

namespace {

// ---------------------------------------------------------------- byte level map

struct ByteMap {
  std::array<std::string, 256> to_char;
  std::array<int, 512> to_byte;  // indexed by code point (all mapped code points are below 324)
  ByteMap() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? b : 256 + extra++;
      utf8_append(to_char[b], cp);
      to_byte[cp] = b;
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// A JSON pattern {"String": s} or {"Regex": r} as a regex (strings escaped).
std::string pattern_of(const json& p, const std::string& where) {
  if (p.contains("Regex")) return p["Regex"].get<std::string>();
  WEFT_CHECK(p.contains("String"), where, ": pattern must be String or Regex");
  std::string out = "\\Q" + p["String"].get<std::string>() + "\\E";
  return out;
}

// ---------------------------------------------------------------- normalizers

class NfcNormalizer final : public Normalizer {
 public:
  std::string apply(std::string text) const override { return nfc(text); }
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prepend_(std::move(p)) {}
  std::string apply(std::string text) const override { return text.empty() ? text : prepend_ + text; }

 private:
  std::string prepend_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(const std::string& pattern, std::string content) : re_(pattern), content_(std::move(content)) {}
  std::string apply(std::string text) const override {
    std::string out;
    size_t at = 0;
    for (auto [b, e] : re_.find_all(text)) {
      out.append(text, at, b - at);
      out += content_;
      at = e;
    }
    out.append(text, at, std::string::npos);
    return out;
  }

 private:
  Regex re_;
  std::string content_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  std::string apply(std::string text) const override {
    for (char& c : text)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return text;
  }
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string apply(std::string text) const override {
    for (const auto& p : parts_) text = p->apply(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// ---------------------------------------------------------------- pre-tokenizers

enum class SplitBehavior { isolated, removed, merged_with_previous, merged_with_next, contiguous };

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(const std::string& pattern, SplitBehavior b, bool invert) : re_(pattern), behavior_(b), invert_(invert) {}
  std::vector<std::string> apply(const std::vector<std::string>& pieces) const override {
    std::vector<std::string> out;
    for (const std::string& text : pieces) {
      // (begin, end, is_match) spans covering the text.
      std::vector<std::tuple<size_t, size_t, bool>> spans;
      size_t at = 0;
      for (auto [b, e] : re_.find_all(text)) {
        if (b > at) spans.emplace_back(at, b, invert_);
        spans.emplace_back(b, e, !invert_);
        at = e;
      }
      if (at < text.size()) spans.emplace_back(at, text.size(), invert_);
      std::vector<std::string> parts;
      bool pending_merge = false;
      for (auto [b, e, match] : spans) {
        const std::string s = text.substr(b, e - b);
        switch (behavior_) {
          case SplitBehavior::isolated: parts.push_back(s); break;
          case SplitBehavior::removed:
            if (!match) parts.push_back(s);
            break;
          case SplitBehavior::merged_with_previous:
            if (match && !parts.empty()) parts.back() += s;
            else parts.push_back(s);
            break;
          case SplitBehavior::merged_with_next:
            if (pending_merge) parts.back() += s;
            else parts.push_back(s);
            pending_merge = match;
            break;
          case SplitBehavior::contiguous:
            if (match && pending_merge) parts.back() += s;
            else parts.push_back(s);
            pending_merge = match;
            break;
        }
      }
      for (auto& p : parts)
        if (!p.empty()) out.push_back(std::move(p));
    }
    return out;
  }

 private:
  Regex re_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex)
      gpt2_ = std::make_unique<SplitPreTokenizer>(
          R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", SplitBehavior::isolated, false);
  }
  std::vector<std::string> apply(const std::vector<std::string>& pieces) const override {
    std::vector<std::string> in = pieces;
    if (add_prefix_space_ && !in.empty() && !in.front().empty() && in.front()[0] != ' ') in.front() = " " + in.front();
    if (gpt2_) in = gpt2_->apply(in);
    std::vector<std::string> out;
    for (const std::string& p : in) {
      std::string mapped;
      for (unsigned char c : p) mapped += byte_map().to_char[c];
      out.push_back(std::move(mapped));
    }
    return out;
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<SplitPreTokenizer> gpt2_;
};

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, std::string scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(std::move(scheme)), split_(split) {}
  std::vector<std::string> apply(const std::vector<std::string>& pieces) const override {
    std::vector<std::string> out;
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string s;
      for (char c : pieces[i]) {
        if (c == ' ') s += replacement_;
        else s.push_back(c);
      }
      const bool prepend = scheme_ == "always" || (scheme_ == "first" && i == 0);
      if (prepend && s.rfind(replacement_, 0) != 0) s = replacement_ + s;
      if (!split_) {
        out.push_back(s);
        continue;
      }
      // Split before every replacement character (MergedWithNext).
      size_t start = 0;
      for (size_t at = s.find(replacement_, 1); at != std::string::npos; at = s.find(replacement_, at + 1)) {
        out.push_back(s.substr(start, at - start));
        start = at;
      }
      out.push_back(s.substr(start));
    }
    return out;
  }

 private:
  std::string replacement_, scheme_;
  bool split_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  std::vector<std::string> apply(const std::vector<std::string>& pieces) const override {
    std::vector<std::string> p = pieces;
    for (const auto& part : parts_) p = part->apply(p);
    return p;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

// ---------------------------------------------------------------- decoders

class ByteLevelDecoder final : public Decoder {
 public:
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens)
      for (uint32_t cp : utf8_decode(t)) {
        const int b = char_to_byte(cp);
        if (b >= 0) bytes.push_back(static_cast<char>(b));
        else utf8_append(bytes, cp);
      }
    return {utf8_encode(utf8_decode(bytes))};  // invalid sequences become U+FFFD, as lossy decoders do
  }
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(const std::string& pattern, std::string content) : re_(pattern), content_(std::move(content)) {}
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      std::string out;
      size_t at = 0;
      for (auto [b, e] : re_.find_all(t)) {
        out.append(t, at, b - at);
        out += content_;
        at = e;
      }
      out.append(t, at, std::string::npos);
      t = out;
    }
    return tokens;
  }

 private:
  Regex re_;
  std::string content_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      out.push_back(utf8_encode(utf8_decode(bytes)));
      bytes.clear();
    };
    for (const std::string& t : tokens) {
      unsigned v = 0;
      if (t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>' && std::sscanf(t.c_str() + 3, "%2X", &v) == 1) {
        bytes.push_back(static_cast<char>(v));
        continue;
      }
      flush();
      out.push_back(t);
    }
    flush();
    return out;
  }
};

class FuseDecoder final : public Decoder {
 public:
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    return {all};
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      for (int i = 0; i < start_ && t.rfind(content_, 0) == 0; ++i) t.erase(0, content_.size());
      for (int i = 0; i < stop_ && t.size() >= content_.size() &&
                      t.compare(t.size() - content_.size(), content_.size(), content_) == 0; ++i)
        t.erase(t.size() - content_.size());
    }
    return tokens;
  }

 private:
  std::string content_;
  int start_, stop_;
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first) : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t at = 0; at < t.size();) {
        if (t.compare(at, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && at == 0 && strip_first_)) out.push_back(' ');
          at += replacement_.size();
        } else {
          out.push_back(t[at++]);
        }
      }
      tokens[i] = out;
    }
    return tokens;
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  std::vector<std::string> apply(std::vector<std::string> tokens) const override {
    for (const auto& p : parts_) tokens = p->apply(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

const std::string& byte_to_char(unsigned char b) { return byte_map().to_char[b]; }

int char_to_byte(uint32_t cp) { return cp < 512 ? byte_map().to_byte[cp] : -1; }

std::unique_ptr<Normalizer> Normalizer::from_json(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& n : j.at("normalizers"))
      if (auto p = from_json(n, where)) parts.push_back(std::move(p));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "NFC") return std::make_unique<NfcNormalizer>();
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(j.at("prepend").get<std::string>());
  if (type == "Replace")
    return std::make_unique<ReplaceNormalizer>(pattern_of(j.at("pattern"), where), j.at("content").get<std::string>());
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  fail(str(where, ": normalizer '", type, "' is not supported (NFC, Prepend, Replace, Lowercase, Sequence)"));
}

std::unique_ptr<PreTokenizer> PreTokenizer::from_json(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : j.at("pretokenizers")) parts.push_back(from_json(p, where));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "Split") {
    static const std::map<std::string, SplitBehavior> behaviors = {
        {"Isolated", SplitBehavior::isolated}, {"Removed", SplitBehavior::removed},
        {"MergedWithPrevious", SplitBehavior::merged_with_previous},
        {"MergedWithNext", SplitBehavior::merged_with_next}, {"Contiguous", SplitBehavior::contiguous}};
    const std::string b = j.at("behavior").get<std::string>();
    WEFT_CHECK(behaviors.count(b), where, ": Split behavior '", b, "' is not supported");
    return std::make_unique<SplitPreTokenizer>(pattern_of(j.at("pattern"), where), behaviors.at(b),
                                               j.value("invert", false));
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(j.value("add_prefix_space", false), j.value("use_regex", true));
  if (type == "Metaspace") {
    std::string scheme = j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
    return std::make_unique<MetaspacePreTokenizer>(j.value("replacement", "\u2581"), scheme, j.value("split", true));
  }
  if (type == "Digits")
    return std::make_unique<SplitPreTokenizer>(j.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+",
                                               SplitBehavior::isolated, false);
  fail(str(where, ": pre-tokenizer '", type, "' is not supported (Split, ByteLevel, Metaspace, Digits, Sequence)"));
}

std::unique_ptr<Decoder> Decoder::from_json(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& d : j.at("decoders")) parts.push_back(from_json(d, where));
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace")
    return std::make_unique<ReplaceDecoder>(pattern_of(j.at("pattern"), where), j.at("content").get<std::string>());
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip")
    return std::make_unique<StripDecoder>(j.at("content").get<std::string>(), j.value("start", 0), j.value("stop", 0));
  if (type == "Metaspace") {
    const std::string scheme = j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
    return std::make_unique<MetaspaceDecoder>(j.value("replacement", "\u2581"), scheme != "never");
  }
  fail(str(where, ": decoder '", type, "' is not supported"));
}

}  // namespace weft
