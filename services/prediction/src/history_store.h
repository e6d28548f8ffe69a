#pragma once
// HistoryStore: the prediction service's daily read history of every object
// (prediction.histories: one row per object, its reads per UTC day in an
// array), built from the storage adapter's object events folded by
// events::FoldObjectEvent. A batch is claimed exactly once
// (events::ClaimMessages) and written in one transaction: the touched rows
// are locked, merged in memory and written back with one statement.
// Overwritten objects start a new history; deleted ones keep a tombstone
// (late reads of them count for nothing) and are no longer listed. Objects
// of the reserved model namespace are not tracked. Thread-safe.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cloudflux/common/v1/common.pb.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/batch_ingest.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/object_events.h"
#include "cloudflux/events/v1/envelope.pb.h"
#include "forecaster.h"

namespace cloudflux::prediction {

// Where model artifacts are stored through the storage adapter.
inline constexpr char kModelNamespace[] = "cloudflux-models";
inline constexpr char kHistoryConsumer[] = "histories";

struct StoredHistory {
  std::string ns, key;
  int64_t version = 0, size = 0;
  std::string backend;
  cloudflux::common::v1::StorageTier tier = cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED;
  std::optional<absl::Time> created, placed, last_read;
  int first_day = 0;           // events::UnixDay of reads[0]
  std::vector<int32_t> reads;  // per day from first_day
  // The model's view up to (not including) `until_day`: group = the key's
  // first path segment; the days after the last read are zeros (the stored
  // array ends at its last read, the model reads every day up to until_day).
  ObjectHistory ToModel(int until_day) const;
};

// The prefix group an object's key belongs to: its first path segment
// ("logs" for "logs/2026/a.gz"), empty for a key without '/'.
std::string GroupOf(const std::string& key);

class HistoryStore {
 public:
  explicit HistoryStore(db::Pool& pool) : pool_(pool) {}

  absl::StatusOr<events::IngestCounts> Apply(const std::vector<cloudflux::events::v1::EventEnvelope>& events);
  absl::StatusOr<events::IngestCounts> ApplyMessages(const std::vector<events::ConsumedMessage>& messages);

  // NOT_FOUND for an object no event has mentioned, or a deleted one.
  absl::StatusOr<StoredHistory> Get(const std::string& ns, const std::string& key);
  // The live ones among `ids` (any order).
  absl::StatusOr<std::vector<StoredHistory>> GetMany(const std::vector<events::ObjectId>& ids);
  // Up to `limit` live objects of `ns` whose key starts with `prefix`, after
  // `after_key`, in key order.
  absl::StatusOr<std::vector<StoredHistory>> List(const std::string& ns, const std::string& prefix,
                                                  const std::string& after_key, int limit);
  // Every live object, `page` at a time in (namespace, key) order.
  absl::Status ForEach(int page, const std::function<absl::Status(std::vector<StoredHistory>&)>& fn);
  // Mean reads per object and day of every prefix group and namespace over
  // the 7 and 28 days before `day` (GroupMeans::At, computed in the database).
  absl::StatusOr<GroupMeans> GroupMeansAt(int day);

 private:
  absl::StatusOr<events::IngestCounts> ApplyFrom(const std::vector<cloudflux::events::v1::EventEnvelope>& events,
                                                 const std::vector<const events::ConsumedMessage*>& origins);
  db::Pool& pool_;
};

}  // namespace cloudflux::prediction
