#include "history_store.h"

#include <algorithm>
#include <climits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cloudflux/core/status.h"

namespace cloudflux::prediction {

namespace {

std::optional<absl::Time> Micros(const db::Row& row, size_t column) {
  if (row.IsNull(column)) return std::nullopt;
  return absl::FromUnixMicros(row.Int(column));
}

// "{1,2,NULL,3}" -> {1, 2, 0, 3}.
std::vector<int32_t> ParseIntArray(const std::string& text) {
  std::vector<int32_t> out;
  if (text.size() < 2) return out;
  for (absl::string_view item : absl::StrSplit(absl::string_view(text).substr(1, text.size() - 2), ',',
                                               absl::SkipEmpty())) {
    int32_t v = 0;
    out.push_back(absl::SimpleAtoi(item, &v) ? v : 0);
  }
  return out;
}

std::string IntArrayLiteral(const std::vector<int32_t>& v) { return absl::StrCat("{", absl::StrJoin(v, ","), "}"); }

// Columns StoredHistory is read from (of prediction.histories h).
constexpr char kColumns[] =
    "h.namespace, h.key, coalesce(h.version, 0), coalesce(h.size, 0), coalesce(h.backend, ''), "
    "coalesce(h.tier, 0), (extract(epoch from h.created_at) * 1000000)::bigint, "
    "(extract(epoch from h.placed_at) * 1000000)::bigint, "
    "(extract(epoch from h.last_read_at) * 1000000)::bigint, coalesce(h.first_day, 0), h.reads";
constexpr char kLive[] = "h.version IS NOT NULL";

StoredHistory FromRow(const db::Row& r) {
  StoredHistory h;
  h.ns = r.Text(0);
  h.key = r.Text(1);
  h.version = r.Int(2);
  h.size = r.Int(3);
  h.backend = r.Text(4);
  h.tier = static_cast<cloudflux::common::v1::StorageTier>(r.Int(5));
  h.created = Micros(r, 6);
  h.placed = Micros(r, 7);
  h.last_read = Micros(r, 8);
  h.first_day = static_cast<int>(r.Int(9));
  h.reads = ParseIntArray(r.Text(10));
  return h;
}

std::vector<StoredHistory> FromResult(const db::Result& result) {
  std::vector<StoredHistory> out;
  out.reserve(result.size());
  for (const auto& r : result) out.push_back(FromRow(r));
  return out;
}

// A stored row as the merge sees it.
struct Merged {
  std::optional<int64_t> version, size, tier, deleted_version;
  std::optional<std::string> backend;
  std::optional<absl::Time> created, placed, last_read;
  std::optional<int> first_day;
  std::vector<int32_t> reads;
  void Clear() {
    auto tombstone = deleted_version;
    *this = Merged{};
    deleted_version = tombstone;
  }
  // Makes the history start on `day` at the latest.
  void ExtendTo(int d) {
    if (!first_day.has_value()) first_day = d;
    if (d < *first_day) {
      reads.insert(reads.begin(), static_cast<size_t>(*first_day - d), 0);
      first_day = d;
    }
  }
  void AddReads(int64_t day, int64_t n) {
    int d = static_cast<int>(day);
    ExtendTo(d);  // a read from before the row's first day extends it back
    size_t i = static_cast<size_t>(d - *first_day);
    if (i >= reads.size()) reads.resize(i + 1, 0);
    reads[i] = static_cast<int32_t>(std::min<int64_t>(reads[i] + n, INT32_MAX));
  }
};


}  // namespace

std::string GroupOf(const std::string& key) {
  size_t slash = key.find('/');
  return slash == std::string::npos ? std::string() : key.substr(0, slash);
}

ObjectHistory StoredHistory::ToModel(int until_day) const {
  ObjectHistory o;
  o.id = absl::StrCat(ns, "/", key);
  o.ns = ns;
  o.group = GroupOf(key);
  o.size_bytes = size;
  o.first_day = first_day;
  o.reads.assign(reads.begin(), reads.end());
  if (until_day > first_day && o.reads.size() < static_cast<size_t>(until_day - first_day)) {
    o.reads.resize(static_cast<size_t>(until_day - first_day), 0.0);
  }
  return o;
}

absl::StatusOr<events::IngestCounts> HistoryStore::ApplyMessages(const std::vector<events::ConsumedMessage>& messages) {
  events::DecodedBatch batch = events::DecodeMessages(messages);
  CF_ASSIGN_OR_RETURN(events::IngestCounts out, ApplyFrom(batch.envelopes, batch.origins));
  out.skipped += batch.undecodable;
  return out;
}

absl::StatusOr<events::IngestCounts> HistoryStore::Apply(
    const std::vector<cloudflux::events::v1::EventEnvelope>& events) {
  return ApplyFrom(events, std::vector<const events::ConsumedMessage*>(events.size(), nullptr));
}

absl::StatusOr<events::IngestCounts> HistoryStore::ApplyFrom(
    const std::vector<cloudflux::events::v1::EventEnvelope>& events,
    const std::vector<const events::ConsumedMessage*>& origins) {
  events::ObjectEventBatch selected = events::SelectObjectEvents(events, origins);
  events::IngestCounts out = selected.counts;
  if (selected.empty()) return out;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    events::IngestCounts counts;
    CF_ASSIGN_OR_RETURN(auto deltas, selected.ClaimAndFold(tx, "prediction", kHistoryConsumer, counts));
    for (auto it = deltas.begin(); it != deltas.end();) {  // the model artifacts are not forecast
      it = it->first.first == kModelNamespace ? deltas.erase(it) : std::next(it);
    }
    out = counts;
    if (deltas.empty()) return absl::OkStatus();
    // The touched rows' facts, locked (their read arrays only where merged here).
    std::vector<std::string> ns, key;
    for (const auto& [id, d] : deltas) {
      ns.push_back(id.first);
      key.push_back(id.second);
    }
    CF_ASSIGN_OR_RETURN(
        db::Result stored,
        tx.Exec("SELECT h.namespace, h.key, h.version, h.size, h.tier, h.deleted_version, h.backend, "
                "(extract(epoch from h.created_at) * 1000000)::bigint, "
                "(extract(epoch from h.placed_at) * 1000000)::bigint, "
                "(extract(epoch from h.last_read_at) * 1000000)::bigint, h.first_day "
                "FROM prediction.histories h JOIN unnest($1::text[], $2::text[]) AS k(ns, key) "
                "ON h.namespace = k.ns AND h.key = k.key ORDER BY h.namespace, h.key FOR UPDATE OF h",
                {db::ArrayLiteral(ns), db::ArrayLiteral(key)}));
    std::map<events::ObjectId, Merged> rows;
    for (const auto& r : stored) {
      Merged m;
      auto opt_int = [&](size_t c) { return r.IsNull(c) ? std::optional<int64_t>() : r.Int(c); };
      m.version = opt_int(2);
      m.size = opt_int(3);
      m.tier = opt_int(4);
      m.deleted_version = opt_int(5);
      m.backend = r.Optional(6);
      m.created = Micros(r, 7);
      m.placed = Micros(r, 8);
      m.last_read = Micros(r, 9);
      if (!r.IsNull(10)) m.first_day = static_cast<int>(r.Int(10));
      rows[{r.Text(0), r.Text(1)}] = std::move(m);
    }
    // Reads of a stored, live version are added in the database, as (day,
    // count) pairs; anything else (a creation, a deletion, a new row) is
    // merged here from the whole row.
    std::vector<db::Param> a_ns, a_key, a_day, a_count, a_last;
    std::vector<std::string> full_ns, full_key;
    for (auto it = deltas.begin(); it != deltas.end();) {
      const auto& [id, d] = *it;
      auto row = rows.find(id);
      const bool reads_only = !d.delete_first && !d.deleted_version.has_value() && !d.authoritative;
      if (reads_only && row != rows.end() && row->second.version.has_value()) {
        const Merged& m = row->second;
        bool deleted = m.deleted_version.has_value() && d.reads_version <= *m.deleted_version;
        bool older = d.reads_version < *m.version;
        if (!deleted && !older) {
          for (const auto& [day, rb] : d.reads_by_day) {
            a_ns.push_back(id.first);
            a_key.push_back(id.second);
            a_day.push_back(std::to_string(day));
            a_count.push_back(std::to_string(std::min<int64_t>(rb.first, INT32_MAX)));
            a_last.push_back(db::OptionalParam(d.last_read));
          }
        }
        it = deltas.erase(it);
        continue;
      }
      if (row != rows.end()) {
        full_ns.push_back(id.first);
        full_key.push_back(id.second);
      }
      ++it;
    }
    if (!a_ns.empty()) {
      CF_RETURN_IF_ERROR(
          tx.Exec("UPDATE prediction.histories h SET reads = prediction.add_reads(h.reads, h.first_day, a.days, "
                  "a.counts), first_day = least(h.first_day, a.min_day), last_read_at = greatest(h.last_read_at, "
                  "a.last_read), updated_at = now() FROM (SELECT ns, key, array_agg(day) AS days, array_agg(n) AS "
                  "counts, min(day) AS min_day, max(last_read) AS last_read FROM unnest($1::text[], $2::text[], "
                  "$3::integer[], $4::integer[], $5::timestamptz[]) AS u(ns, key, day, n, last_read) GROUP BY ns, "
                  "key) AS a WHERE h.namespace = a.ns AND h.key = a.key",
                  {db::ArrayLiteral(a_ns), db::ArrayLiteral(a_key), db::ArrayLiteral(a_day),
                   db::ArrayLiteral(a_count), db::ArrayLiteral(a_last)})
              .status());
    }
    if (deltas.empty()) return absl::OkStatus();
    if (!full_ns.empty()) {
      CF_ASSIGN_OR_RETURN(db::Result arrays,
                          tx.Exec("SELECT h.namespace, h.key, h.reads FROM prediction.histories h JOIN "
                                  "unnest($1::text[], $2::text[]) AS k(ns, key) ON h.namespace = k.ns AND h.key = "
                                  "k.key",
                                  {db::ArrayLiteral(full_ns), db::ArrayLiteral(full_key)}));
      for (const auto& r : arrays) rows[{r.Text(0), r.Text(1)}].reads = ParseIntArray(r.Text(2));
    }
    std::vector<db::Param> w_ns, w_key, w_version, w_size, w_backend, w_tier, w_created, w_placed, w_last, w_first,
        w_reads, w_deleted;
    for (const auto& [id, d] : deltas) {
      Merged& m = rows[id];
      if (d.delete_first) m.Clear();
      if (d.deleted_version.has_value()) {
        m.deleted_version = std::max(m.deleted_version.value_or(0), *d.deleted_version);
      }
      if (d.authoritative) {
        // Creation, tier change or relocation: the facts replace what is stored.
        m.version = d.version;
        m.size = d.size;
        m.backend = d.backend;
        m.tier = d.tier;
        m.placed = d.placed;
        if (d.created.has_value()) {
          // The history starts on the day the object was written (an
          // earlier creation time, an imported object's, extends it back).
          m.created = std::min(m.created.value_or(*d.created), *d.created);
          m.ExtendTo(static_cast<int>(events::UnixDay(*m.created)));
        }
      } else if (d.reads > 0) {
        // Reads alone count only for a version not deleted and not older
        // than the stored one; they describe a row nothing else has.
        bool deleted = m.deleted_version.has_value() && d.reads_version <= *m.deleted_version;
        bool older = m.version.has_value() && d.reads_version < *m.version;
        if (deleted || older) continue;
        if (!m.version.has_value()) {
          m.version = d.version;
          m.size = d.size;
          m.backend = d.backend;
          m.tier = d.tier;
        }
      }
      if (m.version.has_value()) {
        for (const auto& [day, rb] : d.reads_by_day) m.AddReads(day, rb.first);
        if (d.last_read.has_value()) m.last_read = std::max(m.last_read.value_or(*d.last_read), *d.last_read);
      }
      w_ns.push_back(id.first);
      w_key.push_back(id.second);
      w_version.push_back(db::OptionalParam(m.version));
      w_size.push_back(db::OptionalParam(m.size));
      w_backend.push_back(db::OptionalParam(m.backend));
      w_tier.push_back(db::OptionalParam(m.tier));
      w_created.push_back(db::OptionalParam(m.created));
      w_placed.push_back(db::OptionalParam(m.placed));
      w_last.push_back(db::OptionalParam(m.last_read));
      w_first.push_back(db::OptionalParam(m.first_day));
      w_reads.push_back(IntArrayLiteral(m.reads));
      w_deleted.push_back(db::OptionalParam(m.deleted_version));
    }
    if (w_ns.empty()) return absl::OkStatus();
    return tx
        .Exec("INSERT INTO prediction.histories AS h (namespace, key, version, size, backend, tier, created_at, "
              "placed_at, last_read_at, first_day, reads, deleted_version) "
              "SELECT ns, key, version, size, backend, tier, created_at, placed_at, last_read_at, first_day, "
              "reads::integer[], deleted_version FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], "
              "$5::text[], $6::smallint[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], "
              "$10::integer[], $11::text[], $12::bigint[]) AS u(ns, key, version, size, backend, tier, "
              "created_at, placed_at, last_read_at, first_day, reads, deleted_version) "
              "ON CONFLICT (namespace, key) DO UPDATE SET version = EXCLUDED.version, size = EXCLUDED.size, "
              "backend = EXCLUDED.backend, tier = EXCLUDED.tier, created_at = EXCLUDED.created_at, "
              "placed_at = EXCLUDED.placed_at, last_read_at = EXCLUDED.last_read_at, "
              "first_day = EXCLUDED.first_day, reads = EXCLUDED.reads, "
              "deleted_version = EXCLUDED.deleted_version, updated_at = now()",
              {db::ArrayLiteral(w_ns), db::ArrayLiteral(w_key), db::ArrayLiteral(w_version),
               db::ArrayLiteral(w_size), db::ArrayLiteral(w_backend), db::ArrayLiteral(w_tier),
               db::ArrayLiteral(w_created), db::ArrayLiteral(w_placed), db::ArrayLiteral(w_last),
               db::ArrayLiteral(w_first), db::ArrayLiteral(w_reads), db::ArrayLiteral(w_deleted)})
        .status();
  }));
  return out;
}

absl::StatusOr<StoredHistory> HistoryStore::Get(const std::string& ns, const std::string& key) {
  CF_ASSIGN_OR_RETURN(db::Result r,
                      pool_.Exec(absl::StrCat("SELECT ", kColumns, " FROM prediction.histories h WHERE ",
                                              "h.namespace = $1 AND h.key = $2 AND ", kLive),
                                 {ns, key}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no object '", ns, "/", key, "' is known"));
  return FromRow(r[0]);
}

absl::StatusOr<std::vector<StoredHistory>> HistoryStore::GetMany(const std::vector<events::ObjectId>& ids) {
  std::vector<std::string> ns, key;
  for (const auto& [n, k] : ids) {
    ns.push_back(n);
    key.push_back(k);
  }
  CF_ASSIGN_OR_RETURN(db::Result r,
                      pool_.Exec(absl::StrCat("SELECT ", kColumns, " FROM prediction.histories h JOIN "
                                              "unnest($1::text[], $2::text[]) AS k(ns, key) ON h.namespace = "
                                              "k.ns AND h.key = k.key WHERE ",
                                              kLive),
                                 {db::ArrayLiteral(ns), db::ArrayLiteral(key)}));
  return FromResult(r);
}

absl::StatusOr<std::vector<StoredHistory>> HistoryStore::List(const std::string& ns, const std::string& prefix,
                                                              const std::string& after_key, int limit) {
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      pool_.Exec(absl::StrCat("SELECT ", kColumns, " FROM prediction.histories h WHERE h.namespace = $1 AND ",
                              "h.key > $2 AND left(h.key, length($3)) = $3 AND ", kLive,
                              " ORDER BY h.key LIMIT $4"),
                 {ns, after_key, prefix, std::to_string(limit)}));
  return FromResult(r);
}

absl::Status HistoryStore::ForEach(int page, const std::function<absl::Status(std::vector<StoredHistory>&)>& fn) {
  std::string after_ns, after_key;
  for (;;) {
    CF_ASSIGN_OR_RETURN(
        db::Result r,
        pool_.Exec(absl::StrCat("SELECT ", kColumns, " FROM prediction.histories h WHERE (h.namespace, h.key) > "
                                "($1, $2) AND ",
                                kLive, " ORDER BY h.namespace, h.key LIMIT $3"),
                   {after_ns, after_key, std::to_string(page)}));
    if (r.empty()) return absl::OkStatus();
    std::vector<StoredHistory> rows = FromResult(r);
    after_ns = rows.back().ns;
    after_key = rows.back().key;
    CF_RETURN_IF_ERROR(fn(rows));
    if (static_cast<int>(r.size()) < page) return absl::OkStatus();
  }
}

absl::StatusOr<GroupMeans> HistoryStore::GroupMeansAt(int day) {
  // Reads on days [day - w, day): array positions day - w - first_day + 1 ..
  // day - first_day (slices clip at the array's ends).
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      pool_.Exec("SELECT h.namespace, CASE WHEN strpos(h.key, '/') > 0 THEN split_part(h.key, '/', 1) ELSE '' END "
                 "AS grp, count(*), "
                 "coalesce(sum((SELECT sum(x) FROM unnest(h.reads[$1 - 7 - h.first_day + 1 : $1 - h.first_day]) x)), 0), "
                 "coalesce(sum((SELECT sum(x) FROM unnest(h.reads[$1 - 28 - h.first_day + 1 : $1 - h.first_day]) x)), 0) "
                 "FROM prediction.histories h WHERE h.version IS NOT NULL AND h.first_day < $1 "
                 "GROUP BY 1, 2",
                 {std::to_string(day)}));
  GroupMeans out;
  std::map<std::string, std::array<double, 3>> ns;
  for (const auto& row : r) {
    double n = row.Double(2), s7 = row.Double(3), s28 = row.Double(4);
    out.group[absl::StrCat(row.Text(0), "/", row.Text(1))] = {s7 / (7 * n), s28 / (28 * n)};
    auto& a = ns[row.Text(0)];
    a[0] += s7;
    a[1] += s28;
    a[2] += n;
  }
  for (const auto& [k, a] : ns) out.ns[k] = {a[0] / (7 * a[2]), a[1] / (28 * a[2])};
  return out;
}

}  // namespace cloudflux::prediction
