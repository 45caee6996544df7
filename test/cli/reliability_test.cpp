// weft/test/cli/reliability_test.cpp v2 — failures that used to pass silently now stop with one clear line: a resume
// that would run backwards, non-finite losses and deck values, ranks with different decks, datasets whose index
// does not describe their .bin, a lone rank of a Slurm step, a full disk; metrics.jsonl keeps every run, each
// iteration once; an export replaces an earlier one; checkpoints rotate; a stop signal saves and exits cleanly.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "cli_util.h"

using namespace weft;
using namespace weft::test;
namespace fs = std::filesystem;

// A resume with train.train_iters at or below the checkpoint's iteration would save the loaded state as an earlier
// iteration and move `latest` back to it: refused, and nothing is written.
TEST(Reliability, AResumeNeverRunsBackwards) {
  TempDir dir;
  const std::string d = tiny_deck(dir, byte_dataset(dir));
  ASSERT_EQ(run_weft(dir, "train " + d + " --checkpoint.save=" + dir.file("ckpt")).status, 0);
  ASSERT_EQ(slurp(dir.file("ckpt/latest")), "iter_0000010\n");
  for (const char* iters : {"5", "10"}) {
    const Result r = run_weft(dir, "train " + d + " --train.train_iters=" + iters + " --checkpoint.load=" +
                                       dir.file("ckpt") + " --checkpoint.save=" + dir.file("ckpt"));
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("train.train_iters"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("at iteration 10"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir.file("ckpt/iter_0000005")));
  EXPECT_EQ(slurp(dir.file("ckpt/latest")), "iter_0000010\n");
}

// A learning rate that blows the weights up: the first non-finite loss or gradient norm stops the job before any
// update or save, naming the parameters; with nan_policy = skip the steps are skipped up to the limit.
TEST(Reliability, NonFiniteLossesStopOrSkipAndNeverReachACheckpoint) {
  TempDir dir;
  const std::string d = tiny_deck(dir, byte_dataset(dir));
  const std::string blowup = " --train.lr=1e30 --train.clip_grad=0 --checkpoint.save_interval=1";
  const Result stop = run_weft(dir, "train " + d + blowup + " --checkpoint.save=" + dir.file("stop"), 2);
  EXPECT_EQ(stop.status, 1) << stop.out << stop.err;
  EXPECT_NE(stop.err.find("not finite"), std::string::npos) << stop.err;
  EXPECT_NE(stop.err.find("decoder.layers."), std::string::npos) << "names the parameters: " << stop.err;
  // Every checkpoint written is of an iteration before the one that stopped (whose update never happened).
  const std::string latest = slurp(dir.file("stop/latest"));
  const auto at = stop.err.find("iteration ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_LT(std::stoi(latest.substr(5)), std::stoi(stop.err.substr(at + 10))) << latest << stop.err;

  const Result skip = run_weft(dir, "train " + d + blowup + " --train.nan_policy=skip --train.nan_skip_limit=2 "
                                    "--log.dir=" + dir.file("skip"));
  EXPECT_EQ(skip.status, 1) << skip.out << skip.err;
  EXPECT_NE(skip.out.find("skipped"), std::string::npos) << skip.out;
  EXPECT_NE(skip.err.find("3 steps in a row"), std::string::npos) << skip.err;

  for (const char* bad : {"--train.lr=inf", "--model.init_method_std=inf", "--train.adam_eps=nan"}) {
    const Result r = run_weft(dir, "train " + d + " " + bad);
    EXPECT_EQ(r.status, 2) << bad << r.err;
    EXPECT_NE(r.err.find(std::string(bad).substr(2, std::string(bad).find('=') - 2)), std::string::npos) << r.err;
  }
}

// metrics.jsonl: a fresh run appends (a header line, then its records); a resumed run first drops the lines its
// predecessor logged after the checkpoint it resumes from, so each iteration appears once.
TEST(Reliability, MetricsAppendAndAResumeLogsEachIterationOnce) {
  TempDir dir;
  const std::string d = tiny_deck(dir, byte_dataset(dir));
  const std::string log = " --log.dir=" + dir.file("log");
  ASSERT_EQ(run_weft(dir, "train " + d + log + " --train.train_iters=3").status, 0);
  ASSERT_EQ(run_weft(dir, "train " + d + log + " --train.train_iters=3").status, 0);
  EXPECT_EQ(read_jsonl(dir.file("log/metrics.jsonl")).size(), 8u);  // two runs: a header and 3 steps each

  // A run that saved at 5 and 10, its iteration-10 checkpoint lost: the resume at 5 logs 6..10 again.
  ASSERT_EQ(run_weft(dir, "train " + d + " --log.dir=" + dir.file("crash") + " --checkpoint.save_interval=5 "
                          "--checkpoint.save=" + dir.file("ckpt")).status, 0);
  fs::remove_all(dir.file("ckpt/iter_0000010"));
  std::ofstream(dir.file("ckpt/latest")) << "iter_0000005\n";
  const Result r = run_weft(dir, "train " + d + " --log.dir=" + dir.file("crash") + " --checkpoint.load=" +
                                     dir.file("ckpt"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto lines = read_jsonl(dir.file("crash/metrics.jsonl"));
  std::vector<int> iterations;
  int headers = 0;
  for (const auto& j : lines) {
    if (j.contains("run")) ++headers;
    else iterations.push_back(j["iteration"]);
  }
  EXPECT_EQ(headers, 2);
  EXPECT_EQ(iterations, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
}

// An index must describe its .bin exactly: a dtype code of narrower tokens than the data's, or bytes appended.
TEST(Reliability, AnIndexThatDoesNotDescribeItsBinIsRefused) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = tiny_deck(dir, prefix);
  const std::string bin = slurp(prefix + ".bin"), idx = slurp(prefix + ".idx");
  std::ofstream(prefix + ".bin", std::ios::app) << "junk";
  Result r = run_weft(dir, "train " + d);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(prefix + ".bin"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bytes appended"), std::string::npos) << r.err;
  std::ofstream(prefix + ".bin", std::ios::trunc) << bin;
  std::string narrow = idx;
  narrow[17] = 1;  // uint8 tokens, on uint16 data
  std::ofstream(prefix + ".idx", std::ios::trunc) << narrow;
  r = run_weft(dir, "train " + d);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("dtype code"), std::string::npos) << r.err;
}

// Ranks launched with different decks would hang in mismatched collectives or train apart: the first rank that
// differs from rank 0 is named, with the keys.
TEST(Reliability, RanksWithDifferentDecksAreNamed) {
  TempDir dir;
  const std::string d = tiny_deck(dir, byte_dataset(dir));
  const std::string weft = env("WEFT_BIN") + " train " + d;
  const std::string cmd = env("WEFT_MPIEXEC") + " -np 1 " + weft + " --train.train_iters=5 : -np 1 " + weft +
                          " --train.train_iters=7 >" + dir.file("out") + " 2>" + dir.file("err");
  const int raw = std::system(cmd.c_str());
  EXPECT_EQ(WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, 2);
  const std::string err = slurp(dir.file("err"));
  EXPECT_NE(err.find("rank 1 runs another deck than rank 0"), std::string::npos) << err;
  EXPECT_NE(err.find("train.train_iters = 7 there, 5 here"), std::string::npos) << err;
}

// An export into a directory that holds an earlier one replaces it: no stale index or shard is left for a loader
// to pick up.
TEST(Reliability, AnExportReplacesAnEarlierOneInTheSameDirectory) {
  TempDir dir;
  const std::string hf = fixture("hf/qwen2");
  ASSERT_EQ(run_weft(dir, "convert --from " + hf + " --to " + dir.file("out") + " --format hf --shard-size 100KB")
                .status, 0);
  ASSERT_TRUE(fs::exists(dir.file("out/model.safetensors.index.json")));
  ASSERT_EQ(run_weft(dir, "convert --from " + hf + " --to " + dir.file("out") + " --format hf").status, 0);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir.file("out")))
    if (e.path().extension() == ".safetensors" || e.path().extension() == ".json")
      files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"config.json", "generation_config.json", "model.safetensors"}));
  ASSERT_EQ(run_weft(dir, "convert --from " + hf + " --to " + dir.file("out") + " --format hf --shard-size 100KB")
                .status, 0);
  EXPECT_FALSE(fs::exists(dir.file("out/model.safetensors")));
}

// checkpoint.keep: after each save only the newest N checkpoints stay, the latest among them.
TEST(Reliability, CheckpointKeepRotatesOldCheckpoints) {
  TempDir dir;
  const std::string d = tiny_deck(dir, byte_dataset(dir));
  ASSERT_EQ(run_weft(dir, "train " + d + " --checkpoint.save=" + dir.file("ckpt") + " --checkpoint.save_interval=2 "
                          "--checkpoint.keep=2").status, 0);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir.file("ckpt"))) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"iter_0000008", "iter_0000010", "latest"}));
}

// A disk that holds one checkpoint but not two: the second save stops the job with the system's reason, removes
// what it had written, and says that `latest` still names the first, which a resume then loads.
TEST(FullDisk, ASaveThatDoesNotFitIsAbandonedAndTheLastCheckpointKept) {
  TempDir dir;
  const std::string d = tiny_deck(dir, byte_dataset(dir));
  ASSERT_EQ(run_weft(dir, "train " + d + " --train.train_iters=2 --checkpoint.save=" + dir.file("probe")).status, 0);
  int64_t one = 0, shard = 0;
  for (const auto& e : fs::directory_iterator(dir.file("probe/iter_0000002"))) {
    one += static_cast<int64_t>((e.file_size() + 4095) / 4096 * 4096);  // a tmpfs counts whole pages
    if (e.path().extension() == ".h5") shard = static_cast<int64_t>(e.file_size());
  }
  SmallDisk disk(dir.file("disk"), one + 4096 + shard / 2);  // + `latest`
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root): the full-disk path is not checked";
  const Result r = run_weft(dir, "train " + d + " --train.train_iters=4 --checkpoint.save_interval=2 "
                                 "--checkpoint.save=" + dir.file("disk/ck"));
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("latest still names iter_0000002"), std::string::npos) << r.err;
  EXPECT_EQ(disk.files(), (std::vector<std::string>{"ck/iter_0000002/metadata.json", "ck/iter_0000002/shard_tp0_pp0.h5",
                                                    "ck/latest"}));
  const Result resumed = run_weft(dir, "train " + d + " --train.train_iters=4 --checkpoint.load=" + dir.file("disk/ck"));
  EXPECT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(resumed.out.find("iteration      1/4"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("iteration      3/4"), std::string::npos) << resumed.out;
}

// A disk that fills up in the middle of a write: a checkpoint shard (the disk holds its tensors, which weft checks
// before writing, but not HDF5's headers around them), an HF export, a tokenized dataset. Each stops with the file
// and the system's reason, and leaves nothing behind, not even a temporary.
TEST(FullDisk, AWriteThatFillsTheDiskLeavesNoPartialFile) {
  TempDir dir;
  const std::string hf = fixture("hf/qwen2");
  ASSERT_EQ(run_weft(dir, "convert --from " + hf + " --to " + dir.file("probe") + " --format native").status, 0);
  const int64_t shard = static_cast<int64_t>(fs::file_size(dir.file("probe/iter_0000000/shard_tp0_pp0.h5")));
  SmallDisk disk(dir.file("disk"), (shard - 8192) / 4096 * 4096);  // HDF5's headers here: more than 8 KiB
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root): the full-disk paths are not checked";
  Result r = run_weft(dir, "convert --from " + hf + " --to " + dir.file("disk/native") + " --format native");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("cannot write " + dir.file("disk/native/iter_0000000.tmp/shard_tp0_pp0.h5")), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("holds no earlier checkpoint"), std::string::npos) << r.err;
  EXPECT_EQ(disk.files(), std::vector<std::string>{});
  // The rest with a third of the disk left: the export (as large as the shard) and the dataset (461 KB) cannot fit.
  {
    std::ofstream filler(dir.file("disk/filler"), std::ios::binary);
    filler << std::string(static_cast<size_t>(shard / 3 * 2), 'x');
  }
  r = run_weft(dir, "convert --from " + hf + " --to " + dir.file("disk/hf") + " --format hf");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("cannot write '" + dir.file("disk/hf/model.safetensors.tmp") + "': No space left on device"),
            std::string::npos) << r.err;
  r = run_weft(dir, "preprocess --input " + source_dir() + "/inputs/corpus/moby-dick.jsonl --tokenizer bytes "
                    "--output-prefix " + dir.file("disk/moby") + " --append-eod");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("cannot write '" + dir.file("disk/moby.bin.tmp") + "': No space left on device"),
            std::string::npos) << r.err;
  EXPECT_EQ(disk.files(), std::vector<std::string>{"filler"});
}

// SIGTERM (or Slurm's SIGUSR1) to one rank: every rank finishes its step, the job saves and exits 0 saying so, and
// a resume goes on from there.
TEST(Reliability, AStopSignalSavesAndExitsCleanly) {
  TempDir dir;
  const std::string d = tiny_deck(dir, byte_dataset(dir));
  const std::string args = "train " + d + " --train.train_iters=100000 --log.interval=1 --log.dir=" +
                           dir.file("log") + " --checkpoint.save=" + dir.file("ckpt");
  Result r;
  std::thread run([&] { r = run_weft(dir, args, 2); });
  // Wait for a few steps, then signal one rank: a weft process whose command line names this test's deck.
  const std::string exe = fs::canonical(env("WEFT_BIN")).string();
  pid_t rank = -1;
  for (int tries = 0; tries < 600 && rank < 0; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::string log = slurp(dir.file("log/metrics.jsonl"));  // may end in a line being written: not parsed
    size_t steps = 0;
    for (size_t at = log.find("\"loss\""); at != std::string::npos; at = log.find("\"loss\"", at + 1)) ++steps;
    if (steps < 3) continue;
    for (const auto& p : fs::directory_iterator("/proc")) {
      std::error_code ec;
      if (fs::read_symlink(p.path() / "exe", ec).string() != exe) continue;
      if (slurp((p.path() / "cmdline").string()).find(d) == std::string::npos) continue;
      rank = std::stoi(p.path().filename().string());
      break;
    }
  }
  ASSERT_GT(rank, 0) << "no rank found to signal";
  ::kill(rank, SIGTERM);
  run.join();
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("SIGTERM: stopped after iteration"), std::string::npos) << r.out;
  const int stopped = std::stoi(slurp(dir.file("ckpt/latest")).substr(5));
  EXPECT_GE(stopped, 3);
  EXPECT_EQ(static_cast<int>(train_lines(dir.file("log/metrics.jsonl")).size()), stopped);
  const Result resumed = run_weft(dir, "train " + d + " --train.train_iters=" + std::to_string(stopped + 2) +
                                           " --checkpoint.load=" + dir.file("ckpt") + " --log.dir=" + dir.file("log"),
                                  2);
  EXPECT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(static_cast<int>(train_lines(dir.file("log/metrics.jsonl")).size()), stopped + 2);
}

// srun without a matching MPI plugin starts every task as a singleton: refused, not trained alone.
TEST(Reliability, ALoneRankOfASlurmStepIsRefused) {
  TempDir dir;
  const std::string d = tiny_deck(dir, byte_dataset(dir));
  ::setenv("SLURM_STEP_NUM_TASKS", "2", 1);
  const Result r = run_weft(dir, "train " + d);
  ::unsetenv("SLURM_STEP_NUM_TASKS");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("SLURM_STEP_NUM_TASKS"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--mpi=pmix"), std::string::npos) << r.err;
}

namespace {

// SIGKILL to every process whose command line holds `marker` (the ranks first, then their mpirun).
void kill_nine(const std::string& marker) {
  std::vector<pid_t> ranks, launchers;
  const std::string exe = fs::canonical(env("WEFT_BIN")).string();
  for (const auto& p : fs::directory_iterator("/proc")) {
    const std::string pid = p.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (slurp((p.path() / "cmdline").string()).find(marker) == std::string::npos) continue;
    std::error_code ec;
    (fs::read_symlink(p.path() / "exe", ec).string() == exe ? ranks : launchers).push_back(std::stoi(pid));
  }
  for (pid_t r : ranks) ::kill(r, SIGKILL);
  for (pid_t l : launchers) ::kill(l, SIGKILL);
}

}  // namespace

// kill -9 at random moments of a 2-rank run that saves every step, 20 times: every resume gives the uninterrupted
// run's losses bit for bit, and `latest` never names a half-written checkpoint.
TEST(Reliability, KillNineAtRandomMomentsResumesBitForBit) {
  TempDir dir;
  const std::string prefix = byte_dataset(dir);
  const std::string d = tiny_deck(dir, prefix);
  // 200 steps of the tiny model take about 2 s with a save after each (the 2 newest kept).
  const std::string steps = " --train.train_iters=200 --checkpoint.save_interval=1 --checkpoint.keep=2";
  ASSERT_EQ(run_weft(dir, "train " + d + steps + " --log.dir=" + dir.file("ref"), 2).status, 0);
  const auto ref = train_lines(dir.file("ref/metrics.jsonl"));
  ASSERT_EQ(ref.size(), 200u);
  std::mt19937 gen(2026);
  std::uniform_int_distribution<int> after_ms(300, 2200);
  int resumed_mid_run = 0;
  for (int trial = 0; trial < 20; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    // Each trial its own deck path, so that the kill finds this trial's processes only.
    const std::string trial_deck = dir.write("trial" + std::to_string(trial) + ".ini", slurp(d));
    const std::string ckpt = dir.file("ckpt" + std::to_string(trial)), log = dir.file("log" + std::to_string(trial));
    const std::string args = "train " + trial_deck + steps + " --checkpoint.save=" + ckpt;
    Result killed;
    std::thread run([&] { killed = run_weft(dir, args + " --log.dir=" + log, 2); });
    std::this_thread::sleep_for(std::chrono::milliseconds(after_ms(gen)));
    kill_nine(trial_deck);
    run.join();
    std::string resume = " --log.dir=" + log;
    if (fs::exists(ckpt + "/latest")) {
      const std::string latest = slurp(ckpt + "/latest");
      ASSERT_TRUE(fs::exists(ckpt + "/" + latest.substr(0, latest.size() - 1) + "/metadata.json"))
          << "latest names a half-written checkpoint: " << latest;
      if (latest != "iter_0000200\n") {
        resume += " --checkpoint.load=" + ckpt;
        ++resumed_mid_run;
      } else {
        continue;  // killed after the last save: nothing left to resume
      }
    } else {
      resume = " --log.dir=" + log + "-fresh";  // killed before the first save: a fresh start
    }
    const Result r = run_weft(dir, args + resume, 2);
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    const std::string used = resume.find("-fresh") == std::string::npos ? log : log + "-fresh";
    const auto got = train_lines(used + "/metrics.jsonl");
    ASSERT_EQ(got.size(), 200u);
    for (size_t i = 0; i < 200; ++i) {
      EXPECT_EQ(got[i]["iteration"], ref[i]["iteration"]);
      EXPECT_EQ(got[i]["loss"].get<double>(), ref[i]["loss"].get<double>()) << "iteration " << i + 1;
      EXPECT_EQ(got[i]["grad_norm"].get<double>(), ref[i]["grad_norm"].get<double>()) << "iteration " << i + 1;
    }
  }
  std::printf("kill -9: %d of 20 trials killed mid-run and resumed from their latest checkpoint\n", resumed_mid_run);
  EXPECT_GE(resumed_mid_run, 10) << "most kills should land while the run trains";
}
