// weft/src/io/model_io.cpp v2 — HF and native weights into a (sharded) model; HF export.
#include "io/model_io.h"

#include <filesystem>
#include <fstream>

#include "io/atomic_file.h"
#include "io/hf_config.h"
#include "io/hf_weights.h"
#include "model/model_fields.h"
#include "ops/ops.h"

namespace weft {
namespace fs = std::filesystem;
using nlohmann::json;

WeightSource WeightSource::parse(const std::string& spec) {
  if (spec == "random") return {};
  if (spec.rfind("hf:", 0) == 0) return {hf, spec.substr(3)};
  if (spec.rfind("native:", 0) == 0) return {native, spec.substr(7)};
  if (fs::exists(fs::path(spec) / "config.json")) return {hf, spec};
  if (fs::exists(fs::path(spec) / "latest") || fs::exists(fs::path(spec) / "metadata.json")) return {native, spec};
  fail(str("'", spec, "' is neither random, hf:DIR, native:DIR, nor a directory with config.json or a weft checkpoint"));
}

ModelSpec spec_of(const WeightSource& src) {
  if (src.kind == WeightSource::hf) return read_hf_config(src.dir);
  WEFT_ASSERT(src.kind == WeightSource::native);
  const CheckpointReader r(src.dir);
  WEFT_CHECK(r.metadata().contains("model"), r.path(), ": metadata.json has no model description");
  return spec_from_json(r.metadata()["model"]);
}

void load_hf_weights(const ModelSpec& spec, const std::vector<Parameter*>& params, const std::string& dir) {
  const SafetensorsDir hf(dir);
  const HfNameMap names(spec);
  check_no_unused_hf_tensors(names, hf);
  for (Parameter* p : params) load_hf_parameter(*p, names, hf);
}

void load_native_weights(const std::vector<Parameter*>& params, const CheckpointReader& ckpt) {
  for (Parameter* p : params) ckpt.read("model/" + p->name, p->value, p->global_shape, p->shard_dim, p->blocks);
}

std::vector<ShardedTensor> model_tensors(const std::vector<Parameter*>& params) {
  std::vector<ShardedTensor> out;
  for (const Parameter* p : params) out.push_back(sharded("model", *p, p->value));
  return out;
}


void export_hf(GptModel& model, const std::string& dir, DType dtype, size_t shard_bytes,
               const std::string& tokenizer_dir) {
  Comm& tp = *model.context().tp;
  const bool writer = tp.rank() == 0;
  SafetensorsWriter out(dir, dtype, shard_bytes);
  const HfNameMap names(model.spec());
  for (Parameter* p : model.parameters()) {
    const std::vector<double> global = gather_global(*p, tp);
    if (writer) add_hf_tensors(names, p->name, p->global_shape, global, out);
  }
  if (!writer) return;
  out.finish();
  write_text_atomically((fs::path(dir) / "config.json").string(), hf_config_of(model.spec()).dump(2) + "\n");
  if (tokenizer_dir.empty()) return;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                        "generation_config.json"}) {
    const fs::path src = fs::path(tokenizer_dir) / f;
    if (!fs::exists(src)) continue;
    std::ifstream in(src, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    WEFT_CHECK(in.good() || in.eof(), "cannot read '", src.string(), "'");
    write_text_atomically((fs::path(dir) / f).string(), bytes);
  }
}

}  // namespace weft
