#include "cloudflux/core/process.h"

#include <malloc.h>

#include <algorithm>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace cloudflux::core {

void TuneProcessForServing() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // One malloc arena per core: glibc's default (8 per core) lets every
  // handler thread keep its own arena of freed buffers, which multiplies the
  // resident memory of streaming servers. (The service binaries link
  // jemalloc, which ignores this; tools and tests keep glibc's allocator.)
  mallopt(M_ARENA_MAX, static_cast<int>(std::max(2u, std::thread::hardware_concurrency())));
}

}  // namespace cloudflux::core
