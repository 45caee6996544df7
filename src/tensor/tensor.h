// weft/src/tensor/tensor.h v1 — a dense, contiguous, reference-counted tensor on the CPU or a CUDA device.
//
// Deliberately small: shape, dtype, device and a shared buffer. Views (reshape, a range of rows) share the buffer.
// Memory comes from the device's backend (ops/backend.h), so this file knows nothing about CUDA.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "util/error.h"

namespace weft {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8, u16 };
enum class Device : uint8_t { cpu, cuda };
using Shape = std::vector<int64_t>;

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);
std::string shape_str(const Shape& s);

// bfloat16 storage: the upper half of an IEEE float32, rounded to nearest even.
struct bf16 {
  uint16_t bits;
  static bf16 from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((u >> 16) | 0x40)};  // keep NaN a NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return {static_cast<uint16_t>(u >> 16)};
  }
  float to_float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::u16; }

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised memory on `device`.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu);
  // Zero-filled memory on `device`.
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu);
  // A CPU tensor holding a copy of `values`.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
    Tensor t = empty(shape, dtype_of<T>());
    WEFT_ASSERT(static_cast<int64_t>(values.size()) == t.numel());
    if (!values.empty()) std::memcpy(t.data_ptr(), values.data(), t.nbytes());
    return t;
  }

  bool defined() const { return buffer_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t size(int d) const { return shape_.at(d < 0 ? d + ndim() : d); }
  int64_t numel() const;
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  void* data_ptr() const;
  template <typename T>
  T* data() const {
    WEFT_CHECK(dtype_ == dtype_of<T>(), "tensor is ", dtype_name(dtype_), ", accessed as ", dtype_name(dtype_of<T>()));
    return static_cast<T*>(data_ptr());
  }

  // Same memory, new shape (same number of elements).
  Tensor reshape(const Shape& shape) const;
  // Same memory, rows [begin, end) of dimension 0.
  Tensor rows(int64_t begin, int64_t end) const;
  // A copy on `device` (a shared view if already there and `force_copy` is false).
  Tensor to(Device device, bool force_copy = false) const;
  // A deep copy on the same device.
  Tensor clone() const { return to(device_, true); }
  // Values as doubles (any numeric dtype, copied to the host); for tests and small reductions.
  std::vector<double> to_doubles() const;
  // "f32[4, 8] cpu"
  std::string describe() const;

 private:
  struct Buffer;
  std::shared_ptr<Buffer> buffer_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
};

int64_t numel_of(const Shape& s);
// The dtype of per-row statistics (norm rstd, softmax max/sum, losses): f64 for f64 inputs, else f32.
inline DType stat_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

}  // namespace weft
