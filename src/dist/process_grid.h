// weft/src/dist/process_grid.h v1 — where each rank sits in the tp·cp·dp·pp grid, and the groups it belongs to.
//
// Megatron's rank order: tensor-parallel fastest, then context, (expert,) data, pipeline:
//   rank = tp + TP·(cp + CP·(dp + DP·pp)).
// Experts fold the same ranks differently (Megatron's expert grid): rank = etp + ETP·(ep + EP·(edp + EDP·pp)),
// with ETP = TP here, so expert and dense layers share pipeline stages.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/comm.h"

namespace weft {

struct ParallelSizes {
  int tp = 1, cp = 1, ep = 1, pp = 1;
};

// Every group of one kind, as lists of world ranks: the partition of the world that the kind defines.
using GroupList = std::vector<std::vector<int>>;

class ProcessGrid {
 public:
  // Validates the sizes against the world (errors name the deck keys) and places `rank`.
  ProcessGrid(int world_size, int rank, const ParallelSizes& sizes);

  int world_size() const { return world_; }
  int rank() const { return rank_; }
  int tp_size() const { return s_.tp; }
  int cp_size() const { return s_.cp; }
  int ep_size() const { return s_.ep; }
  int pp_size() const { return s_.pp; }
  int dp_size() const { return dp_; }
  int edp_size() const { return edp_; }
  int tp_rank() const { return tp_rank_; }
  int cp_rank() const { return cp_rank_; }
  int dp_rank() const { return dp_rank_; }
  int pp_rank() const { return pp_rank_; }
  int ep_rank() const { return ep_rank_; }
  int edp_rank() const { return (rank_ / (s_.tp * s_.ep)) % edp_; }
  bool first_stage() const { return pp_rank_ == 0; }
  bool last_stage() const { return pp_rank_ == s_.pp - 1; }

  // Group kinds: "tp", "cp", "dp", "pp", "dp_cp" (gradient reduction), "tp_cp", "mp" (tp × pp: model parallel,
  // grad-norm reduction), "embedding" (first and last stage of each pipeline), "ep", "edp" (expert data), "emp"
  // (expert model parallel: tp × ep × pp, the experts' grad-norm reduction).
  GroupList groups(const std::string& kind) const;
  // The group of `kind` this rank belongs to.
  std::vector<int> my_group(const std::string& kind) const;

 private:
  int world_, rank_;
  ParallelSizes s_;
  int dp_, edp_;
  int tp_rank_, cp_rank_, dp_rank_, pp_rank_, ep_rank_;
};

// All groups of a grid whose dimensions (fastest first) have `sizes`: each group varies the dimensions marked in
// `varies` and fixes the rest. Members are listed with the first varying dimension fastest.
GroupList orthogonal_groups(const std::vector<int>& sizes, const std::vector<bool>& varies);

// Makes the communicator of a group kind (make_mpi_comm, or a backend's device-aware one).
using CommFactory = std::unique_ptr<Comm> (*)(const std::string& name, const GroupList& groups);

// The communicators a training rank uses, one per group kind, created collectively. With a device factory
// (the CUDA backend's) device tensors travel through it; host tensors always go through MPI.
struct Comms {
  std::unique_ptr<Comm> world, tp, cp, dp, pp, dp_cp, mp, embedding;
  // The expert groups: made only under expert parallelism; without it they are the dense groups.
  std::unique_ptr<Comm> ep, edp, emp;
  Comm* expert_parallel() const { return ep.get(); }                   // null: every expert on each rank
  Comm& expert_data_parallel() const { return edp ? *edp : *dp_cp; }   // the experts' gradient group
  Comm& expert_model_parallel() const { return emp ? *emp : *mp; }     // the experts' grad-norm group
  static Comms create(const ProcessGrid& grid, CommFactory factory = make_mpi_comm);
};

}  // namespace weft
