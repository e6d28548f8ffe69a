#include "sync.h"
#include "ids.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/names.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"

namespace cloudflux::migration {

namespace v1 = cloudflux::migration::v1;
namespace sv1 = cloudflux::storage::v1;
using google::protobuf::util::TimeUtil;

namespace {

constexpr int kPageSize = 1000;
constexpr absl::Duration kMinInterval = absl::Seconds(1);

constexpr char kPairQuery[] =
    "SELECT p.id, p.path1_namespace, p.path1_prefix, p.path1_backend, p.path1_tier, p.path2_namespace, "
    "p.path2_prefix, p.path2_backend, p.path2_tier, p.conflict_resolve, p.conflict_loser, p.max_delete_percent, "
    "p.interval_ms, (extract(epoch FROM p.created_at) * 1000000)::bigint, coalesce(p.last_run::text, ''), "
    "p.lease_until IS NOT NULL AND p.lease_until > now(), (SELECT count(*) FROM migration.sync_listing l WHERE "
    "l.pair_id = p.id) FROM migration.sync_pairs p ";

v1::SyncLocation LocationFromRow(const db::Row& row, size_t at) {
  v1::SyncLocation l;
  l.set_namespace_(row.Text(at));
  l.set_prefix(row.Text(at + 1));
  l.set_backend(row.Text(at + 2));
  l.set_tier(static_cast<cloudflux::common::v1::StorageTier>(row.Int(at + 3)));
  return l;
}

v1::SyncPair PairFromRow(const db::Row& row) {
  v1::SyncPair p;
  p.set_id(row.Text(0));
  *p.mutable_path1() = LocationFromRow(row, 1);
  *p.mutable_path2() = LocationFromRow(row, 5);
  p.set_conflict_resolve(static_cast<v1::ConflictResolve>(row.Int(9)));
  p.set_conflict_loser(static_cast<v1::ConflictLoser>(row.Int(10)));
  p.set_max_delete_percent(static_cast<int32_t>(row.Int(11)));
  if (row.Int(12) > 0) *p.mutable_interval() = TimeUtil::MillisecondsToDuration(row.Int(12));
  *p.mutable_created() = TimeUtil::MicrosecondsToTimestamp(row.Int(13));
  if (!row.Text(14).empty()) {
    (void)google::protobuf::util::JsonStringToMessage(row.Text(14), p.mutable_last_run());
  }
  p.set_running(row.Bool(15));
  p.set_tracked(row.Int(16));
  return p;
}

absl::StatusOr<std::string> PairId(const std::string& id) { return CanonicalId(id, "a sync pair"); }

absl::Status ValidateLocation(const v1::SyncLocation& l, const std::string& name) {
  CF_RETURN_IF_ERROR(core::Annotate(core::ValidateNamespace(l.namespace_()), name));
  CF_RETURN_IF_ERROR(core::Annotate(core::ValidatePrefix(l.prefix()), name));
  if (!cloudflux::common::v1::StorageTier_IsValid(l.tier())) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": unknown tier"));
  }
  return absl::OkStatus();
}

// A location's backend, if it names one, is one the storage adapter has.
absl::Status CheckBackend(const v1::SyncLocation& l, const std::string& name,
                          const std::vector<sv1::Backend>& backends) {
  if (!l.backend().empty() &&
      std::none_of(backends.begin(), backends.end(), [&](const sv1::Backend& b) { return b.name() == l.backend(); })) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": backend '", l.backend(), "' is not configured"));
  }
  return absl::OkStatus();
}

// One side's object, as listed.
struct Entry {
  int64_t version = 0;
  std::string sha256;  // what is compared: Fingerprint()
  int64_t size = 0;
  absl::Time updated;
};

// The agreed state of a key after the last sync of it.
struct Agreed {
  std::string sha256;
  int64_t version1 = 0, version2 = 0;
};

// What two sides must agree on: the bytes' SHA-256 and, when the object
// has any, its content type and metadata (a change of those alone, stored
// as a new version with the same bytes, is a change to sync too).
std::string Fingerprint(const sv1::ObjectInfo& o) {
  if (o.content_type().empty() && o.metadata().empty()) return o.sha256();
  std::string described = o.content_type();
  const std::map<std::string, std::string> sorted(o.metadata().begin(), o.metadata().end());
  for (const auto& [k, v] : sorted) absl::StrAppend(&described, std::string(1, '\0'), k, std::string(1, '\0'), v);
  return absl::StrCat(o.sha256(), "+", core::Sha256Hex(described));
}

// Every object under the location, by key relative to its prefix.
absl::StatusOr<std::map<std::string, Entry>> ListSide(StorageClient& storage, const v1::SyncLocation& l) {
  std::map<std::string, Entry> out;
  std::string token;
  do {
    CF_ASSIGN_OR_RETURN(sv1::ListObjectsResponse page, storage.List(l.namespace_(), l.prefix(), token, kPageSize));
    for (const sv1::ObjectInfo& o : page.objects()) {
      if (!absl::StartsWith(o.key(), l.prefix())) continue;
      const absl::Time updated = absl::FromUnixMicros(
          TimeUtil::TimestampToMicroseconds(o.has_updated() ? o.updated() : o.created()));
      out[o.key().substr(l.prefix().size())] = {o.version(), Fingerprint(o), o.size(), updated};
    }
    token = page.page().next_page_token();
  } while (!token.empty());
  return out;
}

// A change to make: copy `from_side`'s object (1 or 2) to the other side
// (or, for a kept loser, to `to_key` on both sides), or delete it there.
struct Planned {
  v1::SyncChange change;
  int from = 0;                 // the side copied from, or deleted from
  Entry source;                 // copies: what is copied
  std::optional<Entry> target;  // the destination as listed (absent: none)
  std::optional<Entry> other;   // a kept loser: the winner's side as listed
};

bool Path1Wins(v1::ConflictResolve rule, const Entry& a, const Entry& b, std::string* why) {
  switch (rule) {
    case v1::CONFLICT_RESOLVE_OLDER:
      *why = "the older";
      return a.updated <= b.updated;
    case v1::CONFLICT_RESOLVE_LARGER:
      *why = "the larger";
      return a.size >= b.size;
    case v1::CONFLICT_RESOLVE_SMALLER:
      *why = "the smaller";
      return a.size <= b.size;
    case v1::CONFLICT_RESOLVE_PATH1:
      *why = "path1's, by rule,";
      return true;
    case v1::CONFLICT_RESOLVE_PATH2:
      *why = "path2's, by rule,";
      return false;
    default:
      *why = "the newer";
      return a.updated >= b.updated;
  }
}

bool IsCopy(v1::SyncAction a) {
  return a == v1::SYNC_ACTION_COPY_TO_PATH1 || a == v1::SYNC_ACTION_COPY_TO_PATH2;
}

}  // namespace

SyncPairs::SyncPairs(db::Pool& pool, StorageClient& storage, SyncOptions options)
    : pool_(pool), storage_(storage), options_(options), runner_(core::NewId()) {}

absl::StatusOr<v1::SyncPair> SyncPairs::Create(const v1::SyncPair& pair) {
  CF_RETURN_IF_ERROR(ValidateLocation(pair.path1(), "path1"));
  CF_RETURN_IF_ERROR(ValidateLocation(pair.path2(), "path2"));
  const v1::SyncLocation& a = pair.path1();
  const v1::SyncLocation& b = pair.path2();
  if (a.namespace_() == b.namespace_() &&
      (absl::StartsWith(a.prefix(), b.prefix()) || absl::StartsWith(b.prefix(), a.prefix()))) {
    return absl::InvalidArgumentError("path1 and path2 overlap: one holds the other's objects");
  }
  if (!v1::ConflictResolve_IsValid(pair.conflict_resolve())) {
    return absl::InvalidArgumentError("unknown conflict_resolve");
  }
  if (!v1::ConflictLoser_IsValid(pair.conflict_loser())) return absl::InvalidArgumentError("unknown conflict_loser");
  if (pair.max_delete_percent() < 0 || pair.max_delete_percent() > 100) {
    return absl::InvalidArgumentError("max_delete_percent must be between 0 (= 50) and 100");
  }
  int64_t interval_ms = 0;
  if (pair.has_interval()) {
    const auto& d = pair.interval();
    if (d.seconds() < 0 || d.seconds() > 366 * 86400 || d.nanos() < 0 || d.nanos() > 999999999) {
      return absl::InvalidArgumentError("interval must be between 1s and a year");
    }
    interval_ms = TimeUtil::DurationToMilliseconds(pair.interval());
    if (interval_ms != 0 && absl::Milliseconds(interval_ms) < kMinInterval) {
      return absl::InvalidArgumentError("interval must be 0 (runs only on request) or at least 1s");
    }
  }
  if (!pair.path1().backend().empty() || !pair.path2().backend().empty()) {
    CF_ASSIGN_OR_RETURN(std::vector<sv1::Backend> backends, storage_.Backends());
    CF_RETURN_IF_ERROR(CheckBackend(pair.path1(), "path1", backends));
    CF_RETURN_IF_ERROR(CheckBackend(pair.path2(), "path2", backends));
  }
  const std::string id = core::NewId();
  auto tier = [](const v1::SyncLocation& l) { return std::to_string(static_cast<int>(l.tier())); };
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    // One pair per two locations, whichever way round (they would undo each
    // other's conflict decisions).
    CF_RETURN_IF_ERROR(tx.Exec("LOCK TABLE migration.sync_pairs IN SHARE ROW EXCLUSIVE MODE").status());
    CF_ASSIGN_OR_RETURN(
        db::Result same,
        tx.Exec("SELECT id FROM migration.sync_pairs WHERE (path1_namespace, path1_prefix, path2_namespace, "
                "path2_prefix) IN (($1, $2, $3, $4), ($3, $4, $1, $2))",
                {a.namespace_(), a.prefix(), b.namespace_(), b.prefix()}));
    if (!same.empty()) {
      return absl::AlreadyExistsError(absl::StrCat("sync pair ", same[0].Text(0), " already syncs these locations"));
    }
    return tx
        .Exec("INSERT INTO migration.sync_pairs (id, path1_namespace, path1_prefix, path1_backend, path1_tier, "
              "path2_namespace, path2_prefix, path2_backend, path2_tier, conflict_resolve, conflict_loser, "
              "max_delete_percent, interval_ms, next_run_at) VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
              "$11, $12, $13, CASE WHEN $13::bigint > 0 THEN now() END)",
              {id, a.namespace_(), a.prefix(), a.backend(), tier(a), b.namespace_(), b.prefix(), b.backend(), tier(b),
               std::to_string(pair.conflict_resolve() == v1::CONFLICT_RESOLVE_UNSPECIFIED
                                  ? static_cast<int>(v1::CONFLICT_RESOLVE_NEWER)
                                  : static_cast<int>(pair.conflict_resolve())),
               std::to_string(pair.conflict_loser() == v1::CONFLICT_LOSER_UNSPECIFIED
                                  ? static_cast<int>(v1::CONFLICT_LOSER_RENAME)
                                  : static_cast<int>(pair.conflict_loser())),
               std::to_string(pair.max_delete_percent() == 0 ? 50 : pair.max_delete_percent()),
               std::to_string(interval_ms)})
        .status();
  }));
  return Get(id);
}

absl::StatusOr<v1::SyncPair> SyncPairs::Get(const std::string& id) {
  CF_ASSIGN_OR_RETURN(std::string uuid, PairId(id));
  CF_ASSIGN_OR_RETURN(db::Result rows, pool_.Exec(absl::StrCat(kPairQuery, "WHERE p.id = $1::uuid"), {uuid}));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("sync pair ", uuid, " not found"));
  return PairFromRow(rows[0]);
}

absl::StatusOr<v1::ListSyncPairsResponse> SyncPairs::List() {
  CF_ASSIGN_OR_RETURN(db::Result rows, pool_.Exec(absl::StrCat(kPairQuery, "ORDER BY p.created_at, p.id")));
  v1::ListSyncPairsResponse out;
  for (const auto& row : rows) *out.add_pairs() = PairFromRow(row);
  return out;
}

absl::StatusOr<v1::SyncPair> SyncPairs::Delete(const std::string& id) {
  CF_ASSIGN_OR_RETURN(v1::SyncPair pair, Get(id));
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec("DELETE FROM migration.sync_pairs WHERE id = $1::uuid AND (lease_until IS NULL OR "
                                 "lease_until < now()) RETURNING 1",
                                 {pair.id()}));
  if (rows.empty()) {
    CF_RETURN_IF_ERROR(Get(pair.id()).status());
    return absl::AbortedError(absl::StrCat("a run of sync pair ", pair.id(), " is going on; delete it after"));
  }
  return pair;
}

absl::StatusOr<int> SyncPairs::RunDue() {
  CF_ASSIGN_OR_RETURN(db::Result due, pool_.Exec("SELECT id FROM migration.sync_pairs WHERE interval_ms > 0 AND "
                                                 "next_run_at <= now() AND (lease_until IS NULL OR lease_until < "
                                                 "now()) ORDER BY next_run_at LIMIT 10"));
  int ran = 0;
  for (const auto& row : due) {
    v1::RunSyncRequest request;
    request.set_id(row.Text(0));
    auto run = Run(request, absl::InfiniteFuture(), [] { return false; });
    if (absl::IsAborted(run.status()) || absl::IsNotFound(run.status())) continue;  // another runner, or deleted
    ++ran;
    if (!run.ok()) {
      core::LogWarn("scheduled sync failed", {{"pair", row.Text(0)}, {"error", std::string(run.status().message())}});
    }
  }
  return ran;
}

absl::StatusOr<v1::SyncRun> SyncPairs::Run(const v1::RunSyncRequest& request, absl::Time deadline,
                                           const std::function<bool()>& cancelled) {
  CF_ASSIGN_OR_RETURN(v1::SyncPair pair, Get(request.id()));
  const absl::Time started = absl::Now();
  // Stop starting changes a little before the deadline, to answer in time.
  const absl::Time stop_at = deadline == absl::InfiniteFuture()
                                 ? deadline
                                 : deadline - std::min(absl::Seconds(2), (deadline - started) / 10);
  const bool dry = request.dry_run();
  if (!dry) {
    CF_ASSIGN_OR_RETURN(db::Result claimed,
                        pool_.Exec("UPDATE migration.sync_pairs SET runner = $2::uuid, lease_until = now() + "
                                   "make_interval(secs => $3) WHERE id = $1::uuid AND (lease_until IS NULL OR "
                                   "lease_until < now()) RETURNING 1",
                                   {pair.id(), runner_, std::to_string(absl::ToDoubleSeconds(options_.lease))}));
    if (claimed.empty()) {
      return absl::AbortedError(absl::StrCat("a run of sync pair ", pair.id(), " is going on"));
    }
  }
  v1::SyncRun run;
  run.set_dry_run(dry);
  *run.mutable_started() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(started));
  // Ends the run: records it on the pair (without its changes) and lets the
  // lease go.
  auto finish = [&](absl::Status status) -> absl::StatusOr<v1::SyncRun> {
    *run.mutable_ended() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(absl::Now()));
    if (!status.ok() && run.error().empty()) run.set_error(std::string(status.message()));
    if (dry) return status.ok() ? absl::StatusOr<v1::SyncRun>(run) : status;
    v1::SyncRun summary = run;
    summary.clear_changes();
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(summary, &json);
    absl::Status released =
        pool_
            .Exec("UPDATE migration.sync_pairs SET runner = NULL, lease_until = NULL, last_run = $3::jsonb, "
                  "next_run_at = CASE WHEN interval_ms > 0 THEN now() + interval_ms * interval '1 millisecond' END "
                  "WHERE id = $1::uuid AND runner = $2::uuid",
                  {pair.id(), runner_, json})
            .status();
    if (!released.ok()) core::LogWarn("sync run not recorded", {{"pair", pair.id()}, {"error", released.ToString()}});
    core::LogInfo("sync run ended", {{"pair", pair.id()},
                                     {"complete", run.complete() ? "true" : "false"},
                                     {"copied", std::to_string(run.copied())},
                                     {"deleted", std::to_string(run.deleted())},
                                     {"conflicts", std::to_string(run.conflicts())},
                                     {"failed", std::to_string(run.failed())},
                                     {"error", run.error()}});
    if (!status.ok()) return status;
    return run;
  };

  // 1. Both sides and the agreed listing.
  auto side1 = ListSide(storage_, pair.path1());
  if (!side1.ok()) return finish(core::Annotate(side1.status(), "listing path1"));
  auto side2 = ListSide(storage_, pair.path2());
  if (!side2.ok()) return finish(core::Annotate(side2.status(), "listing path2"));
  std::map<std::string, Agreed> agreed;
  {
    auto rows = pool_.Exec("SELECT key, sha256, version1, version2 FROM migration.sync_listing WHERE pair_id = "
                           "$1::uuid",
                           {pair.id()});
    if (!rows.ok()) return finish(rows.status());
    for (const auto& row : *rows) agreed[row.Text(0)] = {row.Text(1), row.Int(2), row.Int(3)};
  }
  std::set<std::string> keys;
  for (const auto& [k, e] : *side1) keys.insert(k);
  for (const auto& [k, e] : *side2) keys.insert(k);
  for (const auto& [k, a] : agreed) keys.insert(k);
  std::set<std::string> taken = keys;  // names a kept loser may not take

  // 2. The plan; keys that agree already but whose record is out of date are
  // recorded (upserts) or forgotten (both gone).
  std::vector<Planned> plan;
  std::vector<std::pair<std::string, Agreed>> record;
  std::vector<std::string> forget;
  int64_t deletes = 0;
  auto add = [&](const std::string& key, v1::SyncAction action, std::string reason, const Entry& source,
                 std::optional<Entry> target) {
    Planned p;
    p.change.set_key(key);
    p.change.set_action(action);
    p.change.set_reason(std::move(reason));
    if (IsCopy(action)) p.change.set_size(source.size);
    p.from = action == v1::SYNC_ACTION_COPY_TO_PATH2 || action == v1::SYNC_ACTION_DELETE_FROM_PATH1 ? 1 : 2;
    p.source = source;
    p.target = std::move(target);
    deletes += action == v1::SYNC_ACTION_DELETE_FROM_PATH1 || action == v1::SYNC_ACTION_DELETE_FROM_PATH2;
    plan.push_back(std::move(p));
  };
  for (const std::string& key : keys) {
    auto i1 = side1->find(key);
    auto i2 = side2->find(key);
    auto ia = agreed.find(key);
    const Entry* e1 = i1 == side1->end() ? nullptr : &i1->second;
    const Entry* e2 = i2 == side2->end() ? nullptr : &i2->second;
    const Agreed* was = ia == agreed.end() ? nullptr : &ia->second;
    auto opt = [](const Entry* e) { return e == nullptr ? std::nullopt : std::optional<Entry>(*e); };
    if (e1 != nullptr && e2 != nullptr && e1->sha256 == e2->sha256) {
      if (was == nullptr || was->sha256 != e1->sha256 || was->version1 != e1->version ||
          was->version2 != e2->version) {
        record.push_back({key, {e1->sha256, e1->version, e2->version}});
      }
      run.set_unchanged(run.unchanged() + 1);
      continue;
    }
    if (e1 == nullptr && e2 == nullptr) {
      forget.push_back(key);  // deleted on both sides
      continue;
    }
    const bool changed1 = was == nullptr ? e1 != nullptr : e1 == nullptr || e1->sha256 != was->sha256;
    const bool changed2 = was == nullptr ? e2 != nullptr : e2 == nullptr || e2->sha256 != was->sha256;
    if (changed1 && !changed2) {
      if (e1 == nullptr) {
        add(key, v1::SYNC_ACTION_DELETE_FROM_PATH2, "deleted on path1", *e2, opt(e2));
      } else {
        add(key, v1::SYNC_ACTION_COPY_TO_PATH2, e2 == nullptr ? "new on path1" : "changed on path1", *e1, opt(e2));
      }
    } else if (changed2 && !changed1) {
      if (e2 == nullptr) {
        add(key, v1::SYNC_ACTION_DELETE_FROM_PATH1, "deleted on path2", *e1, opt(e1));
      } else {
        add(key, v1::SYNC_ACTION_COPY_TO_PATH1, e1 == nullptr ? "new on path2" : "changed on path2", *e2, opt(e1));
      }
    } else if (e1 == nullptr) {
      add(key, v1::SYNC_ACTION_COPY_TO_PATH1, "deleted on path1 and changed on path2: the change is kept", *e2,
          std::nullopt);
    } else if (e2 == nullptr) {
      add(key, v1::SYNC_ACTION_COPY_TO_PATH2, "deleted on path2 and changed on path1: the change is kept", *e1,
          std::nullopt);
    } else {
      // Both changed, to different bytes.
      std::string why;
      const bool one = Path1Wins(pair.conflict_resolve(), *e1, *e2, &why);
      const std::string reason =
          absl::StrCat("conflict: ", was == nullptr ? "on both sides, different" : "changed on both sides", "; ",
                       why, " (path", one ? 1 : 2, ") wins");
      if (pair.conflict_loser() == v1::CONFLICT_LOSER_RENAME) {
        const std::string base = absl::StrCat(key, ".conflict-path", one ? 2 : 1);
        std::string renamed = base;
        for (int n = 2; taken.count(renamed) > 0; ++n) renamed = absl::StrCat(base, "-", n);
        taken.insert(renamed);
        Planned keep;
        keep.change.set_key(key);
        keep.change.set_action(v1::SYNC_ACTION_KEEP_LOSER);
        keep.change.set_reason(reason);
        keep.change.set_conflict(true);
        keep.change.set_renamed_to(renamed);
        keep.change.set_size(one ? e2->size : e1->size);
        keep.source = one ? *e2 : *e1;
        keep.from = one ? 2 : 1;
        plan.push_back(std::move(keep));
      }
      add(key, one ? v1::SYNC_ACTION_COPY_TO_PATH2 : v1::SYNC_ACTION_COPY_TO_PATH1, reason, one ? *e1 : *e2,
          one ? *e2 : *e1);
      plan.back().change.set_conflict(true);
      run.set_conflicts(run.conflicts() + 1);
    }
  }
  const int64_t tracked = static_cast<int64_t>(agreed.size());
  const bool too_many = deletes > 0 && deletes * 100 > int64_t{pair.max_delete_percent()} * std::max<int64_t>(tracked, 1);
  const std::string limit =
      absl::StrCat("the run would delete ", deletes, " of the ", tracked, " objects tracked, over max_delete_percent ",
                   pair.max_delete_percent(), "; see them with dry_run, or run with force");
  if (dry) {
    for (Planned& p : plan) *run.add_changes() = std::move(p.change);
    if (too_many && !request.force()) run.set_error(limit);
    run.set_complete(true);
    return finish(absl::OkStatus());
  }
  if (too_many && !request.force()) return finish(absl::FailedPreconditionError(limit));

  // 3. Bookkeeping for keys that agree, then the changes.
  auto upsert = [&](const std::string& key, const Agreed& a) {
    return pool_
        .Exec("INSERT INTO migration.sync_listing (pair_id, key, sha256, version1, version2) VALUES ($1::uuid, $2, "
              "$3, $4, $5) ON CONFLICT (pair_id, key) DO UPDATE SET sha256 = EXCLUDED.sha256, version1 = "
              "EXCLUDED.version1, version2 = EXCLUDED.version2",
              {pair.id(), key, a.sha256, std::to_string(a.version1), std::to_string(a.version2)})
        .status();
  };
  auto drop = [&](const std::string& key) {
    return pool_.Exec("DELETE FROM migration.sync_listing WHERE pair_id = $1::uuid AND key = $2", {pair.id(), key})
        .status();
  };
  for (const auto& [key, a] : record) {
    if (absl::Status s = upsert(key, a); !s.ok()) return finish(s);
  }
  for (const std::string& key : forget) {
    if (absl::Status s = drop(key); !s.ok()) return finish(s);
  }
  const v1::SyncLocation* location[3] = {nullptr, &pair.path1(), &pair.path2()};
  // Copies `source` (side `from`, at `key`) to side `to` at `to_key`, if the
  // destination is still at `expected` (0 = absent). Returns the copy.
  auto copy = [&](int from, const std::string& key, const Entry& source, int to, const std::string& to_key,
                  int64_t expected) -> absl::StatusOr<sv1::ObjectInfo> {
    sv1::CopyObjectRequest r;
    r.set_source_namespace(location[from]->namespace_());
    r.set_source_key(location[from]->prefix() + key);
    r.set_source_version(source.version);
    r.set_namespace_(location[to]->namespace_());
    r.set_key(location[to]->prefix() + to_key);
    r.set_backend(location[to]->backend());
    r.set_tier(location[to]->tier());
    r.set_if_destination_version(expected);
    const absl::Duration left = stop_at == absl::InfiniteFuture() ? options_.copy_timeout : deadline - absl::Now();
    return storage_.CopyObject(r, std::min(options_.copy_timeout, left), nullptr);
  };
  absl::Time renewed = absl::Now();
  std::set<std::string> kept_failed;  // conflicts whose loser could not be kept
  for (Planned& p : plan) {
    if (stopping_ || cancelled() || absl::Now() >= stop_at) {
      run.set_error(stopping_     ? "stopped: the service is shutting down"
                    : cancelled() ? "stopped: the caller went away"
                                  : "stopped at the deadline");
      break;
    }
    if (absl::Now() - renewed > options_.lease / 3) {
      auto kept = pool_.Exec("UPDATE migration.sync_pairs SET lease_until = now() + make_interval(secs => $3) WHERE "
                             "id = $1::uuid AND runner = $2::uuid RETURNING 1",
                             {pair.id(), runner_, std::to_string(absl::ToDoubleSeconds(options_.lease))});
      if (!kept.ok() || kept->empty()) {
        run.set_error("stopped: the run's lease was lost");
        break;
      }
      renewed = absl::Now();
    }
    v1::SyncChange& c = p.change;
    const std::string& key = c.key();
    absl::Status done;
    switch (c.action()) {
      case v1::SYNC_ACTION_COPY_TO_PATH1:
      case v1::SYNC_ACTION_COPY_TO_PATH2: {
        const int to = 3 - p.from;
        if (c.conflict() && kept_failed.count(key) > 0) {
          done = absl::FailedPreconditionError("the loser could not be kept, so it is not overwritten");
          break;
        }
        auto made = copy(p.from, key, p.source, to, key, p.target.has_value() ? p.target->version : 0);
        done = made.status();
        if (made.ok()) {
          run.set_copied(run.copied() + 1);
          run.set_bytes_copied(run.bytes_copied() + made->size());
          done = upsert(key, to == 2 ? Agreed{p.source.sha256, p.source.version, made->version()}
                                     : Agreed{p.source.sha256, made->version(), p.source.version});
        }
        break;
      }
      case v1::SYNC_ACTION_DELETE_FROM_PATH1:
      case v1::SYNC_ACTION_DELETE_FROM_PATH2: {
        const int at = p.from;
        done = storage_.Delete(location[at]->namespace_(), location[at]->prefix() + key, p.source.version);
        if (absl::IsNotFound(done)) done = absl::OkStatus();  // gone already
        if (done.ok()) {
          run.set_deleted(run.deleted() + 1);
          done = drop(key);
        }
        break;
      }
      case v1::SYNC_ACTION_KEEP_LOSER: {
        const int loser = p.from;
        auto here = copy(loser, key, p.source, loser, c.renamed_to(), 0);
        done = here.status();
        if (here.ok()) {
          auto there = copy(loser, key, p.source, 3 - loser, c.renamed_to(), 0);
          done = there.status();
          if (there.ok()) {
            run.set_bytes_copied(run.bytes_copied() + here->size() + there->size());
            done = upsert(c.renamed_to(), loser == 1 ? Agreed{p.source.sha256, here->version(), there->version()}
                                                     : Agreed{p.source.sha256, there->version(), here->version()});
          }
        }
        break;
      }
      default:
        done = absl::InternalError("unknown sync action");
    }
    c.set_done(done.ok());
    if (!done.ok() && c.action() == v1::SYNC_ACTION_KEEP_LOSER) kept_failed.insert(key);
    if (!done.ok()) {
      c.set_error(absl::IsAborted(done) ? absl::StrCat("changed during the run (the next run takes it up): ",
                                                       done.message())
                                        : std::string(done.message()));
      run.set_failed(run.failed() + 1);
      if (run.error().empty()) run.set_error(absl::StrCat(key, ": ", c.error()));
      if (absl::IsUnavailable(done) || absl::IsDeadlineExceeded(done)) {
        *run.add_changes() = c;
        run.set_error(absl::StrCat("stopped: ", key, ": ", done.message()));
        break;
      }
    }
    *run.add_changes() = c;
  }
  run.set_complete(run.failed() == 0 && run.changes_size() == static_cast<int>(plan.size()));
  if (!run.complete()) {
    // The changes not started, for the report.
    for (size_t i = static_cast<size_t>(run.changes_size()); i < plan.size(); ++i) {
      v1::SyncChange* c = run.add_changes();
      *c = plan[i].change;
      c->set_error("not started");
    }
  } else {
    run.clear_error();
  }
  return finish(absl::OkStatus());
}

}  // namespace cloudflux::migration
