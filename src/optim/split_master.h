// weft/src/optim/split_master.h v1 — fp32 master weights held as the bf16 model weights plus 16 more bits
// (train.master_weights = split).
//
// A float32's upper half is a bf16 number; its lower half is what rounding to bf16 drops. Keeping the rounded
// upper half as the model's weight and the lower half beside it stores the fp32 master in 4 bytes per parameter
// instead of 6, and AdamW moves 18 bytes per parameter instead of 20 (bf16 moments and gradients). Rounding to
// nearest needs one bit more than the halves hold on exact ties, so ties go toward zero (the upper half goes up
// only when the lower half is above 0x8000); the masters themselves are the fp32 values bit for bit. The CUDA
// AdamW kernel has the device twin of these two functions.
#pragma once
#include <cstdint>
#include <cstring>

#include "tensor/tensor.h"

namespace weft {

// The fp32 master `x` as its bf16 model weight (rounded to nearest, ties toward zero; a NaN stays a NaN) and the
// low 16 bits of x.
inline void split_master(float x, bf16& value, uint16_t& low) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  low = static_cast<uint16_t>(u & 0xffffu);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  value.bits = static_cast<uint16_t>(nan ? (u >> 16) | 0x40u : (u >> 16) + (low > 0x8000u));
}

// The fp32 master that split_master took apart: the upper half is the weight, one less where it was rounded up.
inline float join_master(bf16 value, uint16_t low) {
  const uint32_t u = (static_cast<uint32_t>(static_cast<uint16_t>(value.bits - (low > 0x8000u))) << 16) | low;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace weft
