// weft/test/cli/plot_test.cpp v1 — `weft plot`: a PNG that a peer decoder (pngjs) reads, with each run's curve in
// its colour going the way its loss went; one clear error for a missing run or key.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli_util.h"

using namespace weft::test;
using nlohmann::json;

namespace {

constexpr const char* kFirstColor = "31,119,180", *kSecondColor = "255,127,14";  // the palette's first two

}  // namespace

TEST(Plot, TwoRunsDrawTheirFallingLossesInTheirColours) {
  TempDir dir;
  const std::string d = tiny_deck(dir, byte_dataset(dir));
  for (const char* run : {"fast", "slow"}) {
    const std::string lr = std::string(run) == "fast" ? "3e-3" : "1e-3";
    ASSERT_EQ(run_weft(dir, "train " + d + " --train.train_iters=30 --train.lr=" + lr + " --log.dir=" + dir.file(run))
                  .status, 0);
  }
  const Result r = run_weft(dir, "plot " + dir.file("fast") + " " + dir.file("slow") + "/metrics.jsonl --output " +
                                     dir.file("curves.png"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("2 runs, loss, lr, tokens_per_s"), std::string::npos) << r.out;
  // The first panel (loss) lies below the 34-pixel legend, 260 pixels high.
  const Result png = run_command(dir, "node " + source_dir() + "/test/reference/readers/read_png.js " +
                                          dir.file("curves.png") + " 40 294 " + kFirstColor + " " + kSecondColor);
  ASSERT_EQ(png.status, 0) << png.err;
  const json info = json::parse(png.out);
  EXPECT_EQ(info["width"], 1000);
  EXPECT_EQ(info["height"], 34 + 3 * 260 + 20);
  for (const char* color : {kFirstColor, kSecondColor}) {
    const json& c = info["colors"][color];
    EXPECT_GT(c["count"].get<int>(), 1000) << color;
    // The loss falls: its curve sits lower (larger rows) at the right of the panel than at the left.
    EXPECT_GT(c["right_mean_row"].get<double>(), c["left_mean_row"].get<double>() + 30) << color;
  }
}

TEST(Plot, AMissingRunOrKeyIsOneClearError) {
  TempDir dir;
  Result r = run_weft(dir, "plot " + dir.file("nowhere"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(dir.file("nowhere")), std::string::npos) << r.err;
  std::filesystem::create_directories(dir.file("run"));
  dir.write("run/metrics.jsonl", "{\"run\": {}}\n{\"iteration\": 1, \"loss\": 5.0, \"lr\": 0.001}\n");
  r = run_weft(dir, "plot " + dir.file("run") + " --keys loss,val_ppl");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no run logs 'val_ppl'; they log: loss, lr"), std::string::npos) << r.err;
}
