// weft/test/mpi/collectives_test.cpp v2 — every Comm collective, on the world and on grid sub-groups, run under
// mpirun with 1, 2 and 4 ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <thread>

#include "dist/comm.h"
#include "dist/process_grid.h"

using namespace weft;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}
std::unique_ptr<Comm> world_comm() {
  std::vector<int> all(world_size());
  for (int i = 0; i < world_size(); ++i) all[i] = i;
  return make_mpi_comm("world", {all});
}
// A value that names its origin: rank r, element i.
double tag(int r, int64_t i) { return 1000.0 * r + double(i) + 0.5; }

}  // namespace

TEST(Collectives, AllReduceSumAndMax) {
  auto c = world_comm();
  const int n = c->size(), r = c->rank();
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor t = Tensor::empty({7}, dt);
    for (int64_t i = 0; i < 7; ++i) {
      if (dt == DType::f32) t.data<float>()[i] = static_cast<float>(tag(r, i));
      else t.data<double>()[i] = tag(r, i);
    }
    Tensor mx = t.clone();
    c->all_reduce(t);
    c->all_reduce(mx, ReduceOp::max);
    const auto sum = t.to_doubles(), big = mx.to_doubles();
    for (int64_t i = 0; i < 7; ++i) {
      double want = 0;
      for (int q = 0; q < n; ++q) want += tag(q, i);
      EXPECT_NEAR(sum[i], want, 1e-3);
      EXPECT_EQ(big[i], tag(n - 1, i));
    }
  }
  Tensor ints = Tensor::from_vector<int64_t>({r, 1}, {2});
  c->all_reduce(ints);
  EXPECT_EQ(ints.data<int64_t>()[0], int64_t(n) * (n - 1) / 2);
  EXPECT_EQ(ints.data<int64_t>()[1], n);
}

// The overlapped collectives' wait count (log.comm_wait): run at once, each started collective counts the host time
// it held this rank, here the 200 ms that rank 0 arrives late; nothing is counted while not counting, and a take
// starts the count afresh.
TEST(Collectives, CountedWaitsOfStartedCollectives) {
  auto c = world_comm();
  if (c->size() == 1) GTEST_SKIP() << "needs two ranks";
  const auto late_start = [&](auto start) {
    if (c->rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    start();
  };
  Tensor t = Tensor::from_vector(std::vector<float>(1000, 1.0f), {1000});
  Tensor whole = Tensor::empty({1000 * c->size()}, DType::f32);
  c->count_waits(true);
  late_start([&] { c->start_all_reduce(t, 0.5); });
  c->wait_started();
  EXPECT_FLOAT_EQ(t.data<float>()[0], 0.5f * float(c->size()));
  const double first = c->take_wait_ms();
  if (c->rank() != 0) {
    EXPECT_GE(first, 150.0);
  } else {
    EXPECT_LT(first, 150.0);
  }
  late_start([&] { c->start_all_gather(whole, t); });
  late_start([&] { c->start_reduce_scatter(t, whole, 1.0); });
  c->wait_started();
  const double second = c->take_wait_ms();
  if (c->rank() != 0) {
    EXPECT_GE(second, 300.0);
  }
  EXPECT_LT(c->take_wait_ms(), 1.0);  // taken
  c->count_waits(false);
  late_start([&] { c->start_all_reduce(t, 1.0); });
  c->wait_started();
  EXPECT_EQ(c->take_wait_ms(), 0.0);
}

TEST(Collectives, ReduceScatterAndAllGather) {
  auto c = world_comm();
  const int n = c->size(), r = c->rank();
  const int64_t chunk = 3;
  Tensor in = Tensor::empty({n * chunk}, DType::f64);
  for (int64_t i = 0; i < n * chunk; ++i) in.data<double>()[i] = tag(r, i);
  Tensor out = Tensor::empty({chunk}, DType::f64);
  c->reduce_scatter(out, in);
  for (int64_t i = 0; i < chunk; ++i) {
    double want = 0;
    for (int q = 0; q < n; ++q) want += tag(q, r * chunk + i);
    EXPECT_DOUBLE_EQ(out.data<double>()[i], want);
  }
  Tensor mine = Tensor::empty({chunk}, DType::f32);
  for (int64_t i = 0; i < chunk; ++i) mine.data<float>()[i] = static_cast<float>(tag(r, i));
  Tensor all = Tensor::empty({n * chunk}, DType::f32);
  c->all_gather(all, mine);
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < chunk; ++i) EXPECT_EQ(all.data<float>()[q * chunk + i], static_cast<float>(tag(q, i)));
  Tensor wrong = Tensor::empty({chunk + 1}, DType::f64);
  EXPECT_THROW(c->reduce_scatter(wrong, in), Error);
}

TEST(Collectives, BroadcastFromEveryRoot) {
  auto c = world_comm();
  for (int root = 0; root < c->size(); ++root) {
    Tensor t = Tensor::from_vector<int32_t>({c->rank(), c->rank() * 2, 7}, {3});
    c->broadcast(t, root);
    EXPECT_EQ(t.data<int32_t>()[0], root);
    EXPECT_EQ(t.data<int32_t>()[1], root * 2);
  }
}

TEST(Collectives, SendRecvRing) {
  auto c = world_comm();
  const int n = c->size(), r = c->rank();
  if (n == 1) GTEST_SKIP() << "needs two ranks";
  Tensor out = Tensor::from_vector<double>({tag(r, 0), tag(r, 1)}, {2});
  Tensor in = Tensor::empty({2}, DType::f64);
  // Even ranks send first, odd ranks receive first, so the ring never deadlocks.
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  if (r % 2 == 0) {
    c->send(out, next);
    c->recv(in, prev);
  } else {
    c->recv(in, prev);
    c->send(out, next);
  }
  EXPECT_EQ(in.data<double>()[0], tag(prev, 0));
  EXPECT_EQ(in.data<double>()[1], tag(prev, 1));
}

TEST(Collectives, AllToAllV) {
  auto c = world_comm();
  const int n = c->size(), r = c->rank();
  // Rank r sends (r + q + 1) elements to rank q, each tagged with (sender, destination).
  std::vector<int64_t> send(n), recv(n);
  std::vector<double> data;
  for (int q = 0; q < n; ++q) {
    send[q] = r + q + 1;
    recv[q] = q + r + 1;
    for (int64_t i = 0; i < send[q]; ++i) data.push_back(1000.0 * r + 10.0 * q + double(i));
  }
  const Tensor in = Tensor::from_vector(data, {static_cast<int64_t>(data.size())});
  int64_t total = 0;
  for (int64_t x : recv) total += x;
  Tensor out = Tensor::empty({total}, DType::f64);
  c->all_to_all_v(out, recv, in, send);
  int64_t at = 0;
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < recv[q]; ++i) EXPECT_EQ(out.data<double>()[at++], 1000.0 * q + 10.0 * r + double(i));
}

TEST(Collectives, SubGroupsOfTheGrid) {
  const int n = world_size();
  if (n % 2 != 0) GTEST_SKIP() << "needs an even world";
  const ProcessGrid grid(n, world_rank(), {2, 1, 1, 1});  // tp 2, dp n/2
  auto tp = make_mpi_comm("tp", grid.groups("tp"));
  auto dp = make_mpi_comm("dp", grid.groups("dp"));
  EXPECT_EQ(tp->size(), 2);
  EXPECT_EQ(tp->rank(), grid.tp_rank());
  EXPECT_EQ(dp->size(), n / 2);
  EXPECT_EQ(dp->rank(), grid.dp_rank());
  Tensor t = Tensor::from_vector<int64_t>({world_rank()}, {1});
  tp->all_reduce(t);
  const auto mine = grid.my_group("tp");
  EXPECT_EQ(t.data<int64_t>()[0], mine[0] + mine[1]);
  tp->barrier();
  dp->barrier();
}
