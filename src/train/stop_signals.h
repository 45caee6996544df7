// weft/src/train/stop_signals.h v1 — SIGTERM and SIGUSR1 (what Slurm sends before a job's time limit with
// --signal, and on preemption) as a request to finish the step, save and exit; a second signal ends the process at
// once.
#pragma once

namespace weft {

// Installs the handlers (once per process).
void install_stop_signals();
// The signal that asked this process to stop, or 0.
int stop_signal();
// "SIGTERM" for SIGTERM, ...
const char* signal_name(int sig);

}  // namespace weft
