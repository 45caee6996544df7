// weft/src/io/safetensors.h v1 — HuggingFace safetensors: validated, memory-mapped reading and writing.
//
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__": {...}}, then the data (offsets relative to its start). Reading checks every claim of the header
// against the file before any tensor is touched; a rank reads only the rows or columns it owns.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/mapped_file.h"
#include "tensor/tensor.h"

namespace weft {

struct SafetensorInfo {
  DType dtype = DType::f32;
  Shape shape;
  size_t begin = 0, end = 0;  // byte range relative to the data section
};

class SafetensorsFile {
 public:
  // Maps and validates `path`: header length within the file, JSON, known dtypes, shape × dtype = byte range,
  // ranges inside the data section and not overlapping. Errors name the file (and tensor).
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_->path(); }
  bool contains(const std::string& name) const { return tensors_.count(name) > 0; }
  // The tensor's entry; throws naming the file and tensor if absent.
  const SafetensorInfo& info(const std::string& name) const;
  const std::map<std::string, SafetensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Rows [row_begin, row_begin + rows) and columns [col_begin, col_begin + cols) of a 1-D or 2-D tensor
  // (a 1-D tensor is one row), converted to doubles into `out` (row-major, rows × cols).
  void read_block(const std::string& name, int64_t row_begin, int64_t rows, int64_t col_begin, int64_t cols,
                  double* out) const;
  // The raw bytes of a tensor (for bit-exact comparisons).
  const uint8_t* raw(const std::string& name) const;

 private:
  std::unique_ptr<MappedFile> file_;
  size_t data_start_ = 0;
  std::map<std::string, SafetensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: model.safetensors, or shards listed in model.safetensors.index.json.
class SafetensorsDir {
 public:
  explicit SafetensorsDir(const std::string& dir);
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  // The file holding `name`; throws naming the directory and the tensor when it is missing.
  const SafetensorsFile& file_of(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
};

// Writes tensors (given as doubles with their shape) into safetensors files of at most `shard_bytes` each,
// named model.safetensors or model-0000i-of-0000n.safetensors with model.safetensors.index.json.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& dir, DType dtype, size_t shard_bytes);
  // Queues a tensor; data is converted to the writer's dtype immediately.
  void add(const std::string& name, const Shape& shape, const std::vector<double>& values);
  // Writes every shard (each to a temporary name, fsynced, then renamed) and the index.
  void finish();

 private:
  struct Entry {
    std::string name;
    Shape shape;
    std::vector<uint8_t> bytes;
  };
  std::string dir_;
  DType dtype_;
  size_t shard_bytes_;
  std::vector<Entry> entries_;
};

// "BF16" → DType::bf16 ...; throws for anything weft cannot hold.
DType safetensors_dtype(const std::string& code, const std::string& where);
const char* safetensors_code(DType t);
float half_to_float(uint16_t h);

}  // namespace weft
