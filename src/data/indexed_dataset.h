// weft/src/data/indexed_dataset.h v1 — Megatron's indexed dataset (.bin tokens + .idx index), read and written.
//
// .idx layout (little endian): "MMIDIDX\0\0", u64 version = 1, u8 dtype code, u64 sequence count, u64 document
// count, i32 sequence lengths[count], i64 byte pointers[count], i64 document indices[document count] (the first
// sequence of each document, then the total: [0, ..., count]). .bin: the tokens of every sequence, back to back.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "io/mapped_file.h"

namespace weft {

// Megatron's DType codes.
enum class TokenDType : uint8_t { u8 = 1, i8 = 2, i16 = 3, i32 = 4, i64 = 5, f64 = 6, f32 = 7, u16 = 8 };
size_t token_dtype_size(TokenDType t);
// Megatron's choice for a vocabulary: uint16 below 65500 ids, else int32.
TokenDType optimal_token_dtype(int64_t vocab_size);

class IndexedDataset {
 public:
  // Maps prefix.idx and prefix.bin and validates the index against both files.
  explicit IndexedDataset(const std::string& prefix);

  const std::string& prefix() const { return prefix_; }
  TokenDType dtype() const { return dtype_; }
  int64_t num_sequences() const { return count_; }
  int64_t num_documents() const { return doc_count_ - 1; }
  int32_t sequence_length(int64_t i) const { return element<int32_t>(lengths_, i); }
  // Sequence indices bounding the documents: document d is sequences [index(d), index(d + 1)).
  int64_t document_index(int64_t d) const { return element<int64_t>(docs_, d); }
  // Tokens [offset, offset + length) of sequence `seq`, widened to int32.
  void read(int64_t seq, int64_t offset, int64_t length, int32_t* out) const;

 private:
  std::string prefix_;
  std::unique_ptr<MappedFile> idx_, bin_;
  TokenDType dtype_ = TokenDType::u16;
  int64_t count_ = 0, doc_count_ = 0;
  // The index's three arrays, read in place: they start at offsets that are not multiples of their element sizes
  // for most counts (after a 34-byte header), so each element is loaded through memcpy.
  const uint8_t *lengths_ = nullptr, *pointers_ = nullptr, *docs_ = nullptr;
  template <typename T>
  static T element(const uint8_t* array, int64_t i) {
    T v;
    std::memcpy(&v, array + i * int64_t(sizeof(T)), sizeof(T));
    return v;
  }
};

// Writes prefix.bin/.idx byte-for-byte as Megatron's IndexedDatasetBuilder does: add sequences, close documents.
class IndexedDatasetWriter {
 public:
  IndexedDatasetWriter(const std::string& prefix, TokenDType dtype);
  ~IndexedDatasetWriter();  // an unfinished writer removes its temporary files
  IndexedDatasetWriter(const IndexedDatasetWriter&) = delete;
  IndexedDatasetWriter& operator=(const IndexedDatasetWriter&) = delete;
  void add_sequence(const std::vector<int32_t>& tokens);  // one sequence of the current document
  void end_document();                                    // closes the current document
  // Writes prefix.idx and closes prefix.bin; nothing is complete until this returns.
  void finish();

 private:
  std::string prefix_;
  TokenDType dtype_;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> docs_{0};
  std::vector<uint8_t> buffer_;
  std::unique_ptr<AtomicFile> bin_;
  void flush();
};

// Concatenates indexed datasets (in order) into prefix.bin/.idx: the result equals writing all their documents
// with one writer (what a multi-rank `weft preprocess` relies on).
void merge_indexed_datasets(const std::vector<std::string>& parts, const std::string& prefix);

}  // namespace weft
