#pragma once
// The storage adapter's object events (ObjectCreated, ObjectDeleted,
// ObjectTierChanged, ObjectRelocated, ObjectRead; topic
// cloudflux.storage.objects) folded, in order, into what a batch of them does
// to each object: whether what is stored of it starts over (deleted or
// overwritten), its placement facts, and the reads of its newest version per
// day. The services that keep per-object statistics (classification's access
// statistics, prediction's read histories) fold with this and write the
// result in their own schema.

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/batch_ingest.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/events/v1/envelope.pb.h"

namespace cloudflux::events {

inline constexpr char kObjectTopic[] = "cloudflux.storage.objects";

// Days since 1970-01-01, UTC.
int64_t UnixDay(absl::Time t);

// What one batch does to one object.
struct ObjectDelta {
  bool delete_first = false;               // drop what is stored before applying the rest
  std::optional<int64_t> deleted_version;  // deleted up to this version
  // Placement facts, authoritative (created/tier changed/relocated) or only
  // a fallback for a row no creation event has filled (from reads).
  std::optional<int64_t> version, size;
  std::optional<std::string> backend;
  std::optional<int> tier;
  std::optional<absl::Time> created, placed;
  bool authoritative = false;
  // Reads of one version, the newest seen (reads of older versions belong to
  // a deleted or overwritten history and count for nothing).
  int64_t reads_version = 0;
  std::map<int64_t, std::pair<int64_t, int64_t>> reads_by_day;  // UnixDay -> reads, bytes
  int64_t reads = 0, bytes = 0;
  std::optional<absl::Time> last_read;

  // Makes `version` the one reads count for; false if it is older.
  bool AdvanceTo(int64_t version);
  // Starts over (a delete or an overwrite), keeping the tombstone.
  void Reset();
};

using ObjectId = std::pair<std::string, std::string>;  // namespace, key

// True for the five object event payloads.
bool IsObjectEvent(const cloudflux::events::v1::EventEnvelope& e);

// Folds one object event into `deltas`; false (nothing changed) for any
// other payload.
bool FoldObjectEvent(const cloudflux::events::v1::EventEnvelope& e, std::map<ObjectId, ObjectDelta>& deltas);

// The object events of a consumed (or directly applied) batch, each event id
// once, with what each came from.
struct ObjectEventBatch {
  std::vector<const cloudflux::events::v1::EventEnvelope*> events;
  std::vector<Claim> claims;
  IngestCounts counts;  // skipped (other payloads) and duplicates within the batch so far
  bool empty() const { return events.empty(); }
  // In the caller's transaction: claims the events exactly once for
  // `consumer` of `schema` (ClaimMessages) and folds the new ones in order.
  // `counts` gets this batch's counts with applied and the duplicates
  // claimed before added.
  absl::StatusOr<std::map<ObjectId, ObjectDelta>> ClaimAndFold(db::Transaction& tx, const std::string& schema,
                                                              const std::string& consumer,
                                                              IngestCounts& counts) const;
};
// `origins[i]` is the message events[i] was decoded from, or null.
ObjectEventBatch SelectObjectEvents(const std::vector<cloudflux::events::v1::EventEnvelope>& events,
                                    const std::vector<const ConsumedMessage*>& origins);

}  // namespace cloudflux::events
