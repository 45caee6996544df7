// weft/src/io/hf_families.h v2 — the model families weft reads and writes in HuggingFace's formats, one table entry
// each: config.json's model type and architecture, the config keys the family maps itself (the model field table
// maps the common ones), and the names of its MoE block's tensors. A new family is a new entry.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model_spec.h"

namespace weft {

struct HfFamily {
  std::string name;          // model.family
  std::string model_type;    // config.json's model_type
  std::string architecture;  // config.json's architectures[0]
  // config.json → spec for the keys the field table does not map; refuses what the family's HF model would compute
  // and weft does not (errors name `where` and the key).
  void (*read)(const nlohmann::json& j, ModelSpec& s, const std::string& where);
  // spec → config.json for the same keys; refuses a spec the family's HF model cannot express.
  void (*write)(const ModelSpec& s, nlohmann::json& j);
  // A layer's MoE block in HF tensor names: model.layers.N.<moe_block>.gate.weight (the router),
  // ...experts.E.<expert_gate|expert_up|expert_down>.weight, and (Qwen-MoE) shared_expert.* and shared_expert_gate.
  const char* moe_block = "mlp";
  const char* expert_gate = "gate_proj";
  const char* expert_up = "up_proj";
  const char* expert_down = "down_proj";
  const char* shared_expert = "shared_expert";  // the shared expert's module under the MoE block
};

const HfFamily& hf_family(const std::string& name);  // throws an Error naming the known families
const HfFamily& hf_family_of_model_type(const std::string& model_type, const std::string& where);
std::vector<std::string> hf_family_names();

}  // namespace weft
