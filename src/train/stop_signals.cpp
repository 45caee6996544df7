// weft/src/train/stop_signals.cpp v1 — the stop request a signal leaves for the training loop.
#include "train/stop_signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace weft {
namespace {

std::atomic<int> g_signal{0};

void on_signal(int sig) {
  int none = 0;
  if (!g_signal.compare_exchange_strong(none, sig)) _exit(128 + sig);  // the second one: no save, at once
}

}  // namespace

void install_stop_signals() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGUSR1}) sigaction(sig, &action, nullptr);
}

int stop_signal() { return g_signal.load(); }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
  }
}

}  // namespace weft
