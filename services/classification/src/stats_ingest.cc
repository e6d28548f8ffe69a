#include "stats_ingest.h"

namespace cloudflux::classification {

absl::StatusOr<std::unique_ptr<events::BatchIngest>> StatsIngest::Start(AccessStatsStore& store,
                                                                       IngestOptions options) {
  return events::BatchIngest::Start(
      [&store](const std::vector<events::ConsumedMessage>& batch) { return store.ApplyMessages(batch); },
      {.kafka = std::move(options.kafka),
       .group_id = std::move(options.group_id),
       .topic = std::move(options.topic),
       .max_batch = options.max_batch,
       .consumers = options.consumers,
       .poll_timeout = options.poll_timeout,
       .session_timeout = options.session_timeout,
       .registry = options.registry,
       .metric_prefix = "cloudflux_classification_ingest",
       .what = "access statistics batch"});
}

}  // namespace cloudflux::classification
