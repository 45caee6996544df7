// weft/test/cli/cli_util.h v5 — running the weft executable from tests and reading what it wrote.
#pragma once
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "../unit/test_util.h"

namespace weft::test {

struct Result {
  int status = -1;
  std::string out, err;
};

inline std::string env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) throw std::runtime_error(std::string("test needs $") + name + " (run it through ctest)");
  return v;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `weft args` on `np` ranks (np = 0: without mpirun) and captures its exit status and output.
inline Result run_weft(const TempDir& dir, const std::string& args, int np = 0) {
  const std::string launcher = np > 0 ? env("WEFT_MPIEXEC") + " -np " + std::to_string(np) + " " : "";
  const std::string cmd = launcher + env("WEFT_BIN") + " " + args + " >" + dir.file("stdout") + " 2>" +
                          dir.file("stderr");
  Result r;
  const int raw = std::system(cmd.c_str());
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = slurp(dir.file("stdout"));
  r.err = slurp(dir.file("stderr"));
  return r;
}

// The demo corpus (Moby-Dick) as a byte-level Megatron dataset in `dir`; returns its prefix.
inline std::string byte_dataset(const TempDir& dir) {
  const std::string prefix = dir.file("moby");
  const Result r = run_weft(dir, "preprocess --input " + source_dir() + "/inputs/corpus/moby-dick.jsonl --tokenizer "
                                 "bytes --output-prefix " + prefix + " --append-eod");
  EXPECT_EQ(r.status, 0) << r.err;
  return prefix;
}

// A deck of the tiny-llama preset over a byte-level dataset: 10 steps of 4 sequences of 32 tokens, no validation.
inline std::string tiny_deck(const TempDir& dir, const std::string& prefix) {
  return dir.write("deck.ini", "include = tiny-llama.ini\n[model]\nvocab_size = 257\n[data]\nprefix = " + prefix +
                                   "\ntokenizer = bytes\nseq_length = 32\nsplit = 100,0,0\n[train]\n"
                                   "micro_batch_size = 2\nglobal_batch_size = 4\ntrain_iters = 10\nlr = 3e-3\n"
                                   "eval_iters = 0\n");
}

// Runs a shell command in `dir` and captures its exit status and output.
inline Result run_command(const TempDir& dir, const std::string& cmd) {
  Result r;
  const int raw = std::system((cmd + " >" + dir.file("cmd.out") + " 2>" + dir.file("cmd.err")).c_str());
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = slurp(dir.file("cmd.out"));
  r.err = slurp(dir.file("cmd.err"));
  return r;
}

// max |a − b| / max |b| over two tensors of the same size (logits against a reference).
inline double relative_max_error(const Tensor& a, const Tensor& b) {
  const auto x = a.to_doubles(), y = b.to_doubles();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return diff / scale;
}

// "weft forward: ... mean next-token loss X" → X (or the value printed after another name); NaN if absent.
inline double printed_loss(const std::string& out, const std::string& name = "next-token loss") {
  const auto at = out.find(name + " ");
  EXPECT_NE(at, std::string::npos) << name << " in " << out;
  return at == std::string::npos ? NAN : std::stod(out.substr(at + name.size() + 1));
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The lines of a metrics.jsonl after each run's header line ({"run": ...}): training and validation records.
inline std::vector<nlohmann::json> records(const std::string& path) {
  std::vector<nlohmann::json> out;
  for (auto& j : read_jsonl(path))
    if (!j.contains("run")) out.push_back(j);
  return out;
}

// The training lines (those with a loss) of a metrics.jsonl.
inline std::vector<nlohmann::json> train_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  for (auto& j : read_jsonl(path))
    if (j.contains("loss")) out.push_back(j);
  return out;
}

// `weft train DECK LAYOUT` on np ranks logs what the single-rank run `ref` logged: each of `keys` within 1e-5
// relative at every step.
inline void expect_same_run(const TempDir& dir, const std::string& deck, const std::string& layout, int np,
                            const std::vector<nlohmann::json>& ref,
                            const std::vector<std::string>& keys = {"loss", "grad_norm"}) {
  const std::string log = dir.file("run" + std::to_string(std::hash<std::string>{}(deck + layout)));
  const Result r = run_weft(dir, "train " + deck + " " + layout + " --log.dir=" + log, np);
  ASSERT_EQ(r.status, 0) << layout << "\n" << r.out << r.err;
  const auto lines = train_lines(log + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), ref.size()) << layout;
  for (size_t i = 0; i < ref.size(); ++i)
    for (const std::string& key : keys) {
      const double a = lines[i][key], b = ref[i][key];
      EXPECT_NEAR(a, b, 1e-5 * std::abs(b)) << layout << " " << key << ", step " << i + 1;
    }
}

// A 10-step run stopped and resumed (its log dir `part` holds the lines of both halves) follows the uninterrupted
// run in `full`: every loss within 1e-5 relative.
inline void expect_resumed_losses(const std::string& full, const std::string& part, const std::string& what = "") {
  const auto ref = train_lines(full + "/metrics.jsonl"), got = train_lines(part + "/metrics.jsonl");
  ASSERT_EQ(got.size(), 10u) << what;
  for (size_t i = 0; i < 10; ++i)
    EXPECT_NEAR(got[i]["loss"].get<double>(), ref[i]["loss"].get<double>(), 1e-5 * ref[i]["loss"].get<double>())
        << what << " step " << i + 1;
}

// A filesystem of `bytes` (a tmpfs mounted at `path`, which needs root): a disk that fills up. Unmounted when it goes.
class SmallDisk {
 public:
  SmallDisk(const std::string& path, int64_t bytes) : path_(path) {
    std::filesystem::create_directories(path);
    mounted_ = std::system(("mount -t tmpfs -o size=" + std::to_string(bytes) + " weft-test " + path +
                            " 2>/dev/null").c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted_) std::system(("umount " + path_).c_str());
  }
  bool mounted() const { return mounted_; }
  // Every file left under it, relative to it (directories are not listed).
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(path_))
      if (!e.is_directory()) out.push_back(std::filesystem::relative(e.path(), path_).string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::string path_;
  bool mounted_ = false;
};

}  // namespace weft::test
