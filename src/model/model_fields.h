// weft/src/model/model_fields.h v1 — every field of a ModelSpec, declared once.
//
// A field's deck key (under [model]; also its key in checkpoint metadata), type, one-line doc, config.json key,
// check and role live in this table. The deck schema and `--help`, the validation of single values, the agreement
// check between a deck and the weights it starts from, checkpoint metadata, and the generic part of the HF config
// map all read it; family-specific config.json keys are the HF family table's (io/hf_families.h).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "model/model_spec.h"

namespace weft {

enum class FieldCheck { none, positive, non_negative };

struct ModelField {
  using Ref = std::variant<int64_t& (*)(ModelSpec&), double& (*)(ModelSpec&), bool& (*)(ModelSpec&),
                           std::string& (*)(ModelSpec&), std::vector<int64_t>& (*)(ModelSpec&)>;
  const char* key;   // "hidden_size": deck key model.hidden_size, metadata key hidden_size
  const char* doc;
  Ref ref;
  FieldCheck check = FieldCheck::none;
  const char* hf_key = nullptr;  // config.json key read and written as it is; null: the family maps it
  bool hf_required = false;      // config.json must have hf_key
  bool required = false;         // no usable default: a preset, the deck or model.init must set it
  bool shapes_weights = true;    // a deck's value must agree with the weights it starts from (model.init, resume)

  const char* type() const;  // "int", "float", "bool", "string" or "int list"
  std::string deck_key() const { return std::string("model.") + key; }
  nlohmann::json get(const ModelSpec& s) const;        // the value as JSON (an int list as an array)
  void set(ModelSpec& s, const nlohmann::json& v) const;  // throws nlohmann::json::exception on a wrong type
  std::string text(const ModelSpec& s) const { return get(s).dump(); }
};

const std::vector<ModelField>& model_fields();
const ModelField& model_field(const std::string& key);  // by key ("hidden_size"); throws if unknown

// "1,3" or "" → {1, 3} or {}; throws std::invalid_argument on anything else.
std::vector<int64_t> parse_int_list(const std::string& text);

// Checkpoint metadata: every field by key. Reading keeps the default for a field the JSON lacks (metadata written
// before the field existed); a wrong type throws an Error naming the key.
nlohmann::json spec_to_json(const ModelSpec& s);
ModelSpec spec_from_json(const nlohmann::json& j);

}  // namespace weft
