// weft/src/cli/plan.cpp v2 — `weft plan DECK`: the memory each rank will need and the step time, before any run.
#include <cstdio>

#include "cli/cli.h"
#include "train/memory_plan.h"

#include "io/atomic_file.h"

namespace weft {

int cmd_plan(const Args& args, const MpiEnv& mpi) {
  const char* usage = "weft plan DECK [--ranks N] [--section.key=value ...]";
  // --ranks is the plan's own flag: the world it plans for (default: the ranks it runs on).
  Args rest;
  int64_t ranks = mpi.size();
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--ranks" && i + 1 < args.size()) ranks = parse_count("weft plan: --ranks", args[++i]);
    else if (args[i].rfind("--ranks=", 0) == 0) ranks = parse_count("weft plan: --ranks", args[i].substr(8));
    else rest.push_back(args[i]);
  }
  std::string deck;
  Args overrides;
  if (!parse_deck_args(rest, usage, deck, overrides, mpi)) return 0;
  // A plan needs the deck, not its data: the dataset need not exist yet.
  const Config cfg = load_config_collectively(deck, overrides, static_cast<int>(ranks), false);
  if (mpi.rank() != 0) return 0;
  const MemoryPlan plan = plan_memory(cfg, static_cast<int>(ranks));
  const ModelSpec spec = cfg.model.resolved();
  std::printf("weft plan: %s on %lld rank%s, %s\n", deck.c_str(), (long long)ranks, ranks > 1 ? "s" : "",
              plan.gpu ? "bf16 on GPUs" : "fp32 on the CPU");
  // GPUs: weft's model TFLOP/s on its benchmark shape; the CPU: this machine's GEMM rate shared by the ranks, as
  // when they all run here.
  const double rate = plan.gpu ? 500e12 : measure_cpu_gemm_rate(spec, cfg.parallel.tp) / double(ranks);
  const std::string source = plan.gpu ? "weft reaches 512-553 on the 1.5B benchmark shape on an H200"
                                      : str("this machine's CPU GEMM rate, measured now, shared by ", ranks,
                                            " rank", ranks > 1 ? "s" : "");
  std::fputs(plan.table(rate, source).c_str(), stdout);
  if (!plan.gpu)
    std::printf("each CPU rank also holds its code, libraries and dataset indices: this process holds %s now\n",
                bytes_text(int64_t(resident_bytes())).c_str());
  return 0;
}

}  // namespace weft
