// weft/src/dist/mpi_env.cpp v1 — MPI start-up, shutdown and job-wide abort.
#include "dist/mpi_env.h"

#include <cstdio>
#include <cstdlib>

namespace weft {

void mpi_fail(int status, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(status, text, &len);
  fail(str("MPI error in ", call, " (", file, ":", line, "): ", std::string(text, static_cast<size_t>(len))));
}

MpiEnv::MpiEnv(int* argc, char*** argv) {
  int provided = 0;
  MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
}

MpiEnv::~MpiEnv() { MPI_Finalize(); }

void MpiEnv::abort(const std::string& msg, int code) const {
  if (size_ > 1) std::fprintf(stderr, "weft: error: [rank %d] %s\n", rank_, msg.c_str());
  else std::fprintf(stderr, "weft: error: %s\n", msg.c_str());
  std::fflush(stderr);
  if (size_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
  MPI_Finalize();
  std::exit(code);
}

}  // namespace weft
