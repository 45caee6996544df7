// weft/src/data/numpy_random.h v1 — numpy.random.RandomState's legacy MT19937 stream and shuffle, bit for bit.
//
// Megatron orders its samples with numpy.random.RandomState(seed).shuffle; reproducing the same permutation
// needs the same generator (MT19937 seeded by init_genrand, which std::mt19937 implements) and numpy's
// bounded-integer draw (mask and reject, 32-bit draws below 2^32).
#pragma once
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace weft {

class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed) : mt_(seed) {}
  uint32_t next_uint32() { return static_cast<uint32_t>(mt_()); }
  uint64_t next_uint64() {
    const uint64_t hi = next_uint32();
    return hi << 32 | next_uint32();
  }
  // A uniform integer in [0, max] (numpy's random_interval).
  uint64_t interval(uint64_t max) {
    if (max == 0) return 0;
    uint64_t mask = max;
    for (int s = 1; s <= 32; s <<= 1) mask |= mask >> s;
    uint64_t v;
    if (max <= 0xffffffffULL) {
      do v = next_uint32() & mask; while (v > max);
    } else {
      do v = next_uint64() & mask; while (v > max);
    }
    return v;
  }
  // RandomState.shuffle on a 1-D array: Fisher–Yates from the back.
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i-- > 1;) std::swap(v[i], v[interval(i)]);
  }

 private:
  std::mt19937 mt_;
};

}  // namespace weft
