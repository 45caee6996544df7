// weft/src/sweep/sweep.h v1 — a parameter sweep: the points of a grid (or a list) of deck settings, each one run of
// `weft train` with its own log and checkpoint folder under the sweep's folder.
//
// The sweep folder holds sweep.json (what the sweep is: deck, ranks, fixed keys, points), and per point
// point-NNN/ with `args` (the command, one argument per line, as the Slurm array script reads it), weft.out (the
// run's output), metrics.jsonl, ckpt/ and `status` (the exit code, written when the run ends). A point whose status
// is 0 is finished and is not run again.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace weft {

// One point: its settings of the swept keys, in the order of Sweep::keys.
using SweepPoint = std::vector<std::pair<std::string, std::string>>;

struct Sweep {
  std::string deck;                // absolute path
  int ranks = 1;                   // MPI ranks per point
  std::vector<std::string> fixed;  // "--section.key=value" every point has
  std::vector<std::string> keys;   // the swept keys
  std::vector<SweepPoint> points;
  std::string dir;                 // the sweep folder (absolute)
  std::string weft;                // the weft executable the points run (absolute)

  std::string point_dir(size_t i) const;             // <dir>/point-007
  std::vector<std::string> train_args(size_t i) const;  // weft train DECK fixed... settings... --log.dir --checkpoint.save
  std::string label(size_t i) const;                  // "lr=3e-3 tp=2": the settings by their keys' last part
};

// The command line's sweep keys: "--train.lr=1e-4,3e-4" is a swept key with two values; a value without a comma a
// fixed key. The values of a key whose own value is a list (data.split, [model] int lists) are separated by ';'.
// Returns (fixed, axes); a ConfigError names an argument that is not --section.key=value.
struct SweepAxis {
  std::string key;
  std::vector<std::string> values;
};
void split_sweep_args(const std::vector<std::string>& args, std::vector<std::string>& fixed,
                      std::vector<SweepAxis>& axes);

// Every combination of the axes' values, the first axis slowest (as nested loops in the order given).
std::vector<SweepPoint> grid_points(const std::vector<SweepAxis>& axes);

// A points file: one point per line, its settings as --section.key=value arguments separated by blanks; '#' starts a
// comment. All points must set the same keys (they are the table's columns). Sets `keys` and returns the points.
std::vector<SweepPoint> read_points_file(const std::string& path, std::vector<std::string>& keys);

// sweep.json: written atomically; reading checks the version and names the file on any error.
void write_manifest(const Sweep& s);
Sweep read_manifest(const std::string& dir);
// An existing sweep.json in s.dir must describe the same sweep (a resumed one); a ConfigError says what differs.
void check_same_sweep(const Sweep& s);

// The point's recorded exit code, or -1 when it has none (never run, or still running).
int point_status(const Sweep& s, size_t i);

// The iteration of the point's newest checkpoint (ckpt/latest), or -1 when it has none.
int64_t checkpoint_iteration(const Sweep& s, size_t i);

// The job-array script that runs the points on Slurm (one array task per point, srun or mpirun inside), text.
std::string slurm_array_script(const Sweep& s);

}  // namespace weft
