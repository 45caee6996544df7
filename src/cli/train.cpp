// weft/src/cli/train.cpp v2 — `weft train DECK`: build the layout, the model and the data; train.
#include "cli/cli.h"
#include "dist/process_grid.h"
#include "ops/device.h"
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
  Comms comms = Comms::create(grid, cfg.train.precision == "bf16" ? device_support().comm_factory : make_mpi_comm);
  Trainer trainer(cfg, grid, comms);
  trainer.train();
  return 0;
}

}  // namespace weft
