#include "access_stats.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "cloudflux/core/status.h"
#include "cloudflux/events/object_events.h"
#include "cloudflux/events/outbox.h"

namespace cloudflux::classification {

namespace {

std::string Day(absl::Time t) { return absl::FormatTime("%Y-%m-%d", t, absl::UTCTimeZone()); }

}  // namespace

absl::StatusOr<AccessStatsStore::Applied> AccessStatsStore::ApplyMessages(
    const std::vector<events::ConsumedMessage>& messages) {
  events::DecodedBatch batch = events::DecodeMessages(messages);
  CF_ASSIGN_OR_RETURN(Applied out, ApplyFrom(batch.envelopes, batch.origins));
  out.skipped += batch.undecodable;
  return out;
}

absl::StatusOr<AccessStatsStore::Applied> AccessStatsStore::Apply(
    const std::vector<cloudflux::events::v1::EventEnvelope>& events) {
  return ApplyFrom(events, std::vector<const events::ConsumedMessage*>(events.size(), nullptr));
}

absl::StatusOr<AccessStatsStore::Applied> AccessStatsStore::ApplyFrom(
    const std::vector<cloudflux::events::v1::EventEnvelope>& events,
    const std::vector<const events::ConsumedMessage*>& origins) {
  events::ObjectEventBatch selected = events::SelectObjectEvents(events, origins);
  Applied out = selected.counts;
  if (selected.empty()) return out;

  absl::Status written = pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    Applied batch;
    CF_ASSIGN_OR_RETURN(auto deltas, selected.ClaimAndFold(tx, "classification", kStatsConsumer, batch));
    // Statement 1: objects whose stored statistics start over: their daily
    // rows go; overwritten ones lose their row, deleted ones keep a
    // tombstone.
    std::vector<std::string> del_ns, del_key, tomb_ns, tomb_key, tomb_version;
    for (const auto& [k, d] : deltas) {
      if (!d.delete_first) continue;
      del_ns.push_back(k.first);
      del_key.push_back(k.second);
      if (d.deleted_version.has_value()) {
        tomb_ns.push_back(k.first);
        tomb_key.push_back(k.second);
        tomb_version.push_back(std::to_string(*d.deleted_version));
      }
    }
    if (!del_ns.empty()) {
      CF_RETURN_IF_ERROR(
          tx.Exec("WITH k AS (SELECT * FROM unnest($1::text[], $2::text[]) AS k(ns, key)), "
                  "d AS (DELETE FROM classification.object_reads_daily r USING k WHERE r.namespace = "
                  "k.ns AND r.key = k.key) DELETE FROM classification.object_stats s USING k WHERE "
                  "s.namespace = k.ns AND s.key = k.key",
                  {db::ArrayLiteral(del_ns), db::ArrayLiteral(del_key)})
              .status());
    }
    if (!tomb_ns.empty()) {
      CF_RETURN_IF_ERROR(tx.Exec("INSERT INTO classification.object_stats (namespace, key, deleted_version) "
                                 "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
                                 {db::ArrayLiteral(tomb_ns), db::ArrayLiteral(tomb_key),
                                  db::ArrayLiteral(tomb_version)})
                             .status());
    }
    // Statement 2: upserts, each with its objects' reads per day.
    // Authoritative facts (creation, tier change, relocation) replace what
    // is stored; facts carried by reads only fill what is missing, and reads
    // of a deleted version or of one older than stored change nothing: the
    // upsert's WHERE says which rows count, and only the rows it returns get
    // their daily reads.
    struct Rows {
      std::vector<db::Param> ns, key, version, size, backend, tier, created, placed, last_read, reads, bytes;
      std::vector<std::string> day_ns, day_key, day, day_reads, day_bytes;
    } auth_rows, fill_rows;
    for (const auto& [k, d] : deltas) {
      bool described = d.version.has_value() || d.reads > 0;
      if (!described) continue;  // deleted and nothing after
      Rows& r = d.authoritative ? auth_rows : fill_rows;
      r.ns.push_back(k.first);
      r.key.push_back(k.second);
      r.version.push_back(db::OptionalParam(d.version));
      r.size.push_back(db::OptionalParam(d.size));
      r.backend.push_back(db::OptionalParam(d.backend));
      r.tier.push_back(db::OptionalParam(d.tier));
      r.created.push_back(db::OptionalParam(d.created));
      r.placed.push_back(db::OptionalParam(d.placed));
      r.last_read.push_back(db::OptionalParam(d.last_read));
      r.reads.push_back(std::to_string(d.reads));
      r.bytes.push_back(std::to_string(d.bytes));
      for (const auto& [dd, rb] : d.reads_by_day) {
        r.day_ns.push_back(k.first);
        r.day_key.push_back(k.second);
        r.day.push_back(Day(absl::FromUnixSeconds(dd * 86400)));
        r.day_reads.push_back(std::to_string(rb.first));
        r.day_bytes.push_back(std::to_string(rb.second));
      }
    }
    for (bool authoritative : {true, false}) {
      const Rows& r = authoritative ? auth_rows : fill_rows;
      if (r.ns.empty()) continue;
      auto set = [&](const char* col) {
        return authoritative ? absl::StrCat(col, " = coalesce(EXCLUDED.", col, ", s.", col, "), ")
                             : absl::StrCat(col, " = coalesce(s.", col, ", EXCLUDED.", col, "), ");
      };
      CF_RETURN_IF_ERROR(
          tx.Exec(absl::StrCat(
                      "WITH up AS (INSERT INTO classification.object_stats AS s (namespace, key, version, size, "
                      "backend, tier, created_at, placed_at, last_read_at, reads_total, bytes_read) "
                      "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], "
                      "$5::text[], $6::smallint[], $7::timestamptz[], $8::timestamptz[], "
                      "$9::timestamptz[], $10::bigint[], $11::bigint[]) "
                      "ON CONFLICT (namespace, key) DO UPDATE SET ",
                      set("version"), set("size"), set("backend"), set("tier"), set("placed_at"),
                      "created_at = coalesce(s.created_at, EXCLUDED.created_at), ",
                      "last_read_at = greatest(s.last_read_at, EXCLUDED.last_read_at), ",
                      "reads_total = s.reads_total + EXCLUDED.reads_total, ",
                      "bytes_read = s.bytes_read + EXCLUDED.bytes_read, deleted_version = NULL, "
                      "updated_at = now()",
                      authoritative ? "" : " WHERE (s.deleted_version IS NULL OR EXCLUDED.version > s.deleted_version) "
                                          "AND (s.version IS NULL OR EXCLUDED.version >= s.version)",
                      " RETURNING s.namespace, s.key) "
                      "INSERT INTO classification.object_reads_daily AS d (namespace, key, day, reads, bytes) "
                      "SELECT u.ns, u.key, u.day, u.reads, u.bytes FROM unnest($12::text[], $13::text[], "
                      "$14::date[], $15::bigint[], $16::bigint[]) AS u(ns, key, day, reads, bytes) "
                      "JOIN up ON up.namespace = u.ns AND up.key = u.key "
                      "ON CONFLICT (namespace, key, day) DO UPDATE SET reads = d.reads + "
                      "EXCLUDED.reads, bytes = d.bytes + EXCLUDED.bytes"),
                  {db::ArrayLiteral(r.ns), db::ArrayLiteral(r.key), db::ArrayLiteral(r.version),
                   db::ArrayLiteral(r.size), db::ArrayLiteral(r.backend), db::ArrayLiteral(r.tier),
                   db::ArrayLiteral(r.created), db::ArrayLiteral(r.placed), db::ArrayLiteral(r.last_read),
                   db::ArrayLiteral(r.reads), db::ArrayLiteral(r.bytes), db::ArrayLiteral(r.day_ns),
                   db::ArrayLiteral(r.day_key), db::ArrayLiteral(r.day), db::ArrayLiteral(r.day_reads),
                   db::ArrayLiteral(r.day_bytes)})
              .status());
    }
    out = batch;
    return absl::OkStatus();
  });
  CF_RETURN_IF_ERROR(written);
  return out;
}

namespace {

// Statistics columns and 1/7/30/90-day windows ending on day $1 of the
// object_stats rows `s` that `where` selects (placeholders from $2).
std::string StatsQuery(const std::string& where) {
  return absl::StrCat(
      "SELECT s.namespace, s.key, coalesce(version, 0), coalesce(size, 0), coalesce(backend, ''), "
      "coalesce(tier, 0), (extract(epoch from created_at) * 1000000)::bigint, "
      "(extract(epoch from placed_at) * 1000000)::bigint, "
      "(extract(epoch from last_read_at) * 1000000)::bigint, reads_total, bytes_read, "
      "w.r1, w.r7, w.r30, w.r90, coalesce(decided_version, 0), coalesce(decided_target, '') "
      "FROM classification.object_stats s CROSS JOIN LATERAL (SELECT "
      "coalesce(sum(reads) FILTER (WHERE day > $1::date - 1), 0) AS r1, "
      "coalesce(sum(reads) FILTER (WHERE day > $1::date - 7), 0) AS r7, "
      "coalesce(sum(reads) FILTER (WHERE day > $1::date - 30), 0) AS r30, "
      "coalesce(sum(reads) FILTER (WHERE day > $1::date - 90), 0) AS r90 "
      "FROM classification.object_reads_daily r WHERE r.namespace = s.namespace AND "
      "r.key = s.key) w WHERE s.deleted_version IS NULL AND ",
      where);
}

ObjectStats StatsFromRow(const db::Row& r) {
  ObjectStats s;
  s.ns = r.Text(0);
  s.key = r.Text(1);
  s.version = r.Int(2);
  s.size = r.Int(3);
  s.backend = r.Text(4);
  s.tier = static_cast<cloudflux::common::v1::StorageTier>(r.Int(5));
  if (!r.IsNull(6)) s.created = absl::FromUnixMicros(r.Int(6));
  if (!r.IsNull(7)) s.placed = absl::FromUnixMicros(r.Int(7));
  if (!r.IsNull(8)) s.last_read = absl::FromUnixMicros(r.Int(8));
  s.reads_total = r.Int(9);
  s.bytes_read = r.Int(10);
  s.reads_1d = r.Int(11);
  s.reads_7d = r.Int(12);
  s.reads_30d = r.Int(13);
  s.reads_90d = r.Int(14);
  s.decided_version = r.Int(15);
  s.decided_target = r.Text(16);
  return s;
}

}  // namespace

absl::StatusOr<ObjectStats> AccessStatsStore::Get(const std::string& ns, const std::string& key,
                                                  absl::Time now) {
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec(StatsQuery("s.namespace = $2 AND s.key = $3"), {Day(now), ns, key}));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("no statistics for ", ns, "/", key));
  return StatsFromRow(rows[0]);
}

absl::StatusOr<std::vector<ObjectStats>> AccessStatsStore::List(const std::string& ns,
                                                                const std::string& prefix,
                                                                const Cursor& after, int limit,
                                                                absl::Time now) {
  db::Result rows;
  if (ns.empty()) {
    CF_ASSIGN_OR_RETURN(rows, pool_.Exec(StatsQuery("(s.namespace, s.key) > ($2, $3) "
                                                    "ORDER BY s.namespace, s.key LIMIT $4"),
                                         {Day(now), after.ns, after.key, std::to_string(limit)}));
  } else {
    CF_ASSIGN_OR_RETURN(
        rows, pool_.Exec(StatsQuery("s.namespace = $2 AND starts_with(s.key, $3) AND s.key > $4 "
                                    "ORDER BY s.key LIMIT $5"),
                         {Day(now), ns, prefix, after.ns == ns ? after.key : std::string(),
                          std::to_string(limit)}));
  }
  std::vector<ObjectStats> out;
  out.reserve(rows.size());
  for (const db::Row& r : rows) out.push_back(StatsFromRow(r));
  return out;
}

absl::StatusOr<std::vector<AccessStatsStore::Cell>> AccessStatsStore::Distribution(
    const std::string& ns, const std::string& prefix) {
  CF_ASSIGN_OR_RETURN(
      db::Result rows,
      pool_.Exec("SELECT coalesce(backend, ''), coalesce(tier, 0), count(*), coalesce(sum(size), 0)::bigint "
                 "FROM classification.object_stats WHERE deleted_version IS NULL AND "
                 "($1 = '' OR (namespace = $1 AND starts_with(key, $2))) GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2",
                 {ns, prefix}));
  std::vector<Cell> out;
  for (const db::Row& r : rows) {
    out.push_back({.backend = r.Text(0),
                   .tier = static_cast<cloudflux::common::v1::StorageTier>(r.Int(1)),
                   .objects = r.Int(2),
                   .bytes = r.Int(3)});
  }
  return out;
}

}  // namespace cloudflux::classification
