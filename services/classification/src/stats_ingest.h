#pragma once
// StatsIngest: a consumer-group member on the storage adapter's object topic
// that feeds AccessStatsStore in batches, on its own thread, until stopped.

#include <atomic>
#include <memory>
#include <thread>

#include "access_stats.h"
#include "cloudflux/events/kafka.h"

namespace cloudflux::classification {

inline constexpr char kObjectTopic[] = "cloudflux.storage.objects";

struct IngestOptions {
  events::KafkaOptions kafka;
  std::string group_id = "cloudflux-classification-access-stats";
  std::string topic = kObjectTopic;
  size_t max_batch = 5000;
  absl::Duration poll_timeout = absl::Milliseconds(200);
};

class StatsIngest {
 public:
  static absl::StatusOr<std::unique_ptr<StatsIngest>> Start(AccessStatsStore& store, IngestOptions options);
  ~StatsIngest();  // Stop()
  void Stop();
  int64_t applied() const { return applied_.load(); }
  int64_t consumed() const { return consumed_.load(); }
  // OK while batches are being written (or there is nothing to write).
  absl::Status Health() const;

 private:
  StatsIngest(AccessStatsStore& store, IngestOptions options, std::unique_ptr<events::Consumer> consumer);
  void Loop();

  AccessStatsStore& store_;
  IngestOptions options_;
  std::unique_ptr<events::Consumer> consumer_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> applied_{0}, consumed_{0};
  mutable std::mutex mu_;
  absl::Status last_error_;
  std::thread thread_;
};

}  // namespace cloudflux::classification
