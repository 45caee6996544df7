// weft/test/unit/grid_test.cpp v1 — ProcessGrid: Megatron's rank order and group partitions.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "dist/process_grid.h"

using namespace weft;

namespace {

// Every group list must be a partition of the world into groups of the expected size.
void expect_partition(const GroupList& groups, int world, size_t group_size, const std::string& what) {
  std::vector<int> seen(world, 0);
  for (const auto& g : groups) {
    EXPECT_EQ(g.size(), group_size) << what;
    for (int r : g) {
      ASSERT_GE(r, 0) << what;
      ASSERT_LT(r, world) << what;
      ++seen[r];
    }
  }
  for (int r = 0; r < world; ++r) EXPECT_EQ(seen[r], 1) << what << ": rank " << r;
}

}  // namespace

TEST(ProcessGrid, MegatronDocstringExample) {
  // Megatron's initialize_model_parallel docstring: 16 ranks, tp=2, pp=4 → dp=2.
  ProcessGrid g(16, 0, {2, 1, 1, 4});
  EXPECT_EQ(g.dp_size(), 2);
  EXPECT_EQ(g.groups("tp"), (GroupList{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(g.groups("dp"), (GroupList{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}));
  EXPECT_EQ(g.groups("pp"), (GroupList{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  EXPECT_EQ(g.groups("embedding")[0], (std::vector<int>{0, 12}));
}

TEST(ProcessGrid, CoordinatesFollowTpCpDpPpOrder) {
  const ParallelSizes s{2, 2, 1, 2};  // tp 2, cp 2, pp 2, world 16 → dp 2
  for (int rank = 0; rank < 16; ++rank) {
    ProcessGrid g(16, rank, s);
    EXPECT_EQ(g.tp_rank(), rank % 2);
    EXPECT_EQ(g.cp_rank(), (rank / 2) % 2);
    EXPECT_EQ(g.dp_rank(), (rank / 4) % 2);
    EXPECT_EQ(g.pp_rank(), rank / 8);
    EXPECT_EQ(rank, g.tp_rank() + 2 * (g.cp_rank() + 2 * (g.dp_rank() + 2 * g.pp_rank())));
    // The rank's own groups contain it and agree with its coordinates.
    const auto tp = g.my_group("tp");
    EXPECT_EQ(tp[g.tp_rank()], rank);
    const auto pp = g.my_group("pp");
    EXPECT_EQ(pp[g.pp_rank()], rank);
    const auto dp = g.my_group("dp");
    EXPECT_EQ(dp[g.dp_rank()], rank);
  }
}

TEST(ProcessGrid, GroupsPartitionEveryWorld) {
  for (int world : {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64})
    for (int tp : {1, 2, 4, 8})
      for (int cp : {1, 2})
        for (int pp : {1, 2, 3, 4})
          for (int ep : {1, 2, 4}) {
            if (world % (tp * cp * pp) || world % (tp * ep * pp)) continue;
            const ProcessGrid g(world, 0, {tp, cp, ep, pp});
            const int dp = world / (tp * cp * pp);
            const std::string what = "world " + std::to_string(world) + " tp " + std::to_string(tp) + " cp " +
                                     std::to_string(cp) + " pp " + std::to_string(pp) + " ep " + std::to_string(ep);
            expect_partition(g.groups("tp"), world, tp, what + " tp");
            expect_partition(g.groups("cp"), world, cp, what + " cp");
            expect_partition(g.groups("dp"), world, dp, what + " dp");
            expect_partition(g.groups("pp"), world, pp, what + " pp");
            expect_partition(g.groups("dp_cp"), world, dp * cp, what + " dp_cp");
            expect_partition(g.groups("mp"), world, tp * pp, what + " mp");
            expect_partition(g.groups("ep"), world, ep, what + " ep");
            expect_partition(g.groups("edp"), world, world / (tp * ep * pp), what + " edp");
            // A tp group and a dp group share exactly one rank when they meet.
            for (const auto& t : g.groups("tp"))
              for (const auto& d : g.groups("dp")) {
                int common = 0;
                for (int r : t) common += std::count(d.begin(), d.end(), r);
                EXPECT_LE(common, 1) << what;
              }
          }
}

TEST(ProcessGrid, RejectsWorldsThatDoNotTile) {
  EXPECT_THROW(ProcessGrid(6, 0, {4, 1, 1, 1}), ConfigError);
  EXPECT_THROW(ProcessGrid(8, 0, {2, 1, 1, 3}), ConfigError);
  EXPECT_THROW(ProcessGrid(4, 0, {1, 1, 8, 1}), ConfigError);
  try {
    ProcessGrid(6, 0, {4, 1, 1, 1});
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.tp"), std::string::npos) << e.what();
  }
}
