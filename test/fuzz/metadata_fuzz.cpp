// weft/test/fuzz/metadata_fuzz.cpp v1 — a checkpoint's metadata.json: its model description (and the HF config
// the same fields map to).
#include <string>

#include "fuzz_util.h"
#include "io/hf_config.h"
#include "model/model_fields.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  weft::fuzz::expect_clean([&] {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (!j.is_object()) return;
    weft::spec_from_json(j.value("model", j));
    weft::parse_hf_config(j, "fuzz");
  });
  return 0;
}
