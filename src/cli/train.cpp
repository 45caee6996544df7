// weft/src/cli/train.cpp v3 — `weft train DECK`: build the layout, the model and the data; train.
#include <cstdio>

#include "cli/cli.h"
#include "dist/process_grid.h"
#include "io/atomic_file.h"
#include "ops/device.h"
#include "train/memory_plan.h"
#include "train/setup.h"
#include "train/stop_signals.h"
#include "train/trainer.h"

namespace weft {

int cmd_train(const Args& args, const MpiEnv& mpi) {
  std::string deck;
  Args overrides;
  if (!parse_deck_args(args, "weft train DECK [--section.key=value ...]", deck, overrides, mpi)) return 0;
  install_stop_signals();
  const Config cfg = load_config_collectively(deck, overrides, mpi.size());
  const ProcessGrid grid(mpi.size(), mpi.rank(), parallel_sizes(cfg));
  if (cfg.train.precision == "bf16") {
    require_gpu(cfg.where("train.precision"));
    device_support().set_gemm_autotune(cfg.train.gemm_autotune);
  }
  // Before anything is allocated: what each rank will hold, and a stop now if it cannot.
  const MemoryPlan plan = plan_memory(cfg, mpi.size());
  const double baseline = resident_bytes();
  if (mpi.rank() == 0)
    std::printf("weft: %s%s\n", plan.summary().c_str(),
                plan.gpu ? "" : str(", + ", bytes_text(int64_t(baseline)), " of code and libraries").c_str());
  check_plan_fits(plan, plan.gpu ? double(device_support().memory_free()) : 0.0, baseline, node_local_size(),
                  mpi.rank());
  Comms comms = Comms::create(grid, cfg.train.precision == "bf16" ? device_support().comm_factory : make_mpi_comm);
  Trainer trainer(cfg, grid, comms);
  trainer.train();
  return 0;
}

}  // namespace weft
