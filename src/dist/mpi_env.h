// weft/src/dist/mpi_env.h v1 — MPI start-up and shutdown, and MPI_CHECK.
#pragma once
#include <mpi.h>

#include <string>

#include "util/error.h"

// MPI_CHECK(call): throws weft::Error naming the call, its MPI error string, and file:line.
#define MPI_CHECK(call)                                                                     \
  do {                                                                                      \
    int mpi_status_ = (call);                                                               \
    if (mpi_status_ != MPI_SUCCESS) ::weft::mpi_fail(mpi_status_, #call, __FILE__, __LINE__); \
  } while (0)

namespace weft {

[[noreturn]] void mpi_fail(int status, const char* call, const char* file, int line);

// Owns MPI_Init/MPI_Finalize for the process. Errors on communicators return codes (MPI_ERRORS_RETURN), so a
// failure becomes a weft::Error and then a job-wide abort rather than a silent hang.
class MpiEnv {
 public:
  MpiEnv(int* argc, char*** argv);
  ~MpiEnv();
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Prints `msg` as one line and takes the whole job down with `code` (MPI_Abort when more than one rank).
  [[noreturn]] void abort(const std::string& msg, int code) const;

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace weft
