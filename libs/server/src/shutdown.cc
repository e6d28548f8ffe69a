#include "cloudflux/server/shutdown.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace cloudflux::server {
namespace {
sigset_t ShutdownSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}
}  // namespace

void BlockShutdownSignals() {
  sigset_t set = ShutdownSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForShutdownSignal() {
  sigset_t set = ShutdownSet();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

void RaiseShutdownSignal() { kill(getpid(), SIGTERM); }

}  // namespace cloudflux::server
