// weft/src/tensor/tensor.cpp v1 — Tensor storage, views and host/device copies.
#include "tensor/tensor.h"

#include "ops/ops.h"

namespace weft {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
    case DType::u16: return 2;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
    case DType::u16: return "u16";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

struct Tensor::Buffer {
  void* ptr = nullptr;
  Device device = Device::cpu;
  ~Buffer() {
    if (ptr) ops_for(device).deallocate(ptr);
  }
};

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) WEFT_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  Tensor t;
  t.buffer_ = std::make_shared<Buffer>();
  t.buffer_->device = device;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  size_t bytes = t.nbytes();
  t.buffer_->ptr = ops_for(device).allocate(bytes == 0 ? 1 : bytes);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  ops_for(device).zero(t);
  return t;
}

int64_t Tensor::numel() const { return numel_of(shape_); }

void* Tensor::data_ptr() const {
  WEFT_ASSERT(buffer_ != nullptr);
  return static_cast<char*>(buffer_->ptr) + offset_;
}

Tensor Tensor::reshape(const Shape& shape) const {
  WEFT_CHECK(numel_of(shape) == numel(), "cannot reshape ", describe(), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  WEFT_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "rows [", begin, ", ", end,
             ") out of range for ", describe());
  Tensor t = *this;
  int64_t row_elems = shape_[0] == 0 ? 0 : numel() / shape_[0];
  t.offset_ += static_cast<size_t>(begin * row_elems) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::to(Device device, bool force_copy) const {
  if (device == device_ && !force_copy) return *this;
  Tensor t = empty(shape_, dtype_, device);
  Device exec = device == Device::cpu ? device_ : device;  // the non-CPU side drives the copy
  ops_for(exec).copy_bytes(t.data_ptr(), device, data_ptr(), device_, nbytes());
  return t;
}

std::vector<double> Tensor::to_doubles() const {
  Tensor h = to(Device::cpu);
  std::vector<double> out(static_cast<size_t>(numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    switch (dtype_) {
      case DType::f32: out[i] = h.data<float>()[i]; break;
      case DType::f64: out[i] = h.data<double>()[i]; break;
      case DType::bf16: out[i] = h.data<bf16>()[i].to_float(); break;
      case DType::i32: out[i] = h.data<int32_t>()[i]; break;
      case DType::i64: out[i] = static_cast<double>(h.data<int64_t>()[i]); break;
      case DType::u8: out[i] = h.data<uint8_t>()[i]; break;
      case DType::u16: out[i] = h.data<uint16_t>()[i]; break;
      case DType::f16: fail("to_doubles: f16 is not supported");
    }
  }
  return out;
}

std::string Tensor::describe() const {
  return str(dtype_name(dtype_), shape_str(shape_), " ", device_name(device_));
}

}  // namespace weft
