// weft/src/io/checkpoint.h v2 — weft's native checkpoints: HDF5 shards that load at any tp/pp/dp layout.
//
//   DIR/latest                        the name of the newest complete checkpoint ("iter_0000100")
//   DIR/iter_0000100/metadata.json    format version, iteration, consumed samples, layout, model, deck, ...
//   DIR/iter_0000100/shard_tp0_pp0.h5 one file per writing rank; every dataset carries its global shape, its shard
//                                     dimension and the global ranges it holds, so any layout can read it back.
//
// A save goes to iter_N.tmp, every file is fsynced, the directory is renamed into place, then `latest` is
// replaced (itself through a rename): a checkpoint is complete or absent, never half-written. A save that fails (a
// full disk, checked before writing and on every write) removes what it wrote and says that `latest` still names the
// checkpoint before it.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "model/parameter.h"
#include "util/error.h"

namespace weft {

constexpr int kCheckpointFormatVersion = 1;

// One rank's piece of a logical tensor.
struct ShardedTensor {
  std::string key;  // "model/<param name>", "optim/exp_avg/<param name>", ...
  Tensor value;     // the local shard
  Shape global_shape;
  int shard_dim = -1;
  std::vector<ShardBlock> blocks;
};

// Saves one checkpoint collectively over `world`. Ranks that hold nothing to write pass no tensors.
class CheckpointWriter {
 public:
  // keep > 0: after the commit, only the `keep` newest checkpoints of the directory remain (by iteration; the one
  // just written always among them).
  CheckpointWriter(const std::string& dir, int64_t iteration, Comm& world, int64_t keep = 0);
  // Writes this rank's tensors to `file_name` inside the checkpoint (call at most once per rank).
  void write_shard(const std::string& file_name, const std::vector<ShardedTensor>& tensors);
  // Rank 0 writes metadata.json; then the directory is renamed into place and `latest` updated.
  void commit(const nlohmann::json& metadata);

 private:
  void remove_older_checkpoints() const;  // checkpoint.keep (rank 0, after `latest` names the new one)
  [[noreturn]] void abandon(const Error& e) const;  // removes iter_N.tmp and rethrows, naming what `latest` holds
  std::string dir_, name_, tmp_;
  Comm& world_;
  int64_t keep_;
};

class CheckpointReader {
 public:
  // `dir` holds `latest` (or is itself an iter_* directory). Errors name the directory and what is missing.
  explicit CheckpointReader(const std::string& dir);
  ~CheckpointReader();
  const nlohmann::json& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }
  bool has(const std::string& key) const { return index_.count(key) > 0; }
  // Fills `dst`, a local shard (`shard_dim`, `blocks`), from the saved pieces of `key`, whatever their layout.
  // Errors name the file and tensor when it is missing or its global shape differs.
  void read(const std::string& key, Tensor& dst, const Shape& global_shape, int shard_dim,
            const std::vector<ShardBlock>& blocks) const;

 private:
  struct Piece {
    int64_t file;
    Shape local_shape, global_shape;
    int shard_dim;
    std::vector<ShardBlock> blocks;
  };
  std::string path_;
  nlohmann::json metadata_;
  std::vector<int64_t> files_;  // open HDF5 file ids
  std::vector<std::string> file_names_;
  std::map<std::string, std::vector<Piece>> index_;
};

// The sharded view of a parameter's value (key "model/<name>") or of a same-shaped tensor under another prefix.
ShardedTensor sharded(const std::string& prefix, const Parameter& p, const Tensor& value);

}  // namespace weft
