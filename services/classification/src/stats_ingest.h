#pragma once
// StatsIngest: consumer-group members on the storage adapter's object topic
// that feed AccessStatsStore in batches, each on its own thread with its own
// database transactions, until stopped. Events of one object share a
// partition (keyed by namespace/key), so members never write the same rows.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "access_stats.h"
#include "cloudflux/events/kafka.h"

namespace cloudflux::classification {

inline constexpr char kObjectTopic[] = "cloudflux.storage.objects";

struct IngestOptions {
  events::KafkaOptions kafka;
  std::string group_id = "cloudflux-classification-access-stats";
  std::string topic = kObjectTopic;
  size_t max_batch = 5000;
  int consumers = 4;  // members in this process (parallel batches)
  absl::Duration poll_timeout = absl::Milliseconds(200);
  // Consumer-group session timeout of each member (events::ConsumerOptions).
  absl::Duration session_timeout = absl::Seconds(10);
  // Where the ingest's counters and lag go (the service's metrics); none
  // when null.
  prometheus::Registry* registry = nullptr;
};

class StatsIngest {
 public:
  static absl::StatusOr<std::unique_ptr<StatsIngest>> Start(AccessStatsStore& store, IngestOptions options);
  ~StatsIngest();  // Stop()
  void Stop();
  int64_t applied() const { return applied_.load(); }
  int64_t consumed() const { return consumed_.load(); }
  // Of those consumed, redeliveries and resends that changed nothing.
  int64_t duplicates() const { return duplicates_.load(); }
  // Batches written (one transaction each).
  int64_t batches() const { return batches_.load(); }
  // OK while batches are being written (or there is nothing to write).
  absl::Status Health() const;

 private:
  StatsIngest(AccessStatsStore& store, IngestOptions options,
              std::vector<std::unique_ptr<events::Consumer>> consumers);
  void Loop(events::Consumer& consumer);
  // Events in the topic that this process's members have not handed to a
  // batch yet (events::Consumer::Lag), as of each one's last poll. mu_ held.
  int64_t LagLocked() const;

  AccessStatsStore& store_;
  IngestOptions options_;
  std::vector<std::unique_ptr<events::Consumer>> consumers_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> applied_{0}, consumed_{0}, duplicates_{0}, batches_{0};
  mutable std::mutex mu_;
  std::map<const events::Consumer*, absl::Status> last_error_;  // of each one's last batch
  std::map<const events::Consumer*, int64_t> lag_;               // as of each one's last poll
  struct Metrics {
    prometheus::Counter *applied, *duplicates, *skipped, *batches, *failures;
    prometheus::Gauge* lag;
  };
  std::optional<Metrics> metrics_;
  std::vector<std::thread> threads_;
};

}  // namespace cloudflux::classification
