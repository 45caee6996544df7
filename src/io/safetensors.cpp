// weft/src/io/safetensors.cpp v2 — safetensors validation, slicing reads and sharded writes.
#include "io/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "io/atomic_file.h"
#include "util/error.h"

namespace weft {
namespace fs = std::filesystem;
using nlohmann::json;

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      uint32_t m = mant;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

DType safetensors_dtype(const std::string& code, const std::string& where) {
  if (code == "BF16") return DType::bf16;
  if (code == "F16") return DType::f16;
  if (code == "F32") return DType::f32;
  if (code == "F64") return DType::f64;
  if (code == "I32") return DType::i32;
  if (code == "I64") return DType::i64;
  fail(str(where, ": dtype '", code, "' is not supported (expected BF16, F16, F32, F64, I32 or I64)"));
}

const char* safetensors_code(DType t) {
  switch (t) {
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    default: fail(str("safetensors cannot store ", dtype_name(t)));
  }
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const size_t size = file_->size();
  WEFT_CHECK(size >= 8, path, ": ", size, " bytes is too short for a safetensors file (truncated?)");
  uint64_t n = 0;
  std::memcpy(&n, file_->data(), 8);
  WEFT_CHECK(n <= size - 8, path, ": header length ", n, " runs past the end of the file (", size,
             " bytes; truncated?)");
  WEFT_CHECK(n <= (uint64_t(100) << 20), path, ": header length ", n, " exceeds the 100 MB safetensors limit");
  data_start_ = 8 + static_cast<size_t>(n);
  const size_t data_size = size - data_start_;
  json header;
  try {
    header = json::parse(file_->data() + 8, file_->data() + 8 + n);
  } catch (const json::exception& e) {
    fail(str(path, ": header is not valid JSON: ", e.what()));
  }
  WEFT_CHECK(header.is_object(), path, ": header must be a JSON object");
  std::vector<std::pair<std::string, const SafetensorInfo*>> by_offset;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (entry.is_object())
        for (auto& [k, v] : entry.items())
          if (v.is_string()) metadata_[k] = v.get<std::string>();
      continue;
    }
    const std::string where = str(path, ": tensor '", name, "'");
    WEFT_CHECK(entry.is_object() && entry.contains("dtype") && entry.contains("shape") &&
                   entry.contains("data_offsets") && entry["dtype"].is_string() && entry["shape"].is_array() &&
                   entry["data_offsets"].is_array() && entry["data_offsets"].size() == 2,
               where, ": expected {dtype, shape, data_offsets: [begin, end]}");
    SafetensorInfo info;
    info.dtype = safetensors_dtype(entry["dtype"].get<std::string>(), where);
    int64_t numel = 1;
    for (const auto& d : entry["shape"]) {
      WEFT_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, where, ": shape entries must be integers >= 0");
      info.shape.push_back(d.get<int64_t>());
      numel *= d.get<int64_t>();
    }
    const auto& off = entry["data_offsets"];
    WEFT_CHECK(off[0].is_number_unsigned() && off[1].is_number_unsigned(), where, ": data_offsets must be integers");
    info.begin = off[0].get<size_t>();
    info.end = off[1].get<size_t>();
    WEFT_CHECK(info.begin <= info.end && info.end <= data_size, where, ": byte range [", info.begin, ", ", info.end,
               ") lies outside the data section (", data_size, " bytes; truncated?)");
    WEFT_CHECK(static_cast<size_t>(numel) * dtype_size(info.dtype) == info.end - info.begin, where, ": shape ",
               shape_str(info.shape), " × ", safetensors_code(info.dtype), " is ", numel * dtype_size(info.dtype),
               " bytes but its range holds ", info.end - info.begin);
    tensors_[name] = info;
  }
  for (const auto& [name, info] : tensors_) by_offset.emplace_back(name, &info);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    WEFT_CHECK(by_offset[i].second->begin >= by_offset[i - 1].second->end || by_offset[i - 1].second->begin ==
                   by_offset[i - 1].second->end,
               path, ": tensors '", by_offset[i - 1].first, "' and '", by_offset[i].first, "' overlap");
}

const SafetensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  WEFT_CHECK(it != tensors_.end(), path(), ": no tensor '", name, "'");
  return it->second;
}

const uint8_t* SafetensorsFile::raw(const std::string& name) const {
  return file_->data() + data_start_ + info(name).begin;
}

void SafetensorsFile::read_block(const std::string& name, int64_t row_begin, int64_t rows, int64_t col_begin,
                                 int64_t cols, double* out) const {
  const SafetensorInfo& t = info(name);
  WEFT_CHECK(t.shape.size() == 1 || t.shape.size() == 2, path(), ": tensor '", name, "' has shape ",
             shape_str(t.shape), "; expected 1-D or 2-D");
  const int64_t nrows = t.shape.size() == 2 ? t.shape[0] : 1, ncols = t.shape.back();
  WEFT_CHECK(row_begin >= 0 && row_begin + rows <= nrows && col_begin >= 0 && col_begin + cols <= ncols, path(),
             ": tensor '", name, "' ", shape_str(t.shape), " has no block rows [", row_begin, ", ", row_begin + rows,
             ") × columns [", col_begin, ", ", col_begin + cols, ")");
  const uint8_t* base = raw(name);
  const size_t es = dtype_size(t.dtype);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = base + ((row_begin + r) * ncols + col_begin) * es;
    double* dst = out + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const uint8_t* p = row + c * es;
      switch (t.dtype) {
        case DType::bf16: {
          bf16 v;
          std::memcpy(&v.bits, p, 2);
          dst[c] = v.to_float();
          break;
        }
        case DType::f16: {
          uint16_t v;
          std::memcpy(&v, p, 2);
          dst[c] = half_to_float(v);
          break;
        }
        case DType::f32: {
          float v;
          std::memcpy(&v, p, 4);
          dst[c] = v;
          break;
        }
        case DType::f64: std::memcpy(&dst[c], p, 8); break;
        case DType::i32: {
          int32_t v;
          std::memcpy(&v, p, 4);
          dst[c] = v;
          break;
        }
        case DType::i64: {
          int64_t v;
          std::memcpy(&v, p, 8);
          dst[c] = static_cast<double>(v);
          break;
        }
        default: fail("unreachable");
      }
    }
  }
}

// ---------------------------------------------------------------- directories

SafetensorsDir::SafetensorsDir(const std::string& dir) : dir_(dir) {
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> shard_names;
  if (fs::exists(index)) {
    json j;
    try {
      std::ifstream in(index);
      j = json::parse(in);
    } catch (const json::exception& e) {
      fail(str(index.string(), ": not valid JSON: ", e.what()));
    }
    WEFT_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), index.string(), ": no weight_map");
    for (auto& [name, file] : j["weight_map"].items()) {
      WEFT_CHECK(file.is_string(), index.string(), ": weight_map entry '", name, "' is not a file name");
      if (std::find(shard_names.begin(), shard_names.end(), file.get<std::string>()) == shard_names.end())
        shard_names.push_back(file.get<std::string>());
    }
  } else {
    WEFT_CHECK(fs::exists(fs::path(dir) / "model.safetensors"), dir,
               ": no model.safetensors or model.safetensors.index.json (is this a HuggingFace model directory?)");
    shard_names.push_back("model.safetensors");
  }
  for (const std::string& s : shard_names) {
    files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / s).string()));
    for (const auto& [name, info] : files_.back()->tensors()) {
      WEFT_CHECK(!where_.count(name), dir, ": tensor '", name, "' appears in two shards");
      where_[name] = files_.back().get();
    }
  }
}

const SafetensorsFile& SafetensorsDir::file_of(const std::string& name) const {
  auto it = where_.find(name);
  WEFT_CHECK(it != where_.end(), dir_, ": the checkpoint has no tensor '", name, "'");
  return *it->second;
}

std::vector<std::string> SafetensorsDir::names() const {
  std::vector<std::string> out;
  for (const auto& [n, f] : where_) out.push_back(n);
  return out;
}

// ---------------------------------------------------------------- writing

SafetensorsWriter::SafetensorsWriter(const std::string& dir, DType dtype, size_t shard_bytes)
    : dir_(dir), dtype_(dtype), shard_bytes_(shard_bytes) {
  safetensors_code(dtype);  // refuses dtypes safetensors cannot hold
}

void SafetensorsWriter::add(const std::string& name, const Shape& shape, const std::vector<double>& values) {
  WEFT_ASSERT(static_cast<int64_t>(values.size()) == numel_of(shape));
  Entry e{name, shape, std::vector<uint8_t>(values.size() * dtype_size(dtype_))};
  for (size_t i = 0; i < values.size(); ++i) {
    uint8_t* p = e.bytes.data() + i * dtype_size(dtype_);
    switch (dtype_) {
      case DType::bf16: {
        const bf16 v = bf16::from_float(static_cast<float>(values[i]));
        std::memcpy(p, &v.bits, 2);
        break;
      }
      case DType::f32: {
        const float v = static_cast<float>(values[i]);
        std::memcpy(p, &v, 4);
        break;
      }
      case DType::f64: std::memcpy(p, &values[i], 8); break;
      default: fail(str("safetensors writer: ", dtype_name(dtype_), " output is not supported"));
    }
  }
  entries_.push_back(std::move(e));
}

namespace {

void write_file_atomically(const fs::path& path, const std::vector<const std::vector<uint8_t>*>& parts) {
  AtomicFile out(path.string());
  for (const auto* part : parts) out.write(part->data(), part->size());
  out.commit();
}

}  // namespace

void SafetensorsWriter::finish() {
  fs::create_directories(dir_);
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  std::vector<std::vector<const Entry*>> shards(1);
  size_t in_shard = 0, total = 0;
  for (const Entry& e : entries_) {
    if (in_shard > 0 && in_shard + e.bytes.size() > shard_bytes_) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&e);
    in_shard += e.bytes.size();
    total += e.bytes.size();
  }
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    if (shards.size() == 1) std::snprintf(name, sizeof name, "model.safetensors");
    else std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    json header = json::object();
    header["__metadata__"] = {{"format", "pt"}};
    size_t offset = 0;
    for (const Entry* e : shards[s]) {
      header[e->name] = {{"dtype", safetensors_code(dtype_)}, {"shape", e->shape},
                         {"data_offsets", {offset, offset + e->bytes.size()}}};
      offset += e->bytes.size();
      weight_map[e->name] = name;
    }
    std::string text = header.dump();
    text.resize((text.size() + 7) / 8 * 8, ' ');  // data starts 8-byte aligned, as the reference writer does
    std::vector<uint8_t> head(8 + text.size());
    const uint64_t n = text.size();
    std::memcpy(head.data(), &n, 8);
    std::memcpy(head.data() + 8, text.data(), text.size());
    std::vector<const std::vector<uint8_t>*> parts{&head};
    for (const Entry* e : shards[s]) parts.push_back(&e->bytes);
    write_file_atomically(fs::path(dir_) / name, parts);
  }
  if (shards.size() > 1) {
    const std::string text = json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2);
    const std::vector<uint8_t> bytes(text.begin(), text.end());
    write_file_atomically(fs::path(dir_) / "model.safetensors.index.json", {&bytes});
  }
  // An earlier export into this directory must not outlive this one: loaders read the index (or every shard) and
  // would mix the two.
  std::set<std::string> written;
  for (const auto& [tensor, file] : weight_map.items()) written.insert(file.get<std::string>());
  if (shards.size() > 1) written.insert("model.safetensors.index.json");
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    const bool ours = name.rfind("model", 0) == 0 && (entry.path().extension() == ".safetensors" ||
                                                      name == "model.safetensors.index.json");
    if (ours && !written.count(name)) fs::remove(entry.path());
  }
}

}  // namespace weft
