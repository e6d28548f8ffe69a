#include "cloudflux/events/object_events.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <set>

#include "cloudflux/core/status.h"
#include "cloudflux/storage/v1/events.pb.h"

namespace cloudflux::events {

namespace sv1 = cloudflux::storage::v1;
using google::protobuf::util::TimeUtil;

namespace {

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t));
}

std::optional<absl::Time> Max(std::optional<absl::Time> a, absl::Time b) {
  return a.has_value() ? std::max(*a, b) : b;
}

}  // namespace

int64_t UnixDay(absl::Time t) {
  int64_t s = absl::ToUnixSeconds(t);
  return s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
}

bool ObjectDelta::AdvanceTo(int64_t v) {
  if (v < reads_version) return false;
  if (v > reads_version) {
    reads_by_day.clear();
    reads = bytes = 0;
    last_read.reset();
    reads_version = v;
  }
  return true;
}

void ObjectDelta::Reset() {
  auto tombstone = deleted_version;
  *this = ObjectDelta();
  delete_first = true;
  deleted_version = tombstone;
}

bool IsObjectEvent(const cloudflux::events::v1::EventEnvelope& e) {
  const auto& p = e.payload();
  return p.Is<sv1::ObjectCreated>() || p.Is<sv1::ObjectDeleted>() || p.Is<sv1::ObjectTierChanged>() ||
         p.Is<sv1::ObjectRelocated>() || p.Is<sv1::ObjectRead>();
}

bool FoldObjectEvent(const cloudflux::events::v1::EventEnvelope& e, std::map<ObjectId, ObjectDelta>& deltas) {
  absl::Time when = ToTime(e.time());
  sv1::ObjectCreated created;
  sv1::ObjectDeleted deleted;
  sv1::ObjectTierChanged tier;
  sv1::ObjectRelocated moved;
  sv1::ObjectRead read;
  if (e.payload().UnpackTo(&created)) {
    const auto& o = created.object();
    ObjectDelta& d = deltas[{o.namespace_(), o.key()}];
    if (created.overwrite()) d.Reset();  // a new version: its own history
    d.AdvanceTo(o.version());
    d.version = o.version();
    d.size = o.size();
    d.backend = o.backend();
    d.tier = o.tier();
    d.created = o.has_created() ? ToTime(o.created()) : when;
    d.placed = when;
    d.authoritative = true;
  } else if (e.payload().UnpackTo(&deleted)) {
    ObjectDelta& d = deltas[{deleted.namespace_(), deleted.key()}];
    d.Reset();
    d.deleted_version = std::max(d.deleted_version.value_or(0), deleted.version());
  } else if (e.payload().UnpackTo(&tier)) {
    ObjectDelta& d = deltas[{tier.namespace_(), tier.key()}];
    d.AdvanceTo(tier.version());
    d.tier = tier.to_tier();
    d.placed = when;
    d.version = tier.version();
    d.size = tier.size();
    d.backend = tier.backend();
    d.authoritative = true;
  } else if (e.payload().UnpackTo(&moved)) {
    ObjectDelta& d = deltas[{moved.namespace_(), moved.key()}];
    d.AdvanceTo(moved.version());
    d.backend = moved.to_backend();
    d.tier = moved.to_tier();
    d.placed = when;
    d.version = moved.version();
    d.size = moved.size();
    d.authoritative = true;
  } else if (e.payload().UnpackTo(&read)) {
    ObjectDelta& d = deltas[{read.namespace_(), read.key()}];
    // Reads of a version deleted in this batch, or older than one seen:
    // nothing to count.
    if (d.deleted_version.has_value() && read.version() <= *d.deleted_version && !d.authoritative) return true;
    if (!d.AdvanceTo(read.version())) return true;
    absl::Time last = read.has_last_read() ? ToTime(read.last_read()) : when;
    auto& [n, b] = d.reads_by_day[UnixDay(last)];
    n += read.reads();
    b += read.bytes_read();
    d.reads += read.reads();
    d.bytes += read.bytes_read();
    d.last_read = Max(d.last_read, last);
    if (!d.authoritative) {  // fill a row nothing else has described
      d.version = read.version();
      d.size = read.size();
      d.backend = read.backend();
      d.tier = read.tier();
    }
  } else {
    return false;
  }
  return true;
}

ObjectEventBatch SelectObjectEvents(const std::vector<cloudflux::events::v1::EventEnvelope>& events,
                                    const std::vector<const ConsumedMessage*>& origins) {
  ObjectEventBatch out;
  std::set<std::string> ids;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& e = events[i];
    if (!IsObjectEvent(e)) {
      ++out.counts.skipped;
      continue;
    }
    if (!ids.insert(e.id()).second) {
      ++out.counts.duplicates;
      continue;
    }
    out.events.push_back(&e);
    out.claims.push_back({origins[i], e.id()});
  }
  return out;
}

absl::StatusOr<std::map<ObjectId, ObjectDelta>> ObjectEventBatch::ClaimAndFold(db::Transaction& tx,
                                                                              const std::string& schema,
                                                                              const std::string& consumer,
                                                                              IngestCounts& out) const {
  // Exactly once: by the relay's stream positions (no row per event), by
  // event id for events that did not come from a relay.
  CF_ASSIGN_OR_RETURN(std::vector<bool> fresh, ClaimMessages(tx, schema, consumer, claims));
  out = counts;
  std::map<ObjectId, ObjectDelta> deltas;
  for (size_t c = 0; c < events.size(); ++c) {
    if (!fresh[c]) {
      ++out.duplicates;
    } else if (FoldObjectEvent(*events[c], deltas)) {
      ++out.applied;
    }
  }
  return deltas;
}

}  // namespace cloudflux::events
