// weft/test/cli/sweep_test.cpp v1 — `weft sweep`: a grid on the demo deck run here and as a Slurm job array (stub
// sbatch and srun on the PATH), its table against the same runs made one by one, resumption and bad points.
#include <gtest/gtest.h>

#include "cli_util.h"

namespace weft::test {
namespace {

namespace fs = std::filesystem;

// The demo deck made short: 6 steps of 64-token samples, validation at steps 3 and 6, a log line every 2 steps.
std::string short_demo(const std::string& prefix) {
  return "--data.prefix=" + prefix + " --data.seq_length=64 --train.train_iters=6 --train.lr_warmup_iters=2 "
         "--train.eval_interval=3 --train.eval_iters=1 --log.interval=2";
}

std::string demo_deck() { return source_dir() + "/inputs/demo.ini"; }

std::string launcher() { return "--launcher '" + env("WEFT_MPIEXEC") + " -n {ranks}'"; }

// results.csv as rows of column → text.
std::vector<std::map<std::string, std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> header;
  std::vector<std::map<std::string, std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) cells.push_back(cell);
    if (line.back() == ',') cells.push_back("");
    if (header.empty()) {
      header = cells;
      continue;
    }
    EXPECT_EQ(cells.size(), header.size()) << line;
    std::map<std::string, std::string> row;
    for (size_t c = 0; c < std::min(cells.size(), header.size()); ++c) row[header[c]] = cells[c];
    rows.push_back(row);
  }
  return rows;
}

double last_value(const std::string& metrics, const std::string& key) {
  double v = NAN;
  for (const auto& j : records(metrics))
    if (j.contains(key)) v = j[key];
  return v;
}

bool is_png(const std::string& path) { return slurp(path).rfind("\x89PNG\r\n\x1a\n", 0) == 0; }

TEST(Sweep, FourPointsOnTwoRanksEqualTheRunsMadeOneByOne) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir), out = dir.file("sweep"), common = short_demo(prefix);
  const std::string sweep = "sweep " + demo_deck() + " --out " + out + " --ranks 2 " + launcher() +
                            " --train.lr=1e-3,3e-3 --parallel.tp=1,2 " + common;
  Result r = run_weft(dir, sweep);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("4 to run"), std::string::npos) << r.out;

  const auto rows = read_csv(out + "/results.csv");
  ASSERT_EQ(rows.size(), 4u);
  const std::string lrs[] = {"1e-3", "1e-3", "3e-3", "3e-3"}, tps[] = {"1", "2", "1", "2"};
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("point " + std::to_string(i));
    const auto& row = rows[i];
    EXPECT_EQ(row.at("train.lr"), lrs[i]);
    EXPECT_EQ(row.at("parallel.tp"), tps[i]);
    EXPECT_EQ(row.at("status"), "0");
    EXPECT_EQ(row.at("iterations"), "6");
    EXPECT_TRUE(fs::exists(out + "/" + row.at("dir") + "/ckpt/latest"));
    // The same run made by hand: the table holds its final loss and validation loss, to the bit.
    const std::string solo = dir.file("solo" + std::to_string(i));
    const Result s = run_weft(dir, "train " + demo_deck() + " " + common + " --train.lr=" + lrs[i] +
                                       " --parallel.tp=" + tps[i] + " --log.dir=" + solo, 2);
    ASSERT_EQ(s.status, 0) << s.err;
    EXPECT_EQ(std::stod(row.at("final_loss")), last_value(solo + "/metrics.jsonl", "loss"));
    EXPECT_EQ(std::stod(row.at("final_val_loss")), last_value(solo + "/metrics.jsonl", "val_loss"));
    EXPECT_LE(std::stod(row.at("best_val_loss")), std::stod(row.at("final_val_loss")));
    EXPECT_GT(std::stod(row.at("tokens_per_s")), 0);
    EXPECT_GT(std::stod(row.at("peak_memory_gib")), 0);
  }
  // The learning rate changes the loss; the layout does not (within the CPU backend's 1e-5).
  EXPECT_NE(rows[0].at("final_loss"), rows[2].at("final_loss"));
  EXPECT_NEAR(std::stod(rows[0].at("final_loss")), std::stod(rows[1].at("final_loss")), 1e-5);

  const std::string md = slurp(out + "/results.md");
  EXPECT_EQ(std::count(md.begin(), md.end(), '\n'), 6) << md;  // header, rule, 4 points
  EXPECT_NE(md.find("| 3 | 3e-3 | 2 | ok | 6 |"), std::string::npos) << md;
  EXPECT_TRUE(is_png(out + "/loss.png"));
  EXPECT_TRUE(is_png(out + "/throughput.png"));

  // The same sweep again runs nothing and leaves the points' logs as they were.
  const std::string metrics = slurp(out + "/point-002/metrics.jsonl");
  r = run_weft(dir, sweep);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("0 to run"), std::string::npos) << r.out;
  EXPECT_EQ(slurp(out + "/point-002/metrics.jsonl"), metrics);
  // A point that failed runs again, resuming from its checkpoint; the others stay.
  fs::remove_all(out + "/point-001/ckpt");
  std::ofstream(out + "/point-001/status") << "1\n";
  r = run_weft(dir, sweep);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("1 to run"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("point 1 [lr=1e-3 tp=2] finished"), std::string::npos) << r.out;

  // Another sweep into the same folder is refused, naming what differs.
  r = run_weft(dir, "sweep " + demo_deck() + " --out " + out + " --ranks 2 --train.lr=1e-3,1e-2 " + common);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("holds another sweep"), std::string::npos) << r.err;
}

TEST(Sweep, DryRunPlansEveryPointAndRunsNothing) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir), out = dir.file("sweep");
  const Result r = run_weft(dir, "sweep " + demo_deck() + " --out " + out + " --ranks 2 --dry-run "
                                 "--parallel.tp=1,2 --train.recompute=none,full " + short_demo(prefix));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("4 points"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("point-003  tp=2 recompute=full"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 6) << r.out;  // title, common keys, 4 points
  EXPECT_NE(r.out.find("MiB per rank"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out));
}

TEST(Sweep, ABadPointStopsTheSweepBeforeAnyRun) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir), out = dir.file("sweep");
  Result r = run_weft(dir, "sweep " + demo_deck() + " --out " + out + " --train.lr=1e-3,fast " + short_demo(prefix));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("point 1 (lr=fast)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("train.lr"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  // A layout that does not fit the ranks is found before the first point runs, too.
  r = run_weft(dir, "sweep " + demo_deck() + " --out " + out + " --ranks 2 --parallel.tp=2,4 " + short_demo(prefix));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("point 1 (tp=4)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  r = run_weft(dir, "sweep " + demo_deck() + " --out " + out + " --log.dir=x --train.lr=1e-3,3e-3");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("log.dir is the sweep's to set"), std::string::npos) << r.err;
  // Under mpirun it refuses to start, since it launches each point's ranks itself.
  r = run_weft(dir, "sweep " + demo_deck() + " --out " + out + " --train.lr=1e-3,3e-3", 1);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("run it without mpirun"), std::string::npos) << r.err;
}

// Slurm, with stand-ins for sbatch and srun that log their arguments and run the jobs at once.
TEST(Sweep, SlurmJobArrayRunsEachPointInItsFolderAndCollects) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir), out = dir.file("sweep"), log = dir.file("stub.log");
  const std::string keys = " --train.lr=1e-3,3e-3 --checkpoint.save_interval=3 " + short_demo(prefix);
  const std::string slurm = "PATH=" + source_dir() + "/test/cli/slurm_stub:$PATH WEFT_STUB_LOG=" + log + " " +
                            env("WEFT_BIN") + " sweep " + demo_deck() + " --out " + out +
                            " --ranks 2 --slurm --sbatch '--partition=debug --time=10'" + keys;
  Result r = run_command(dir, slurm);
  ASSERT_EQ(r.status, 0) << r.out << r.err << slurp(log + ".jobs");
  EXPECT_NE(r.out.find("2 points"), std::string::npos) << r.out;

  // The commands: one array of both points with the caller's options, srun with the PMIx plugin per point, and
  // a collecting job after the array.
  std::vector<std::string> calls;
  std::stringstream lines(slurp(log));
  for (std::string line; std::getline(lines, line);) calls.push_back(line);
  ASSERT_EQ(calls.size(), 4u) << slurp(log);
  EXPECT_EQ(calls[0], "sbatch --parsable --array=0,1 --partition=debug --time=10 " + out + "/sweep.sbatch");
  for (int i = 0; i < 2; ++i) {
    const std::string point = out + "/point-00" + std::to_string(i);
    EXPECT_EQ(calls[1 + i].rfind("srun --mpi=pmix --kill-on-bad-exit=1 " + env("WEFT_BIN") + " train " + demo_deck(),
                                 0), 0u) << calls[1 + i];
    EXPECT_NE(calls[1 + i].find(" --log.dir=" + point + " --checkpoint.save=" + point + "/ckpt"),
              std::string::npos) << calls[1 + i];
    EXPECT_EQ(slurp(point + "/status"), "0\n");
    EXPECT_TRUE(fs::exists(point + "/ckpt/latest"));
  }
  EXPECT_EQ(calls[3], "sbatch --parsable --dependency=afterany:1001 --job-name=weft-sweep-collect --ntasks=1 "
                      "--output=" + out + "/collect.out --partition=debug --time=10 --wrap='" + env("WEFT_BIN") +
                      "' sweep --collect '" + out + "'");
  const std::string script = slurp(out + "/sweep.sbatch");
  EXPECT_NE(script.find("#SBATCH --ntasks=2\n"), std::string::npos);

  // The collected table equals a sweep of the same points run here.
  const auto slurm_rows = read_csv(out + "/results.csv");
  r = run_weft(dir, "sweep " + demo_deck() + " --out " + dir.file("here") + " --ranks 2 " + launcher() + keys);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto here_rows = read_csv(dir.file("here") + "/results.csv");
  ASSERT_EQ(slurm_rows.size(), 2u);
  ASSERT_EQ(here_rows.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    for (const char* key : {"status", "iterations", "final_loss", "final_val_loss", "best_val_loss"})
      EXPECT_EQ(slurm_rows[i].at(key), here_rows[i].at(key)) << key << ", point " << i;

  // A point whose job ended after its last save but before its status was written counts as finished.
  std::ofstream(out + "/point-001/status") << "137\n";
  r = run_command(dir, slurm);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("point 1 [lr=3e-3]: its checkpoint holds all 6 iterations"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("every point in " + out + " has finished"), std::string::npos) << r.out;
  EXPECT_EQ(slurp(log).size(), slurp(log).find(calls[3]) + calls[3].size() + 1) << "nothing submitted";
  // Submitting again sends only the points that have not finished: a failed point runs again from its checkpoint.
  r = run_command(dir, "(cd " + out + "/point-001/ckpt && rm -r iter_0000006 && echo iter_0000003 > latest)");
  ASSERT_EQ(r.status, 0) << r.err;
  std::ofstream(out + "/point-001/status") << "1\n";
  r = run_command(dir, slurm);
  ASSERT_EQ(r.status, 0) << r.out << r.err << slurp(log + ".jobs");
  const std::string again = slurp(log).substr(slurp(log).find(calls[3]) + calls[3].size() + 1);
  EXPECT_EQ(again.rfind("sbatch --parsable --array=1 --partition=debug", 0), 0u) << again;
  EXPECT_NE(again.find("--checkpoint.load=" + out + "/point-001/ckpt"), std::string::npos) << again;
  EXPECT_EQ(slurp(out + "/point-001/status"), "0\n") << slurp(out + "/point-001/weft.out");
  EXPECT_EQ(read_csv(out + "/results.csv")[1].at("final_loss"), slurm_rows[1].at("final_loss"));
}

}  // namespace
}  // namespace weft::test
