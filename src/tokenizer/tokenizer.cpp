// weft/src/tokenizer/tokenizer.cpp v1 — the byte tokenizer and tokenizer selection.
#include "tokenizer/tokenizer.h"

#include "tokenizer/hf_tokenizer.h"

#include "util/error.h"

namespace weft {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids)
    if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  if (spec == "bytes") return std::make_unique<ByteTokenizer>();
  return std::make_unique<HfTokenizer>(spec);
}

}  // namespace weft
