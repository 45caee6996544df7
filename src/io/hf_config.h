// weft/src/io/hf_config.h v1 — HuggingFace config.json ↔ ModelSpec for the llama, mistral and qwen2 model types.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "model/model_spec.h"

namespace weft {

// Reads DIR/config.json (or a config.json path). Reads RoPE scaling written either as transformers 4.x
// `rope_scaling` + `rope_theta` or 5.x `rope_parameters`. Fields that change the math and weft does not implement
// (another activation, o_proj or MLP biases, yarn/dynamic RoPE, per-layer windows, dropout) are errors naming the
// field, never ignored.
ModelSpec read_hf_config(const std::string& path);
ModelSpec parse_hf_config(const nlohmann::json& j, const std::string& where);

// The config.json transformers needs to load the model (written in the 4.x form, which 5.x also reads).
nlohmann::json hf_config_of(const ModelSpec& spec);

}  // namespace weft
