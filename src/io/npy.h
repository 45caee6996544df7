// weft/src/io/npy.h v1 — NumPy .npy files (format 1.0/2.0, little-endian, C order): what `weft forward` reads and
// writes.
#pragma once
#include <string>

#include "tensor/tensor.h"

namespace weft {

// Reads an i4/i8/f4/f8 array into a CPU tensor of that dtype; errors name the file and what was expected.
Tensor read_npy(const std::string& path);
// Writes an f32, f64, i32 or i64 CPU tensor.
void write_npy(const std::string& path, const Tensor& t);

}  // namespace weft
