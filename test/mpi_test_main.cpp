// weft/test/mpi_test_main.cpp v2 — GoogleTest main for every test binary: MPI up, tests run on every rank, and
// the process fails if any rank failed (so a test that breaks on rank 1 only still fails under mpirun); exit code 77
// when every test that ran skipped.
#include <gtest/gtest.h>
#include <mpi.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  ::testing::InitGoogleTest(&argc, argv);
  if (rank != 0) {
    // Only rank 0 prints progress; failures on other ranks still print their assertion messages.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0, any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any_failed && !failed) std::fprintf(stderr, "[rank %d] passed, but another rank failed\n", rank);
  MPI_Finalize();
  // Every test that ran skipped (the GPU tests without a GPU): ctest's SKIP_RETURN_CODE shows it as skipped.
  const auto* unit = ::testing::UnitTest::GetInstance();
  if (!any_failed && unit->test_to_run_count() > 0 && unit->skipped_test_count() == unit->test_to_run_count())
    return 77;
  return any_failed;
}
