#pragma once
// BatchIngest: consumer-group members on one topic that hand batches of
// messages to an apply function (typically one database transaction that
// claims them exactly once), each member on its own thread, until stopped.
// A failed batch is not committed and is consumed again. Events of one
// object share a partition (keyed by namespace/key), so members never write
// the same rows. Counters and lag go to `registry` as
// <metric_prefix>_events_total{outcome}, _batches_total,
// _batch_failures_total and _lag.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "cloudflux/events/kafka.h"

namespace cloudflux::events {

// What applying a batch did.
struct IngestCounts {
  int applied = 0;     // events that changed something
  int duplicates = 0;  // seen before (or twice in the batch)
  int skipped = 0;     // not events the consumer handles, or undecodable
};

struct BatchIngestOptions {
  KafkaOptions kafka;
  std::string group_id;
  std::string topic;
  size_t max_batch = 5000;
  int consumers = 4;  // members in this process (parallel batches)
  absl::Duration poll_timeout = absl::Milliseconds(200);
  // Consumer-group session timeout of each member (ConsumerOptions).
  absl::Duration session_timeout = absl::Seconds(10);
  prometheus::Registry* registry = nullptr;  // none when null
  std::string metric_prefix;                 // "cloudflux_classification_ingest"
  std::string what = "batch";                // in log lines: "access statistics batch failed"
};

class BatchIngest {
 public:
  using ApplyFn = std::function<absl::StatusOr<IngestCounts>(const std::vector<ConsumedMessage>&)>;
  static absl::StatusOr<std::unique_ptr<BatchIngest>> Start(ApplyFn apply, BatchIngestOptions options);
  ~BatchIngest();  // Stop()
  void Stop();
  int64_t applied() const { return applied_.load(); }
  int64_t consumed() const { return consumed_.load(); }
  // Of those consumed, redeliveries and resends that changed nothing.
  int64_t duplicates() const { return duplicates_.load(); }
  int64_t batches() const { return batches_.load(); }  // applied (one transaction each)
  // OK while batches are being applied (or there is nothing to apply).
  absl::Status Health() const;

 private:
  BatchIngest(ApplyFn apply, BatchIngestOptions options, std::vector<std::unique_ptr<Consumer>> consumers);
  void Loop(Consumer& consumer);
  int64_t LagLocked() const;  // mu_ held

  ApplyFn apply_;
  BatchIngestOptions options_;
  std::vector<std::unique_ptr<Consumer>> consumers_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> applied_{0}, consumed_{0}, duplicates_{0}, batches_{0};
  mutable std::mutex mu_;
  std::map<const Consumer*, absl::Status> last_error_;  // of each one's last batch
  std::map<const Consumer*, int64_t> lag_;               // as of each one's last poll
  struct Metrics {
    prometheus::Counter *applied, *duplicates, *skipped, *batches, *failures;
    prometheus::Gauge* lag;
  };
  std::optional<Metrics> metrics_;
  std::vector<std::thread> threads_;
};

}  // namespace cloudflux::events
