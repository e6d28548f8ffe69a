#include "cloudflux/core/process.h"

#include "absl/synchronization/mutex.h"

namespace cloudflux::core {

void TuneProcessForServing() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace cloudflux::core
