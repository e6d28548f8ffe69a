#pragma once
// The access statistics' ingest: consumer-group members on the storage
// adapter's object topic (events::BatchIngest) that feed AccessStatsStore in
// batches, one transaction each.

#include <memory>

#include "access_stats.h"
#include "cloudflux/events/batch_ingest.h"
#include "cloudflux/events/object_events.h"

namespace cloudflux::classification {

struct IngestOptions {
  events::KafkaOptions kafka;
  std::string group_id = "cloudflux-classification-access-stats";
  std::string topic = events::kObjectTopic;
  size_t max_batch = 5000;
  int consumers = 4;  // members in this process (parallel batches)
  absl::Duration poll_timeout = absl::Milliseconds(200);
  absl::Duration session_timeout = absl::Seconds(10);
  // Where the ingest's counters and lag go (the service's metrics,
  // cloudflux_classification_ingest_*); none when null.
  prometheus::Registry* registry = nullptr;
};

struct StatsIngest {
  static absl::StatusOr<std::unique_ptr<events::BatchIngest>> Start(AccessStatsStore& store,
                                                                    IngestOptions options);
};

}  // namespace cloudflux::classification
