// weft/src/io/json_read.h v1 — reading config.json-style values with errors that name the file and the key.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "util/error.h"

namespace weft {

// j[key] as T; an Error naming `where` and the key when it is missing, null or of another type.
template <typename T>
T json_get(const nlohmann::json& j, const char* key, const std::string& where) {
  WEFT_CHECK(j.contains(key) && !j[key].is_null(), where, ": missing '", key, "'");
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(str(where, ": '", key, "' has the wrong type (", j[key].dump(), ")"));
  }
}

// j[key] as T, or `fallback` when it is missing or null.
template <typename T>
T json_get_or(const nlohmann::json& j, const char* key, T fallback, const std::string& where = "config") {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  return json_get<T>(j, key, where);
}

// Refuses a model whose config asks for something weft does not compute.
inline void refuse_if(bool bad, const std::string& where, const std::string& field, const std::string& why) {
  if (bad) fail(str(where, ": '", field, "' ", why, " — weft does not implement it, so it refuses the model rather "
                    "than compute something else"));
}

}  // namespace weft
