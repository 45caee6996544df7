// weft/src/io/model_io.h v1 — moving a model's weights (and its optimizer's state) in and out of files.
#pragma once
#include <string>

#include "config/config.h"
#include "io/checkpoint.h"
#include "model/gpt_model.h"
#include "model/model_fields.h"

namespace weft {

// What model.init / --model names: "random", "hf:DIR", "native:DIR" (a bare DIR is sniffed: config.json → HF).
struct WeightSource {
  enum Kind { random, hf, native } kind = random;
  std::string dir;
  static WeightSource parse(const std::string& spec);
};

// The model shape a weight source carries (HF config.json, or a native checkpoint's metadata).
ModelSpec spec_of(const WeightSource& src);

// Every rank reads only the slices it owns (of the parameters it holds, whatever the layout).
void load_hf_weights(const ModelSpec& spec, const std::vector<Parameter*>& params, const std::string& dir);
void load_native_weights(const std::vector<Parameter*>& params, const CheckpointReader& ckpt);

// The parameters' values as checkpoint tensors ("model/<name>").
std::vector<ShardedTensor> model_tensors(const std::vector<Parameter*>& params);

// Writes the whole model (gathered over tp; call on every rank of a pp = 1 layout) as an HF directory:
// config.json, safetensors shards of at most shard_bytes in `dtype`, and the tokenizer files of `tokenizer_dir`.
void export_hf(GptModel& model, const std::string& dir, DType dtype, size_t shard_bytes,
               const std::string& tokenizer_dir);

}  // namespace weft
