// weft/src/data/indexed_dataset.cpp v3 — reading and writing Megatron .bin/.idx files.
#include "data/indexed_dataset.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "util/error.h"

namespace weft {
namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename Src>
void widen(const uint8_t* src, int64_t n, int32_t* out, const std::string& file) {
  for (int64_t i = 0; i < n; ++i) {
    const Src v = load<Src>(src + i * sizeof(Src));
    const double d = static_cast<double>(v);
    WEFT_CHECK(d >= 0 && d <= 2147483647.0 && d == std::floor(d), file, ": token value ", d,
               " is not a valid token id");
    out[i] = static_cast<int32_t>(v);
  }
}

}  // namespace

size_t token_dtype_size(TokenDType t) {
  switch (t) {
    case TokenDType::u8:
    case TokenDType::i8: return 1;
    case TokenDType::i16:
    case TokenDType::u16: return 2;
    case TokenDType::i32:
    case TokenDType::f32: return 4;
    case TokenDType::i64:
    case TokenDType::f64: return 8;
  }
  return 0;
}

TokenDType optimal_token_dtype(int64_t vocab_size) {
  return vocab_size < 65500 ? TokenDType::u16 : TokenDType::i32;
}

IndexedDataset::IndexedDataset(const std::string& prefix) : prefix_(prefix) {
  const std::string idx_path = prefix + ".idx", bin_path = prefix + ".bin";
  idx_ = std::make_unique<MappedFile>(idx_path);
  bin_ = std::make_unique<MappedFile>(bin_path);
  const uint8_t* p = idx_->data();
  const size_t n = idx_->size();
  constexpr size_t kHeader = 9 + 8 + 1 + 8 + 8;
  WEFT_CHECK(n >= kHeader, idx_path, ": ", n, " bytes is shorter than the ", kHeader, "-byte index header");
  WEFT_CHECK(std::memcmp(p, kMagic, 9) == 0, idx_path, ": not a Megatron index (bad magic; expected MMIDIDX)");
  const uint64_t version = load<uint64_t>(p + 9);
  WEFT_CHECK(version == 1, idx_path, ": index version ", version, ", expected 1");
  const uint8_t code = p[17];
  WEFT_CHECK(code >= 1 && code <= 8, idx_path, ": unknown dtype code ", int(code), " (expected 1..8)");
  dtype_ = static_cast<TokenDType>(code);
  const uint64_t count = load<uint64_t>(p + 18), docs = load<uint64_t>(p + 26);
  const uint64_t need = kHeader + count * (4 + 8) + docs * 8;
  WEFT_CHECK(count < (uint64_t(1) << 40) && docs < (uint64_t(1) << 40) && need <= n, idx_path, ": header claims ",
             count, " sequences and ", docs, " document entries (", need, " bytes), but the file has ", n);
  count_ = static_cast<int64_t>(count);
  doc_count_ = static_cast<int64_t>(docs);
  // Read in place (copying would double the memory of a large corpus), element by element through memcpy.
  lengths_ = p + kHeader;
  pointers_ = p + kHeader + 4 * count;
  docs_ = p + kHeader + 12 * count;

  const int64_t itemsize = static_cast<int64_t>(token_dtype_size(dtype_));
  const int64_t bin_size = static_cast<int64_t>(bin_->size());
  // Megatron's builder writes the sequences back to back from byte 0 to the end of the .bin: any gap, overlap or
  // leftover means the index does not describe this file (another dtype code than the data's, bytes appended).
  int64_t end = 0;
  for (int64_t i = 0; i < count_; ++i) {
    const int64_t len = element<int32_t>(lengths_, i), ptr = element<int64_t>(pointers_, i);
    WEFT_CHECK(len >= 0 && ptr >= 0 && ptr % itemsize == 0 && ptr <= bin_size && len <= (bin_size - ptr) / itemsize,
               idx_path,
               ": sequence ", i, " (pointer ", ptr, ", length ", len, ") lies outside ", bin_path, " (", bin_size,
               " bytes)");
    WEFT_CHECK(ptr == end, idx_path, ": sequence ", i, " starts at byte ", ptr, " of ", bin_path, ", but the sequences "
               "before it end at byte ", end, " (a dtype code of ", itemsize, "-byte tokens that is not the data's?)");
    end = ptr + len * itemsize;
  }
  WEFT_CHECK(end == bin_size, bin_path, ": ", bin_size, " bytes, but ", idx_path, " describes ", end, " (", count_,
             " sequences of ", itemsize, "-byte tokens, dtype code ", int(code), "): bytes appended, or a dtype code "
             "that is not the data's");
  WEFT_CHECK(doc_count_ >= 1 && document_index(0) == 0 && document_index(doc_count_ - 1) == count_, idx_path,
             ": document indices must run from 0 to the sequence count ", count_);
  for (int64_t d = 1; d < doc_count_; ++d)
    WEFT_CHECK(document_index(d) >= document_index(d - 1), idx_path, ": document indices decrease at entry ", d);
}

void IndexedDataset::read(int64_t seq, int64_t offset, int64_t length, int32_t* out) const {
  WEFT_CHECK(seq >= 0 && seq < count_ && offset >= 0 && length >= 0 && offset + length <= sequence_length(seq),
             prefix_,
             ": read of tokens [", offset, ", ", offset + length, ") of sequence ", seq, " is out of range");
  const size_t itemsize = token_dtype_size(dtype_);
  const uint8_t* src = bin_->data() + element<int64_t>(pointers_, seq) + offset * static_cast<int64_t>(itemsize);
  const std::string& f = bin_->path();
  switch (dtype_) {
    case TokenDType::u8: widen<uint8_t>(src, length, out, f); break;
    case TokenDType::i8: widen<int8_t>(src, length, out, f); break;
    case TokenDType::i16: widen<int16_t>(src, length, out, f); break;
    case TokenDType::u16: widen<uint16_t>(src, length, out, f); break;
    case TokenDType::i32: widen<int32_t>(src, length, out, f); break;
    case TokenDType::i64: widen<int64_t>(src, length, out, f); break;
    case TokenDType::f32: widen<float>(src, length, out, f); break;
    case TokenDType::f64: widen<double>(src, length, out, f); break;
  }
}

// ---------------------------------------------------------------- writer

IndexedDatasetWriter::IndexedDatasetWriter(const std::string& prefix, TokenDType dtype)
    : prefix_(prefix), dtype_(dtype), bin_(std::make_unique<AtomicFile>(prefix + ".bin")) {}

IndexedDatasetWriter::~IndexedDatasetWriter() = default;

void IndexedDatasetWriter::add_sequence(const std::vector<int32_t>& tokens) {
  const size_t itemsize = token_dtype_size(dtype_);
  const size_t base = buffer_.size();
  buffer_.resize(base + tokens.size() * itemsize);
  uint8_t* dst = buffer_.data() + base;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    switch (dtype_) {
      case TokenDType::u16: {
        WEFT_CHECK(t >= 0 && t <= 65535, prefix_, ": token id ", t, " does not fit uint16");
        const uint16_t v = static_cast<uint16_t>(t);
        std::memcpy(dst + i * 2, &v, 2);
        break;
      }
      case TokenDType::i32: std::memcpy(dst + i * 4, &t, 4); break;
      case TokenDType::u8: {
        WEFT_CHECK(t >= 0 && t <= 255, prefix_, ": value ", t, " does not fit uint8");
        dst[i] = static_cast<uint8_t>(t);
        break;
      }
      default: fail(str(prefix_, ": the writer stores uint8, uint16 or int32 values"));
    }
  }
  lengths_.push_back(static_cast<int32_t>(tokens.size()));
  if (buffer_.size() >= (size_t(1) << 24)) flush();
}

void IndexedDatasetWriter::end_document() { docs_.push_back(static_cast<int64_t>(lengths_.size())); }

void IndexedDatasetWriter::flush() {
  bin_->write(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void IndexedDatasetWriter::finish() {
  flush();
  std::vector<uint8_t> out(kMagic, kMagic + 9);
  auto put = [&](const void* v, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(v);
    out.insert(out.end(), b, b + n);
  };
  const uint64_t version = 1, count = lengths_.size(), docs = docs_.size();
  const uint8_t code = static_cast<uint8_t>(dtype_);
  put(&version, 8);
  put(&code, 1);
  put(&count, 8);
  put(&docs, 8);
  put(lengths_.data(), lengths_.size() * 4);
  int64_t ptr = 0;
  for (int32_t len : lengths_) {
    put(&ptr, 8);
    ptr += int64_t(len) * static_cast<int64_t>(token_dtype_size(dtype_));
  }
  put(docs_.data(), docs_.size() * 8);
  AtomicFile idx(prefix_ + ".idx");
  idx.write(out.data(), out.size());
  bin_->commit();
  idx.commit();
}

}  // namespace weft

namespace weft {

void merge_indexed_datasets(const std::vector<std::string>& parts, const std::string& prefix) {
  WEFT_CHECK(!parts.empty(), "merge: no parts");
  std::vector<std::unique_ptr<IndexedDataset>> in;
  for (const auto& p : parts) in.push_back(std::make_unique<IndexedDataset>(p));
  const TokenDType dtype = in.front()->dtype();
  IndexedDatasetWriter out(prefix, dtype);
  std::vector<int32_t> seq;
  for (const auto& d : in) {
    WEFT_CHECK(d->dtype() == dtype, d->prefix(), ": dtype differs from the other parts");
    for (int64_t doc = 0; doc < d->num_documents(); ++doc) {
      for (int64_t s = d->document_index(doc); s < d->document_index(doc + 1); ++s) {
        seq.resize(static_cast<size_t>(d->sequence_length(s)));
        d->read(s, 0, d->sequence_length(s), seq.data());
        out.add_sequence(seq);
      }
      out.end_document();
    }
  }
  out.finish();
}

}  // namespace weft
