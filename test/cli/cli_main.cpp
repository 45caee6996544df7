// weft/test/cli/cli_main.cpp v1 — GoogleTest main of the end-to-end tests (not an MPI process: they start mpirun
// themselves): exit code 77 when every test that ran skipped, so that ctest shows the GPU training tests on a
// machine without a GPU as skipped rather than passed.
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int failed = RUN_ALL_TESTS();
  const auto* unit = ::testing::UnitTest::GetInstance();
  if (failed == 0 && unit->test_to_run_count() > 0 && unit->skipped_test_count() == unit->test_to_run_count())
    return 77;
  return failed;
}
