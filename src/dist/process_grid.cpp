// weft/src/dist/process_grid.cpp v1 — rank placement and group enumeration in Megatron's order.
#include "dist/process_grid.h"

#include <algorithm>

#include "util/error.h"

namespace weft {

GroupList orthogonal_groups(const std::vector<int>& sizes, const std::vector<bool>& varies) {
  WEFT_ASSERT(sizes.size() == varies.size());
  std::vector<int> in_dims, out_dims;
  for (size_t d = 0; d < sizes.size(); ++d) (varies[d] ? in_dims : out_dims).push_back(static_cast<int>(d));
  std::vector<int> stride(sizes.size(), 1);
  for (size_t d = 1; d < sizes.size(); ++d) stride[d] = stride[d - 1] * sizes[d - 1];
  auto count = [&](const std::vector<int>& dims) {
    int n = 1;
    for (int d : dims) n *= sizes[d];
    return n;
  };
  // The rank whose coordinates on `dims` are the mixed-radix digits of `index`, plus `base`.
  auto place = [&](const std::vector<int>& dims, int index) {
    int r = 0;
    for (int d : dims) {
      r += (index % sizes[d]) * stride[d];
      index /= sizes[d];
    }
    return r;
  };
  GroupList groups;
  for (int outer = 0; outer < count(out_dims); ++outer) {
    const int base = place(out_dims, outer);
    std::vector<int> members;
    for (int inner = 0; inner < count(in_dims); ++inner) members.push_back(base + place(in_dims, inner));
    groups.push_back(std::move(members));
  }
  return groups;
}

ProcessGrid::ProcessGrid(int world_size, int rank, const ParallelSizes& sizes)
    : world_(world_size), rank_(rank), s_(sizes) {
  WEFT_CHECK(s_.tp >= 1 && s_.cp >= 1 && s_.ep >= 1 && s_.pp >= 1,
             "parallel.tp, parallel.cp, parallel.ep and parallel.pp must be >= 1");
  const int model = s_.tp * s_.cp * s_.pp;
  if (world_ % model != 0)
    throw ConfigError(str("world size ", world_, " is not a multiple of parallel.tp·parallel.cp·parallel.pp = ", s_.tp,
                          "·", s_.cp, "·", s_.pp, " = ", model, " (data parallel size = world / that)"));
  dp_ = world_ / model;
  const int expert_model = s_.tp * s_.ep * s_.pp;
  if (world_ % expert_model != 0)
    throw ConfigError(str("world size ", world_, " is not a multiple of parallel.tp·parallel.ep·parallel.pp = ",
                          expert_model, " (parallel.ep must divide the data-parallel·context-parallel ranks)"));
  edp_ = world_ / expert_model;
  int r = rank_;
  tp_rank_ = r % s_.tp;
  r /= s_.tp;
  cp_rank_ = r % s_.cp;
  r /= s_.cp;
  dp_rank_ = r % dp_;
  pp_rank_ = r / dp_;
  ep_rank_ = (rank_ / s_.tp) % s_.ep;
}

GroupList ProcessGrid::groups(const std::string& kind) const {
  const std::vector<int> dense = {s_.tp, s_.cp, dp_, s_.pp};
  const std::vector<int> expert = {s_.tp, s_.ep, edp_, s_.pp};
  //                                                         tp     cp     dp     pp
  if (kind == "tp") return orthogonal_groups(dense, {true, false, false, false});
  if (kind == "cp") return orthogonal_groups(dense, {false, true, false, false});
  if (kind == "dp") return orthogonal_groups(dense, {false, false, true, false});
  if (kind == "pp") return orthogonal_groups(dense, {false, false, false, true});
  if (kind == "dp_cp") return orthogonal_groups(dense, {false, true, true, false});
  if (kind == "tp_cp") return orthogonal_groups(dense, {true, true, false, false});
  if (kind == "mp") return orthogonal_groups(dense, {true, false, false, true});
  if (kind == "ep") return orthogonal_groups(expert, {false, true, false, false});
  if (kind == "edp") return orthogonal_groups(expert, {false, false, true, false});
  if (kind == "emp") return orthogonal_groups(expert, {true, true, false, true});
  if (kind == "embedding") {
    GroupList out;
    for (const auto& pipe : groups("pp")) {
      if (pipe.size() == 1) out.push_back({pipe.front()});
      else out.push_back({pipe.front(), pipe.back()});
    }
    // Middle stages hold no embedding; each is a group of its own so that the split is a partition.
    for (const auto& pipe : groups("pp"))
      for (size_t i = 1; i + 1 < pipe.size(); ++i) out.push_back({pipe[i]});
    return out;
  }
  fail(str("unknown process group kind '", kind, "'"));
}

std::vector<int> ProcessGrid::my_group(const std::string& kind) const {
  for (auto& g : groups(kind))
    if (std::find(g.begin(), g.end(), rank_) != g.end()) return g;
  fail(str("rank ", rank_, " is in no ", kind, " group"));
}

Comms Comms::create(const ProcessGrid& grid, CommFactory factory) {
  Comms c;
  std::vector<int> all(grid.world_size());
  for (int i = 0; i < grid.world_size(); ++i) all[i] = i;
  c.world = factory("world", {all});
  c.tp = factory("tp", grid.groups("tp"));
  c.cp = factory("cp", grid.groups("cp"));
  c.dp = factory("dp", grid.groups("dp"));
  c.pp = factory("pp", grid.groups("pp"));
  c.dp_cp = factory("dp_cp", grid.groups("dp_cp"));
  c.mp = factory("mp", grid.groups("mp"));
  c.embedding = factory("embedding", grid.groups("embedding"));
  if (grid.ep_size() > 1) {
    c.ep = factory("ep", grid.groups("ep"));
    c.edp = factory("edp", grid.groups("edp"));
    c.emp = factory("emp", grid.groups("emp"));
  }
  return c;
}

}  // namespace weft
