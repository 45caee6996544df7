// weft/src/cli/common.cpp v2 — deck arguments and collective config loading shared by the subcommands.
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <vector>

#include "cli/cli.h"
#include "config/deck.h"
#include "config/schema.h"
#include "config/validate.h"
#include "ops/device.h"
#include "train/setup.h"

namespace weft {

namespace {

uint64_t fnv1a(const char* p, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ULL;
  return h;
}

// Every key the deck and command line set, one "key = value" line each, in key order.
std::string deck_text(const Config& c) {
  std::string text;
  for (const auto& [key, value] : c.values) text += key + " = " + value + "\n";
  return text;
}

// The running executable's bytes, hashed: ranks started from different builds differ here.
uint64_t build_hash() {
  std::ifstream exe("/proc/self/exe", std::ios::binary);
  uint64_t h = 0xcbf29ce484222325ULL;
  std::vector<char> buf(size_t(1) << 20);
  while (exe.read(buf.data(), static_cast<std::streamsize>(buf.size())) || exe.gcount() > 0)
    h = fnv1a(buf.data(), static_cast<size_t>(exe.gcount()), h);
  return h;
}

// Ranks launched with different decks (or overrides) or different weft builds would hang in mismatched
// collectives or train apart silently: every rank compares its deck's keys and its executable with rank 0's, and
// the first rank that differs is named, with the keys that differ.
void check_same_job(const Config& cfg, int rank) {
  int world = 1;
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));
  if (world == 1) return;
  const std::string text = deck_text(cfg);
  const uint64_t mine[2] = {fnv1a(text.data(), text.size()), build_hash()};
  std::vector<uint64_t> all(2 * static_cast<size_t>(world));
  MPI_CHECK(MPI_Allgather(mine, 2, MPI_UINT64_T, all.data(), 2, MPI_UINT64_T, MPI_COMM_WORLD));
  int odd = 0;
  for (int r = 1; r < world && odd == 0; ++r)
    if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) odd = r;
  if (odd == 0) return;
  if (all[2 * odd + 1] != all[1]) throw ConfigError(rank != 0 ? "" : str("rank ", odd, " runs another weft build "
                                                                          "than rank 0 (its executable differs)"));
  // Rank `odd` sends its keys to rank 0, which names those that differ.
  if (rank == odd) {
    int n = static_cast<int>(text.size());
    MPI_CHECK(MPI_Send(&n, 1, MPI_INT, 0, 0, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Send(text.data(), n, MPI_CHAR, 0, 1, MPI_COMM_WORLD));
  }
  if (rank != 0) throw ConfigError("");
  int n = 0;
  MPI_CHECK(MPI_Recv(&n, 1, MPI_INT, odd, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
  std::string theirs(static_cast<size_t>(n), '\0');
  MPI_CHECK(MPI_Recv(theirs.data(), n, MPI_CHAR, odd, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
  std::map<std::string, std::string> other;
  std::istringstream lines(theirs);
  for (std::string line; std::getline(lines, line);) {
    const auto eq = line.find(" = ");
    other[line.substr(0, eq)] = line.substr(eq + 3);
  }
  std::string diff;
  auto note = [&](const std::string& key, const std::string& here, const std::string& there) {
    if (diff.size() < 400) diff += str(diff.empty() ? "" : "; ", key, " = ", there, " there, ", here, " here");
  };
  for (const auto& [key, value] : cfg.values)
    if (!other.count(key) || other[key] != value) note(key, value, other.count(key) ? other[key] : "(unset)");
  for (const auto& [key, value] : other)
    if (!cfg.values.count(key)) note(key, "(unset)", value);
  throw ConfigError(str("rank ", odd, " runs another deck than rank 0 (", cfg.deck_path, "): ", diff));
}

}  // namespace

bool parse_deck_args(const Args& args, const char* usage, std::string& deck, Args& overrides, const MpiEnv& mpi) {
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      if (mpi.rank() == 0) {
        Config c;
        std::cout << "usage: " << usage << "\n\nEvery key can be set in the deck's [section] or on the command line "
                  << "as --section.key=value (which wins).\n";
        print_schema(std::cout, deck_schema(c));
      }
      return false;
    }
  if (args.empty() || args[0].rfind("--", 0) == 0) throw ConfigError(str("usage: ", usage));
  deck = args[0];
  overrides.assign(args.begin() + 1, args.end());
  return true;
}

Config load_config_collectively(const std::string& deck, const Args& overrides, int world_size_for_checks,
                                bool check_inputs) {
  Config cfg;
  std::string error;
  try {
    cfg = load_config(deck, overrides);
    resolve_model(cfg);
    validate_config(cfg, world_size_for_checks);
    if (check_inputs) validate_inputs(cfg);
  } catch (const ConfigError& e) {
    error = e.what();
  }
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  int mine = error.empty() ? INT_MAX : rank, first = INT_MAX;
  MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (first != INT_MAX) throw ConfigError(rank == first ? error : "");
  check_same_job(cfg, rank);
  return cfg;
}

std::string version_text() {
  char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(mpi, &len);
  std::string mpi_line(mpi, static_cast<size_t>(len));
  mpi_line = mpi_line.substr(0, mpi_line.find_first_of(",\n"));
  return str("weft ", WEFT_VERSION, " (commit ", WEFT_GIT_HASH, ")\nMPI: ", mpi_line, "\nGPU backend: ",
             device_support().versions ? device_support().versions() : std::string("not built (CPU only)"));
}

void check_not_a_lone_rank(const MpiEnv& mpi) {
  const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  if (mpi.size() != 1 || !tasks || std::atoi(tasks) <= 1) return;
  throw ConfigError(str("Slurm started this step with ", tasks, " tasks (SLURM_STEP_NUM_TASKS), but MPI started this "
                        "process alone: srun needs an MPI plugin that matches Open MPI (srun --mpi=pmix; "
                        "`srun --mpi=list` shows them), or launch with mpirun inside the allocation "
                        "(jobscripts/train.sbatch does either)"));
}

int64_t parse_count(const std::string& what, const std::string& text) {
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || n <= 0)
    throw ConfigError(str(what, " expects a positive integer, got '", text, "'"));
  return n;
}

}  // namespace weft
