#pragma once
// AccessStatsStore: classification's per-object statistics (schema
// classification: object_stats, object_reads_daily) built from the storage
// adapter's object events — ObjectCreated, ObjectDeleted, ObjectTierChanged,
// ObjectRelocated and ObjectRead. A batch of events is folded in memory per
// object and written in one transaction of a few set-based statements, so
// the cost per event is small. Effects are exactly once, claimed in the same
// transaction: consumed messages by their position in the outbox relay's
// stream (events::ClaimMessages: a row per partition and stream, not per
// event), events without one (no relay headers, or applied directly) by
// their ids in classification.processed_events. Thread-safe.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cloudflux/common/v1/common.pb.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/batch_ingest.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/v1/envelope.pb.h"

namespace cloudflux::classification {

inline constexpr char kStatsConsumer[] = "access-stats";

struct ObjectStats {
  std::string ns, key;
  int64_t version = 0;
  int64_t size = 0;
  std::string backend;
  cloudflux::common::v1::StorageTier tier = cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED;
  std::optional<absl::Time> created, placed, last_read;
  int64_t reads_total = 0, bytes_read = 0;
  int64_t reads_1d = 0, reads_7d = 0, reads_30d = 0, reads_90d = 0;  // windows ending today (UTC)
  // The last move published for it ("AWS/GLACIER_IR") and of which version.
  int64_t decided_version = 0;
  std::string decided_target;
};

class AccessStatsStore {
 public:
  explicit AccessStatsStore(db::Pool& pool) : pool_(pool) {}

  using Applied = events::IngestCounts;
  // Applies envelopes in order (de-duplicated by event id).
  absl::StatusOr<Applied> Apply(const std::vector<cloudflux::events::v1::EventEnvelope>& events);
  // Decodes consumed messages (skipping what is not an envelope) and applies them.
  absl::StatusOr<Applied> ApplyMessages(const std::vector<events::ConsumedMessage>& messages);

  // NOT_FOUND for an object no event has mentioned (or deleted).
  absl::StatusOr<ObjectStats> Get(const std::string& ns, const std::string& key, absl::Time now);

  // Where a listing resumes: after this object (empty ns = from the start).
  struct Cursor {
    std::string ns, key;
  };
  // Up to `limit` live objects in (namespace, key) order after `after`: those
  // of `ns` whose key starts with `prefix`, or of every namespace when `ns`
  // is empty.
  absl::StatusOr<std::vector<ObjectStats>> List(const std::string& ns, const std::string& prefix,
                                                const Cursor& after, int limit, absl::Time now);

  struct Cell {
    std::string backend;
    cloudflux::common::v1::StorageTier tier = cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED;
    int64_t objects = 0, bytes = 0;
  };
  // Live objects and bytes per backend and tier under ns/prefix (ns "" = all).
  absl::StatusOr<std::vector<Cell>> Distribution(const std::string& ns, const std::string& prefix);

 private:
  // `origins[i]` is the message events[i] was decoded from, or null.
  absl::StatusOr<Applied> ApplyFrom(const std::vector<cloudflux::events::v1::EventEnvelope>& events,
                                    const std::vector<const events::ConsumedMessage*>& origins);
  db::Pool& pool_;
};

}  // namespace cloudflux::classification
