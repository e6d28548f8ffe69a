#pragma once
// Sweeper: every `interval`, classifies every object and publishes
// TierDecided for recommended moves not published before (Classifier::Sweep).
// One replica sweeps per interval: a sweep first takes the "sweep" lease in
// classification.leases for one interval; replicas that find it held by
// another skip their turn. Counts go to Prometheus.

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "classifier.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace cloudflux::classification {

struct SweeperOptions {
  absl::Duration interval = absl::Hours(1);  // <= 0: no periodic sweeps
  std::string holder;                         // this replica's name in the lease
};

class Sweeper {
 public:
  Sweeper(db::Pool& pool, Classifier& classifier, SweeperOptions options, prometheus::Registry& registry);
  ~Sweeper();  // Stop()
  void Stop();

  // One round now: nullopt when another replica holds the lease.
  absl::StatusOr<std::optional<Classifier::SweepResult>> RunOnce();

 private:
  void Loop();

  db::Pool& pool_;
  Classifier& classifier_;
  SweeperOptions options_;
  prometheus::Counter& sweeps_;
  prometheus::Counter& objects_;
  prometheus::Counter& published_;
  prometheus::Counter& failures_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace cloudflux::classification
