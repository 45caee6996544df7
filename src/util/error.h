// weft/src/util/error.h v1 — the one error type weft throws, and the checks that raise it.
//
// Every failure a user can cause (a bad deck, a corrupt file, an impossible layout) becomes a weft::Error whose
// message names the file, key or tensor and what was expected. main() prints it as one line and exits non-zero;
// under MPI a failing rank aborts the whole job so nothing hangs.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace weft {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An error every rank detects identically (deck, layout): printed once, by rank 0.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Concatenates any streamable values into one string.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

}  // namespace weft

// WEFT_CHECK(cond, parts...): throws weft::Error built from parts when cond is false.
#define WEFT_CHECK(cond, ...)                                   \
  do {                                                          \
    if (!(cond)) ::weft::fail(::weft::str(__VA_ARGS__));        \
  } while (0)

// WEFT_ASSERT(cond): an internal invariant; names the source line, since it is weft's bug, not the user's.
#define WEFT_ASSERT(cond)                                                                          \
  do {                                                                                             \
    if (!(cond)) ::weft::fail(::weft::str("internal error at ", __FILE__, ":", __LINE__, ": ", #cond)); \
  } while (0)
