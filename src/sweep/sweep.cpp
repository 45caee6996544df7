// weft/src/sweep/sweep.cpp v1 — the points of a sweep, its folder and its Slurm array script (see sweep.h).
#include "sweep/sweep.h"

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/atomic_file.h"
#include "model/model_fields.h"
#include "util/error.h"

namespace weft {
namespace fs = std::filesystem;

namespace {

constexpr int kManifestVersion = 1;

// A key whose single value is itself comma-separated: its swept values are separated by ';' instead.
bool list_valued(const std::string& key) {
  if (key == "data.split") return true;
  for (const ModelField& f : model_fields())
    if (f.deck_key() == key) return std::string(f.type()) == "int list";
  return false;
}

std::vector<std::string> split_at(const std::string& text, char sep) {
  std::vector<std::string> out;
  for (size_t b = 0;;) {
    const size_t e = text.find(sep, b);
    out.push_back(text.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) return out;
    b = e + 1;
  }
}

// "--section.key=value" (or "--section.key" followed by the value) → (key, value).
std::pair<std::string, std::string> key_value(const std::vector<std::string>& args, size_t& i, const std::string& where) {
  const std::string& a = args[i];
  const size_t eq = a.find('=');
  std::string key = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2), value;
  if (a.rfind("--", 0) != 0 || key.find('.') == std::string::npos || key.front() == '.')
    throw ConfigError(str(where, ": expected --section.key=value, got '", a, "'"));
  if (eq != std::string::npos) value = a.substr(eq + 1);
  else if (i + 1 < args.size()) value = args[++i];
  else throw ConfigError(str(where, ": ", a, " needs a value"));
  if (value.find('\n') != std::string::npos) throw ConfigError(str(where, ": the value of ", key, " holds a newline"));
  return {key, value};
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

int point_digits(size_t points) {
  int d = 1;
  for (size_t n = points > 0 ? points - 1 : 0; n >= 10; n /= 10) ++d;
  return std::max(d, 3);
}

nlohmann::json manifest_json(const Sweep& s) {
  nlohmann::json points = nlohmann::json::array();
  for (const SweepPoint& p : s.points) {
    nlohmann::json values = nlohmann::json::array();
    for (const auto& kv : p) values.push_back(kv.second);
    points.push_back(values);
  }
  return {{"weft_sweep", kManifestVersion}, {"deck", s.deck},   {"ranks", s.ranks}, {"fixed", s.fixed},
          {"keys", s.keys},                 {"points", points}, {"weft", s.weft}};
}

}  // namespace

std::string Sweep::point_dir(size_t i) const {
  std::ostringstream name;
  name << "point-" << std::setw(point_digits(points.size())) << std::setfill('0') << i;
  return (fs::path(dir) / name.str()).string();
}

std::vector<std::string> Sweep::train_args(size_t i) const {
  std::vector<std::string> a = {weft, "train", deck};
  a.insert(a.end(), fixed.begin(), fixed.end());
  for (const auto& [key, value] : points[i]) a.push_back(str("--", key, "=", value));
  a.push_back(str("--log.dir=", point_dir(i)));
  a.push_back(str("--checkpoint.save=", point_dir(i), "/ckpt"));
  return a;
}

std::string Sweep::label(size_t i) const {
  std::string text;
  for (const auto& [key, value] : points[i])
    text += str(text.empty() ? "" : " ", key.substr(key.rfind('.') + 1), "=", value);
  return text.empty() ? str("point ", i) : text;
}

void split_sweep_args(const std::vector<std::string>& args, std::vector<std::string>& fixed,
                      std::vector<SweepAxis>& axes) {
  std::set<std::string> seen;
  for (size_t i = 0; i < args.size(); ++i) {
    auto [key, value] = key_value(args, i, "weft sweep");
    if (!seen.insert(key).second) throw ConfigError(str("weft sweep: ", key, " is given twice"));
    if (key == "log.dir" || key == "checkpoint.save" || key == "checkpoint.load")
      throw ConfigError(str("weft sweep: ", key, " is the sweep's to set (each point logs and checkpoints into its "
                            "own folder under --out)"));
    const char sep = list_valued(key) ? ';' : ',';
    if (value.find(sep) == std::string::npos) {
      fixed.push_back(str("--", key, "=", value));
      continue;
    }
    SweepAxis axis{key, split_at(value, sep)};
    std::set<std::string> distinct;
    for (const std::string& v : axis.values)
      if (v.empty() || !distinct.insert(v).second)
        throw ConfigError(str("weft sweep: --", key, "=", value, ": the values must be distinct and not empty"));
    axes.push_back(std::move(axis));
  }
}

std::vector<SweepPoint> grid_points(const std::vector<SweepAxis>& axes) {
  std::vector<SweepPoint> points = {{}};
  for (const SweepAxis& axis : axes) {
    std::vector<SweepPoint> next;
    for (const SweepPoint& p : points)
      for (const std::string& v : axis.values) {
        next.push_back(p);
        next.back().emplace_back(axis.key, v);
      }
    points = std::move(next);
  }
  return points;
}

std::vector<SweepPoint> read_points_file(const std::string& path, std::vector<std::string>& keys) {
  std::ifstream in(path);
  if (!in) throw ConfigError(str("weft sweep: cannot open the points file '", path, "'"));
  std::vector<SweepPoint> points;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    const std::string where = str(path, ":", line_no);
    std::istringstream words(line.substr(0, line.find('#')));
    std::vector<std::string> args;
    for (std::string w; words >> w;) args.push_back(w);
    if (args.empty()) continue;
    SweepPoint p;
    for (size_t i = 0; i < args.size(); ++i) p.push_back(key_value(args, i, where));
    std::vector<std::string> these;
    for (const auto& kv : p) these.push_back(kv.first);
    if (points.empty()) keys = these;
    else if (these != keys)
      throw ConfigError(str(where, ": the point sets ", nlohmann::json(these).dump(), ", the first point ",
                            nlohmann::json(keys).dump(), " (every point sets the same keys, in one order)"));
    points.push_back(std::move(p));
  }
  if (points.empty()) throw ConfigError(str("weft sweep: the points file '", path, "' has no points"));
  return points;
}

void write_manifest(const Sweep& s) {
  fs::create_directories(s.dir);
  write_text_atomically((fs::path(s.dir) / "sweep.json").string(), manifest_json(s).dump(2) + "\n");
  for (size_t i = 0; i < s.points.size(); ++i) {
    fs::create_directories(s.point_dir(i));
    std::string text;
    for (const std::string& a : s.train_args(i)) text += a + "\n";
    write_text_atomically(s.point_dir(i) + "/args", text);
  }
}

Sweep read_manifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / "sweep.json").string();
  std::ifstream in(path);
  if (!in) throw ConfigError(str("weft sweep: no sweep in '", dir, "' (", path, " is missing)"));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  Sweep s;
  try {
    if (j.is_discarded() || j.value("weft_sweep", 0) != kManifestVersion)
      throw ConfigError(str(path, ": not a weft sweep manifest of version ", kManifestVersion));
    s.deck = j.at("deck").get<std::string>();
    s.ranks = j.at("ranks").get<int>();
    s.fixed = j.at("fixed").get<std::vector<std::string>>();
    s.keys = j.at("keys").get<std::vector<std::string>>();
    s.weft = j.at("weft").get<std::string>();
    for (const auto& values : j.at("points")) {
      if (values.size() != s.keys.size()) throw ConfigError(str(path, ": a point has ", values.size(), " values for ",
                                                                 s.keys.size(), " keys"));
      SweepPoint p;
      for (size_t k = 0; k < s.keys.size(); ++k) p.emplace_back(s.keys[k], values[k].get<std::string>());
      s.points.push_back(std::move(p));
    }
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(str(path, ": ", e.what()));
  }
  s.dir = fs::absolute(dir).lexically_normal().string();
  return s;
}

void check_same_sweep(const Sweep& s) {
  if (!fs::exists(fs::path(s.dir) / "sweep.json")) return;
  const Sweep old = read_manifest(s.dir);
  auto differs = [&](const char* what, const std::string& was, const std::string& now) {
    throw ConfigError(str("weft sweep: ", s.dir, " holds another sweep (its ", what, " was ", was, ", now ", now,
                          "); give another --out, or the same arguments to resume it"));
  };
  if (old.deck != s.deck) differs("deck", old.deck, s.deck);
  if (old.ranks != s.ranks) differs("ranks", str(old.ranks), str(s.ranks));
  if (old.fixed != s.fixed) differs("fixed keys", nlohmann::json(old.fixed).dump(), nlohmann::json(s.fixed).dump());
  if (old.keys != s.keys) differs("swept keys", nlohmann::json(old.keys).dump(), nlohmann::json(s.keys).dump());
  if (old.points != s.points)
    differs("points", str(old.points.size(), " points"), str(s.points.size(), " points (or other values)"));
}

int point_status(const Sweep& s, size_t i) {
  std::ifstream in(s.point_dir(i) + "/status");
  int code = -1;
  if (!(in >> code)) return -1;
  return code;
}

int64_t checkpoint_iteration(const Sweep& s, size_t i) {
  std::ifstream in(s.point_dir(i) + "/ckpt/latest");
  std::string name;
  if (!(in >> name) || name.rfind("iter_", 0) != 0) return -1;
  try {
    return std::stoll(name.substr(5));
  } catch (const std::exception&) {
    return -1;
  }
}

std::string slurm_array_script(const Sweep& s) {
  const std::string dir = shell_quote(s.dir);
  std::ostringstream o;
  o << "#!/usr/bin/env bash\n"
       "# Written by `weft sweep --slurm` for the sweep in "
    << s.dir
    << ": array task i runs point i (the command in\n"
       "# point-i/args) with srun and Slurm's PMIx plugin (WEFT_SRUN_MPI, default pmix) or, with WEFT_LAUNCH=mpirun,\n"
       "# Open MPI's mpirun; its output goes to point-i/weft.out, its exit code to point-i/status. A finished point\n"
       "# is skipped, one with a checkpoint resumes from it; before the time limit Slurm sends SIGUSR1, weft saves and\n"
       "# the task requeues itself. `weft sweep --collect` then writes the results table.\n"
       "#SBATCH --job-name=weft-sweep\n"
       "#SBATCH --ntasks="
    << s.ranks << "\n#SBATCH --output=" << s.dir
    << "/slurm-%A_%a.out\n"
       "#SBATCH --signal=USR1@300\n"
       "#SBATCH --requeue\n"
       "set -euo pipefail\n"
       "point="
    << dir << "/point-$(printf '%0" << point_digits(s.points.size())
    << "d' \"$SLURM_ARRAY_TASK_ID\")\n"
       "if [ \"$(cat \"$point/status\" 2>/dev/null)\" = 0 ]; then echo \"weft sweep: $point finished already\"; exit 0; "
       "fi\n"
       "mapfile -t ARGS < \"$point/args\"\n"
       "if [ -f \"$point/ckpt/latest\" ]; then ARGS+=(\"--checkpoint.load=$point/ckpt\"); fi\n"
       "rm -f \"$point/status\"\n"
       "before=0\n"
       "if [ -f \"$point/weft.out\" ]; then before=$(wc -l < \"$point/weft.out\"); fi\n"
       "set +e\n"
       "if [ \"${WEFT_LAUNCH:-srun}\" = mpirun ]; then\n"
       "  mpirun \"${ARGS[@]}\" >> \"$point/weft.out\" 2>&1\n"
       "else\n"
       "  srun --mpi=\"${WEFT_SRUN_MPI:-pmix}\" --kill-on-bad-exit=1 \"${ARGS[@]}\" >> \"$point/weft.out\" 2>&1\n"
       "fi\n"
       "status=$?\n"
       "set -e\n"
       "# Stopped by the signal before the end: queue this task again to go on from the checkpoint it just saved.\n"
       "if [ $status -eq 0 ] && tail -n +$((before + 1)) \"$point/weft.out\" | grep -c \"stopped after iteration\" >/dev/null; "
       "then\n"
       "  scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n"
       "  exit 0\n"
       "fi\n"
       "echo $status > \"$point/status\"\n"
       "exit $status\n";
  return o.str();
}

}  // namespace weft
