// weft/src/io/hf_weights.h v3 — HuggingFace checkpoints ↔ weft's (Megatron-layout) parameters.
//
// Megatron fuses q/k/v into one matrix interleaved per query group and gate/up into fc1; HF keeps them apart, and
// names a family's MoE tensors its own way (io/hf_families.h). The name map says, for every row of a weft
// parameter's global tensor, which HF tensor and row it comes from, so a rank can read exactly its shard of each HF
// tensor (rows for column-parallel, columns for row-parallel; only its own experts under expert parallelism).
#pragma once
#include <map>
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

// Every HF tensor of a model with `spec` and the weft parameters it maps to, built once from the spec.
class HfNameMap {
 public:
  explicit HfNameMap(const ModelSpec& spec);
  const ModelSpec& spec() const { return spec_; }
  // The segments that make up weft parameter `name`; throws if it has no HF counterpart.
  const std::vector<HfSegment>& segments(const std::string& name) const;
  // The global shape HF gives `hf_name` (to check checkpoints against their config); null if the model has none.
  const Shape* shape(const std::string& hf_name) const;

 private:
  void add(const std::string& name, const std::string& hf_name, const Shape& hf_shape, int64_t row_begin);
  // A layer's attention: Megatron's fused QKV against HF's q/k/v_proj, or latent attention against DeepSeek's names
  // (`w`, `f`: the layer's Megatron and HF attention prefixes).
  void add_self_attention(const std::string& w, const std::string& f);
  void add_latent_attention(const std::string& w, const std::string& f);
  ModelSpec spec_;
  std::map<std::string, std::vector<HfSegment>> segments_;
  std::map<std::string, Shape> shapes_;
};

// Fills the local shard of `p` from the checkpoint; errors name the directory and the missing or misshapen tensor.
void load_hf_parameter(Parameter& p, const HfNameMap& names, const SafetensorsDir& hf);
// Checks that every tensor of the checkpoint is one the model uses (or a known leftover such as rotary inv_freq).
void check_no_unused_hf_tensors(const HfNameMap& names, const SafetensorsDir& hf);

// Splits a full global parameter (row-major values) into its HF tensors and adds them to `out`.
void add_hf_tensors(const HfNameMap& names, const std::string& name, const Shape& global_shape,
                    const std::vector<double>& values, SafetensorsWriter& out);

}  // namespace weft
