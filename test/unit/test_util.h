// weft/test/unit/test_util.h v2 — helpers shared by the unit tests.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <memory>
#include <random>
#include <string>

#include <mpi.h>

#include "dist/comm.h"
#include "dist/process_grid.h"
#include "tensor/tensor.h"

namespace weft::test {

// A fresh directory under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("weft-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  // Writes `text` to `name` inside the directory and returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(file(name)) << text;
    return file(name);
  }

 private:
  std::filesystem::path path_;
};

inline std::string source_dir() { return WEFT_SOURCE_DIR; }

// A communicator in which every rank is a group of its own: a model-parallel group of size 1, or an optimizer that
// reduces over nobody, under however many ranks mpirun started.
inline std::unique_ptr<Comm> each_rank_alone(const std::string& name = "self") {
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  GroupList singles;
  for (int r = 0; r < world; ++r) singles.push_back({r});
  return make_mpi_comm(name, singles);
}
inline std::string fixture(const std::string& name) { return source_dir() + "/test/fixtures/" + name; }

// A tensor of normal deviates (never zeros), from a generator each test seeds afresh.
inline Tensor random_tensor(const Shape& shape, DType dtype, std::mt19937& gen, double scale = 1.0) {
  Tensor t = Tensor::empty(shape, dtype);
  std::normal_distribution<double> n(0.0, scale);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dtype == DType::f64) t.data<double>()[i] = n(gen);
    else t.data<float>()[i] = static_cast<float>(n(gen));
  }
  return t;
}

// Compares `analytic` (f64) with the central difference of `loss` with respect to `x` (f64) at up to `samples`
// positions: |numeric − analytic| must stay below 1e-7 + 1e-6·|analytic|. In double precision with step 1e-6 the
// truncation error is ~h² ≈ 1e-12 and rounding ~ε·|loss|/h ≈ 1e-10, so the bound leaves a margin of 10³ while
// any wrong term in a backward shows up far above it.
inline void expect_gradient(Tensor& x, const std::function<double()>& loss, const Tensor& analytic,
                            const std::string& what, std::mt19937& gen, int samples = 40) {
  ASSERT_EQ(x.shape(), analytic.shape()) << what;
  const double h = 1e-6;
  std::uniform_int_distribution<int64_t> pick(0, x.numel() - 1);
  const int64_t n = std::min<int64_t>(samples, x.numel());
  for (int64_t s = 0; s < n; ++s) {
    const int64_t i = samples >= x.numel() ? s : pick(gen);
    double& xi = x.data<double>()[i];
    const double saved = xi;
    xi = saved + h;
    const double up = loss();
    xi = saved - h;
    const double down = loss();
    xi = saved;
    const double numeric = (up - down) / (2 * h), exact = analytic.data<double>()[i];
    EXPECT_LT(std::abs(numeric - exact), 1e-7 + 1e-6 * std::abs(exact))
        << what << " element " << i << ": analytic " << exact << " numeric " << numeric;
  }
}

}  // namespace weft::test
