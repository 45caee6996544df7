// weft/test/cli/tensorboard_test.cpp v1 — log.tensorboard: the event files a run and its resumption write, read by
// peers (tfrecord and protobufs through node; TensorBoard's own EventAccumulator where Python has it), hold what
// metrics.jsonl holds.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <sstream>

#include "cli_util.h"

using namespace weft::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// 5 steps saving at 3, then a resumption from iteration 3 to 6 (steps 4 and 5 logged twice): returns the log dir.
std::string resumed_run(const TempDir& dir) {
  const std::string d = tiny_deck(dir, byte_dataset(dir)), log = dir.file("log");
  const std::string common = "train " + d + " --log.dir=" + log + " --log.tensorboard=true ";
  const Result first = run_weft(dir, common + "--train.train_iters=5 --checkpoint.save_interval=3 --checkpoint.save=" +
                                         dir.file("ckpt"));
  EXPECT_EQ(first.status, 0) << first.err;
  const Result second = run_weft(dir, common + "--train.train_iters=6 --checkpoint.load=" +
                                          dir.file("ckpt/iter_0000003"));
  EXPECT_EQ(second.status, 0) << second.err;
  return log;
}

std::vector<std::string> event_files(const std::string& log) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(log))
    if (e.path().filename().string().find("tfevents") != std::string::npos) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

// Each run's file, framed and checksummed as TFRecords and decoded as Events by peers' code: the file version, a
// SessionLog START at the run's first step, then every number of each metrics.jsonl line at its iteration (the first
// run's steps 4 and 5, which the resumption logs again, stay in its event file but leave metrics.jsonl).
TEST(TensorBoard, EventFilesReadBackWithTfrecordAndProtobufjs) {
  TempDir dir;
  const std::string log = resumed_run(dir);
  const auto files = event_files(log);
  ASSERT_EQ(files.size(), 2u);
  // metrics.jsonl's runs: each header starts one.
  std::vector<std::map<int64_t, json>> runs;
  for (const json& j : read_jsonl(log + "/metrics.jsonl")) {
    if (j.contains("run")) runs.emplace_back();
    else runs.back()[j["iteration"].get<int64_t>()] = j;
  }
  ASSERT_EQ(runs.size(), 2u);
  const std::vector<std::vector<int64_t>> steps = {{1, 2, 3, 4, 5}, {4, 5, 6}};
  for (size_t f = 0; f < files.size(); ++f) {
    const Result r = run_command(dir, "node " + source_dir() + "/test/reference/readers/read_events.js " + files[f]);
    ASSERT_EQ(r.status, 0) << r.err;
    std::vector<json> events;
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) events.push_back(json::parse(l));
    ASSERT_EQ(events.size(), 2 + steps[f].size());
    EXPECT_EQ(events[0]["file_version"], "brain.Event:2");
    EXPECT_EQ(events[1]["session_status"], 1);  // START
    EXPECT_EQ(events[1]["step"], steps[f][0]);
    for (size_t e = 2; e < events.size(); ++e) {
      const int64_t step = events[e]["step"];
      EXPECT_EQ(step, steps[f][e - 2]);
      if (!runs[f].count(step)) continue;
      size_t numbers = 0;
      for (const auto& [key, value] : runs[f][step].items()) {
        if (key == "iteration" || !value.is_number()) continue;
        ++numbers;
        EXPECT_FLOAT_EQ(events[e]["scalars"].at("train/" + key).get<float>(), value.get<float>()) << key;
      }
      EXPECT_EQ(events[e]["scalars"].size(), numbers);
    }
  }
  EXPECT_EQ(runs[0].size(), 3u);
  EXPECT_EQ(runs[1].size(), 3u);
}

// TensorBoard's own reader: one value per step 1..6 for every tag, the first run's up to its checkpoint and the
// resumption's after it (TensorBoard drops steps 4 and 5 of the first run at the resumption's START), as the
// resumed metrics.jsonl has them.
TEST(TensorBoardReader, SeesEachStepOnceAfterAResume) {
  TempDir dir;
  const std::string log = resumed_run(dir);
  const Result r = run_command(dir, "python3 " + source_dir() + "/test/reference/read_tensorboard.py " + log);
  if (r.status == 77) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.status, 0) << r.err;
  const json scalars = json::parse(r.out);
  const auto lines = train_lines(log + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 6u);
  for (const char* key : {"loss", "lr", "grad_norm"}) {
    const json& series = scalars.at(std::string("train/") + key);
    ASSERT_EQ(series.size(), 6u) << key;
    for (size_t i = 0; i < 6; ++i) {
      EXPECT_EQ(series[i][0], lines[i]["iteration"]) << key;
      EXPECT_FLOAT_EQ(series[i][1].get<float>(), lines[i][key].get<float>()) << key << ", step " << i + 1;
    }
  }
}
