// weft/test/fuzz/fuzz_util.h v1 — what the libFuzzer targets share: the input as a file (weft's parsers read files).
//
// Each target feeds one parser untrusted bytes. Errors weft reports (weft::Error, its ConfigError, nlohmann's
// parse errors) are the expected outcome of bad input; anything else — a crash, a sanitizer report, another
// exception, a hang or an allocation past libFuzzer's limit — is a bug.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "util/error.h"

namespace weft::fuzz {

// A file of this process's own (created once, rewritten for every input) holding `data`; `suffix` its extension.
inline std::string as_file(const uint8_t* data, size_t size, const std::string& suffix) {
  const std::string path = "/tmp/weft-fuzz-" + std::to_string(::getpid()) + suffix;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                               static_cast<std::streamsize>(size));
  return path;
}

// Runs `parse`, accepting the errors weft reports for bad input.
template <typename F>
void expect_clean(F&& parse) {
  try {
    parse();
  } catch (const Error&) {
  } catch (const nlohmann::json::exception&) {
  }
}

}  // namespace weft::fuzz
