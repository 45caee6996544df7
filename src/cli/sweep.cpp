// weft/src/cli/sweep.cpp v1 — `weft sweep`: runs a grid (or a list) of deck settings one after another under
// mpirun, or as a Slurm job array, and collects their results into one table (sweep/sweep.h, sweep/results.h).
//
// The sweep itself is one plain process (no MPI): each point is a `weft train` job it launches and waits for.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/cli.h"
#include "config/deck.h"
#include "config/validate.h"
#include "io/atomic_file.h"
#include "sweep/results.h"
#include "train/memory_plan.h"
#include "train/setup.h"

extern char** environ;

namespace weft {
namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "weft sweep DECK --out DIR [--ranks N] [--section.key=V1,V2 ...] [--points FILE] [--launcher CMD] [--dry-run] "
    "[--slurm [--sbatch ARGS]]\n       weft sweep --collect DIR";

const char* kHelp =
    "\nA sweep runs `weft train DECK` once per point: every combination of the swept keys' values (a key given with\n"
    "commas, e.g. --train.lr=1e-4,3e-4 --parallel.tp=1,2: four points; a key whose value is itself a list, like\n"
    "data.split, separates its values with ';'), or the points of --points FILE (one point per line, its keys as\n"
    "--section.key=value). Keys given with one value apply to every point. Each point logs and checkpoints into\n"
    "DIR/point-NNN/ (its output in weft.out). Every point's deck is validated before the first runs.\n"
    "\n"
    "  --out DIR        the sweep folder; running the same sweep again skips the points that finished\n"
    "  --ranks N        MPI ranks per point (default 1)\n"
    "  --launcher CMD   how a point is started here (default 'mpiexec -n {ranks}'); {ranks} is replaced\n"
    "  --dry-run        print the points and each one's planned memory per rank (weft plan), run nothing\n"
    "  --slurm          submit the points as a Slurm job array (DIR/sweep.sbatch, one task per unfinished point)\n"
    "                   and a job that collects the table when they end; --sbatch ARGS are added to both\n"
    "  --collect DIR    write the table of a sweep's points as they stand\n"
    "\n"
    "When the points end: DIR/results.csv and DIR/results.md (each point's settings, exit status, final and best\n"
    "validation loss, median tokens/s and model TFLOP/s per rank over the steady log windows, peak memory) and\n"
    "DIR/loss.png, DIR/throughput.png. The exit code is 0 when every point finished without error.\n";

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const std::string& a : argv) s += str(s.empty() ? "" : " ", a);
  return s;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Starts argv[0] (looked up on PATH) with stdout and stderr appended to `log`, or stdout into `captured` when log is
// empty; waits and returns its exit code (128 + the signal that ended it).
int run_process(const std::vector<std::string>& argv, const std::string& log, std::string* captured = nullptr) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  int pipe_fds[2] = {-1, -1};
  if (!log.empty()) {
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  } else if (captured) {
    WEFT_CHECK(pipe(pipe_fds) == 0, "weft sweep: pipe: ", std::strerror(errno));
    posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[1]);
  }
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (pipe_fds[1] >= 0) close(pipe_fds[1]);
  if (err != 0) {
    if (pipe_fds[0] >= 0) close(pipe_fds[0]);
    throw ConfigError(str("weft sweep: cannot start '", argv[0], "': ", std::strerror(err)));
  }
  if (pipe_fds[0] >= 0) {
    char buf[4096];
    for (ssize_t n; (n = read(pipe_fds[0], buf, sizeof buf)) > 0;) captured->append(buf, static_cast<size_t>(n));
    close(pipe_fds[0]);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    WEFT_CHECK(errno == EINTR, "weft sweep: waitpid: ", std::strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

struct PointCheck {
  int64_t train_iters = 0;
  double planned_peak = 0;  // the memory the largest pipeline stage needs per rank (weft plan)
};

// Every point's deck loaded and validated as `weft train` would on `ranks` ranks, and planned when asked.
std::vector<PointCheck> validate_points(const Sweep& s, bool with_plans) {
  std::vector<PointCheck> checks;
  for (size_t i = 0; i < s.points.size(); ++i) {
    std::vector<std::string> overrides = s.fixed;
    for (const auto& [key, value] : s.points[i]) overrides.push_back(str("--", key, "=", value));
    try {
      Config cfg = load_config(s.deck, overrides);
      resolve_model(cfg);
      validate_config(cfg, s.ranks);
      validate_inputs(cfg);
      checks.push_back({cfg.train.train_iters, with_plans ? plan_memory(cfg, s.ranks).peak() : 0.0});
    } catch (const ConfigError& e) {
      throw ConfigError(str("weft sweep: point ", i, " (", s.label(i), "): ", e.what()));
    }
  }
  return checks;
}

void print_dry_run(const Sweep& s) {
  const std::vector<PointCheck> checks = validate_points(s, true);
  std::printf("weft sweep: %zu point%s of %s on %d rank%s each (dry run: nothing is run or written)\n",
              s.points.size(), s.points.size() == 1 ? "" : "s", s.deck.c_str(), s.ranks, s.ranks == 1 ? "" : "s");
  if (!s.fixed.empty()) std::printf("every point: %s\n", joined(s.fixed).c_str());
  for (size_t i = 0; i < s.points.size(); ++i) {
    const int status = point_status(s, i);
    std::printf("  %s  %-40s plan %s per rank%s\n", fs::path(s.point_dir(i)).filename().c_str(), s.label(i).c_str(),
                bytes_text(int64_t(checks[i].planned_peak)).c_str(), status == 0 ? "  (finished)" : "");
  }
}

std::vector<size_t> unfinished(const Sweep& s) {
  std::vector<size_t> pending;
  for (size_t i = 0; i < s.points.size(); ++i)
    if (point_status(s, i) != 0) pending.push_back(i);
  return pending;
}

int collect(const Sweep& s) {
  const std::string table = write_results(s);
  std::printf("%s\nweft sweep: %s/results.csv, results.md, loss.png, throughput.png\n", table.c_str(), s.dir.c_str());
  return unfinished(s).empty() ? 0 : 1;
}

int run_here(const Sweep& s, const std::string& launcher) {
  std::vector<std::string> launch = words(launcher);
  bool has_ranks = false;
  for (std::string& w : launch)
    if (const size_t at = w.find("{ranks}"); at != std::string::npos) {
      w.replace(at, 7, std::to_string(s.ranks));
      has_ranks = true;
    }
  if (launch.empty() || !has_ranks)
    throw ConfigError(str("weft sweep: --launcher '", launcher, "' must name {ranks}, e.g. 'mpiexec -n {ranks}'"));
  const std::vector<size_t> pending = unfinished(s);
  std::printf("weft sweep: %zu point%s in %s, %zu to run\n", s.points.size(), s.points.size() == 1 ? "" : "s",
              s.dir.c_str(), pending.size());
  std::fflush(stdout);
  for (size_t n = 0; n < pending.size(); ++n) {
    const size_t i = pending[n];
    const std::string dir = s.point_dir(i), out = dir + "/weft.out";
    std::vector<std::string> argv = launch;
    for (const std::string& a : s.train_args(i)) argv.push_back(a);
    if (fs::exists(dir + "/ckpt/latest")) argv.push_back(str("--checkpoint.load=", dir, "/ckpt"));
    fs::remove(dir + "/status");
    const auto start = std::chrono::steady_clock::now();
    const int status = run_process(argv, out);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    write_text_atomically(dir + "/status", str(status, "\n"));
    const PointResult r = point_result(s, i);
    std::printf("weft sweep: point %zu [%s] %s in %.1f s", i, s.label(i).c_str(),
                status == 0 ? "finished" : str("failed (exit ", status, ")").c_str(), seconds);
    if (status == 0 && r.final_loss) std::printf(": loss %.4f", *r.final_loss);
    if (status != 0) std::printf(": %s (%s)", last_line(out).c_str(), out.c_str());
    std::printf("\n");
    std::fflush(stdout);
  }
  return collect(s);
}

// sbatch's --parsable answer: "JOBID" or "JOBID;CLUSTER".
std::string submit(const std::vector<std::string>& argv) {
  std::string answer;
  const int status = run_process(argv, "", &answer);
  const std::string id = answer.substr(0, answer.find_first_of(";\n"));
  if (status != 0 || id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    throw ConfigError(str("weft sweep: `", joined(argv), "` failed (exit ", status, "): ", answer));
  return id;
}

int submit_to_slurm(const Sweep& s, const std::string& sbatch_args) {
  const std::string script = s.dir + "/sweep.sbatch";
  write_text_atomically(script, slurm_array_script(s));
  fs::permissions(script, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
  const std::vector<size_t> pending = unfinished(s);
  if (pending.empty()) {
    std::printf("weft sweep: every point in %s has finished\n", s.dir.c_str());
    return collect(s);
  }
  std::string array;
  for (size_t i : pending) array += str(array.empty() ? "" : ",", i);
  std::vector<std::string> points_job = {"sbatch", "--parsable", str("--array=", array)};
  for (const std::string& w : words(sbatch_args)) points_job.push_back(w);
  points_job.push_back(script);
  const std::string job = submit(points_job);
  std::vector<std::string> collect_job = {"sbatch", "--parsable", str("--dependency=afterany:", job),
                                          "--job-name=weft-sweep-collect", "--ntasks=1",
                                          str("--output=", s.dir, "/collect.out")};
  for (const std::string& w : words(sbatch_args)) collect_job.push_back(w);
  collect_job.push_back(str("--wrap=", shell_quote(s.weft), " sweep --collect ", shell_quote(s.dir)));
  const std::string collector = submit(collect_job);
  std::printf("weft sweep: %zu point%s of %s submitted as job array %s (%s); job %s writes %s/results.md when they "
              "end\n",
              pending.size(), pending.size() == 1 ? "" : "s", s.dir.c_str(), job.c_str(), script.c_str(), collector.c_str(),
              s.dir.c_str());
  return 0;
}

}  // namespace

int cmd_sweep(const Args& args) {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(var))
      throw ConfigError(str("weft sweep runs as one process and starts each point's ranks itself; it was started by an "
                            "MPI launcher (", var, " is set): run it without mpirun or srun"));
  std::string deck, out, points_file, collect_dir, launcher = "mpiexec -n {ranks}", sbatch_args;
  int64_t ranks = 1;
  bool dry_run = false, slurm = false;
  Args keys;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() {
      const size_t eq = a.find('=');
      if (eq != std::string::npos) return a.substr(eq + 1);
      if (i + 1 >= args.size()) throw ConfigError(str("weft sweep: ", a, " needs a value"));
      return args[++i];
    };
    const std::string flag = a.substr(0, a.find('='));
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s\n%s", kUsage, kHelp);
      return 0;
    }
    if (flag == "--out") out = value();
    else if (flag == "--ranks") ranks = parse_count("weft sweep: --ranks", value());
    else if (flag == "--points") points_file = value();
    else if (flag == "--launcher") launcher = value();
    else if (flag == "--sbatch") sbatch_args = value();
    else if (flag == "--collect") collect_dir = value();
    else if (a == "--dry-run") dry_run = true;
    else if (a == "--slurm") slurm = true;
    else if (a.rfind("--", 0) == 0 && flag.find('.') != std::string::npos) {
      keys.push_back(a);
      if (a.find('=') == std::string::npos && i + 1 < args.size()) keys.push_back(args[++i]);
    } else if (a.rfind("--", 0) == 0) throw ConfigError(str("weft sweep: unknown option '", a, "'; usage: ", kUsage));
    else if (deck.empty()) deck = a;
    else throw ConfigError(str("weft sweep: a second deck '", a, "'; usage: ", kUsage));
  }
  if (!collect_dir.empty()) {
    if (!deck.empty() || !keys.empty()) throw ConfigError(str("weft sweep: --collect DIR takes nothing else"));
    return collect(read_manifest(collect_dir));
  }
  if (deck.empty() || out.empty()) throw ConfigError(str("usage: ", kUsage));
  if (!fs::is_regular_file(deck)) throw ConfigError(str("weft sweep: no deck '", deck, "'"));

  Sweep s;
  s.deck = fs::absolute(deck).lexically_normal().string();
  s.dir = fs::absolute(out).lexically_normal().string();
  s.ranks = static_cast<int>(ranks);
  s.weft = fs::canonical("/proc/self/exe").string();
  std::vector<SweepAxis> axes;
  split_sweep_args(keys, s.fixed, axes);
  if (!points_file.empty()) {
    if (!axes.empty()) throw ConfigError(str("weft sweep: --points and swept keys (", axes[0].key, ") together; put "
                                             "every point in the file"));
    s.points = read_points_file(points_file, s.keys);
  } else {
    for (const SweepAxis& a : axes) s.keys.push_back(a.key);
    s.points = grid_points(axes);
  }
  if (dry_run) {
    print_dry_run(s);
    return 0;
  }
  check_same_sweep(s);
  const std::vector<PointCheck> checks = validate_points(s, false);
  write_manifest(s);
  // A run that saved its last iteration but lost its status (its job ended before it was written) is finished: run
  // again it would have nothing left to train.
  for (size_t i = 0; i < s.points.size(); ++i)
    if (point_status(s, i) != 0 && checkpoint_iteration(s, i) >= checks[i].train_iters) {
      write_text_atomically(s.point_dir(i) + "/status", "0\n");
      std::printf("weft sweep: point %zu [%s]: its checkpoint holds all %lld iterations, so it counts as finished\n",
                  i, s.label(i).c_str(), (long long)checks[i].train_iters);
    }
  return slurm ? submit_to_slurm(s, sbatch_args) : run_here(s, launcher);
}

}  // namespace weft
