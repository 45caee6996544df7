// weft/src/io/hf_weights.h v1 — HuggingFace checkpoints ↔ weft's (Megatron-layout) parameters.
//
// Megatron fuses q/k/v into one matrix interleaved per query group and gate/up into fc1; HF keeps them apart.
// The map says, for every row of a weft parameter's global tensor, which HF tensor and row it comes from, so a
// rank can read exactly its shard of each HF tensor (rows for column-parallel, columns for row-parallel).
#pragma once
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/model_spec.h"
#include "model/parameter.h"

namespace weft {

// Rows [row_begin, row_begin + rows) of a weft parameter are rows [hf_row_begin, ...) of HF tensor hf_name
// (for 1-D tensors, "rows" are elements).
struct HfSegment {
  int64_t row_begin, rows;
  std::string hf_name;
  int64_t hf_row_begin;
};

// The segments that make up parameter `name` of a model with `spec`.
std::vector<HfSegment> hf_segments(const ModelSpec& spec, const std::string& name);
// The global shape HF gives tensor `hf_name` for `spec` (to check checkpoints against their config).
Shape hf_shape(const ModelSpec& spec, const std::string& hf_name);

// Fills the local shard of `p` from the checkpoint; errors name the directory and the missing or misshapen tensor.
void load_hf_parameter(Parameter& p, const ModelSpec& spec, const SafetensorsDir& hf);
// Checks that every tensor of the checkpoint is one the model uses (or a known leftover such as rotary inv_freq).
void check_no_unused_hf_tensors(const ModelSpec& spec, const SafetensorsDir& hf);

// Splits a full global parameter (row-major values) into its HF tensors and adds them to `out`.
void add_hf_tensors(const ModelSpec& spec, const std::string& name, const Shape& global_shape,
                    const std::vector<double>& values, SafetensorsWriter& out);

}  // namespace weft
