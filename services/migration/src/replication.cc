#include "replication.h"
#include "ids.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/names.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/events/apply_claimed.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/storage/v1/events.pb.h"

namespace cloudflux::migration {

namespace v1 = cloudflux::migration::v1;
namespace sv1 = cloudflux::storage::v1;
using google::protobuf::util::TimeUtil;

namespace {

constexpr int kPageSize = 1000;

constexpr char kRuleQuery[] =
    "SELECT r.id, r.namespace, r.prefix, r.backend, r.tier, r.dropping, r.objects_copied, r.bytes_copied, "
    "(extract(epoch FROM r.created_at) * 1000000)::bigint, (extract(epoch FROM r.last_full_sync) * 1000000)::bigint, "
    "r.full_sync_token IS NOT NULL, (SELECT count(*) FROM migration.replication_queue q WHERE q.rule_id = r.id), "
    "(SELECT (extract(epoch FROM min(q.queued_at)) * 1000000)::bigint FROM migration.replication_queue q WHERE "
    "q.rule_id = r.id), (SELECT count(*) FROM migration.replication_queue q WHERE q.rule_id = r.id AND "
    "q.last_error <> ''), coalesce((SELECT q.key || ': ' || q.last_error FROM migration.replication_queue q WHERE "
    "q.rule_id = r.id AND q.last_error <> '' ORDER BY q.retry_at DESC LIMIT 1), '') FROM "
    "migration.replication_rules r ";

v1::ReplicationRule RuleFromRow(const db::Row& row) {
  v1::ReplicationRule r;
  r.set_id(row.Text(0));
  r.set_namespace_(row.Text(1));
  r.set_prefix(row.Text(2));
  r.set_backend(row.Text(3));
  r.set_tier(static_cast<cloudflux::common::v1::StorageTier>(row.Int(4)));
  r.set_dropping(row.Bool(5));
  *r.mutable_created() = TimeUtil::MicrosecondsToTimestamp(row.Int(8));
  v1::ReplicationStatus* s = r.mutable_status();
  s->set_objects_copied(row.Int(6));
  s->set_bytes_copied(row.Int(7));
  if (!row.IsNull(9)) *s->mutable_last_full_sync() = TimeUtil::MicrosecondsToTimestamp(row.Int(9));
  s->set_full_sync_running(row.Bool(10));
  s->set_pending(row.Int(11));
  if (!row.IsNull(12)) *s->mutable_oldest_pending() = TimeUtil::MicrosecondsToTimestamp(row.Int(12));
  s->set_failing(row.Int(13));
  s->set_last_error(row.Text(14));
  return r;
}

absl::StatusOr<std::string> RuleId(const std::string& id) { return CanonicalId(id, "a replication rule"); }

// Queues keys of `ns` for every rule (not being dropped) that covers them;
// a key already queued is queued again (generation + 1), so that a worker
// busy with an older state of it leaves it for another round.
absl::Status Enqueue(db::Transaction& tx, const std::vector<std::string>& ns, const std::vector<std::string>& keys,
                     const std::string& only_rule = "") {
  if (keys.empty()) return absl::OkStatus();
  return tx
      .Exec("INSERT INTO migration.replication_queue AS q (rule_id, key) SELECT DISTINCT r.id, u.key FROM "
            "unnest($1::text[], $2::text[]) AS u(ns, key) JOIN migration.replication_rules r ON r.namespace = u.ns "
            "AND starts_with(u.key, r.prefix) AND NOT r.dropping AND ($3 = '' OR r.id::text = $3) ON CONFLICT "
            "(rule_id, key) DO UPDATE SET generation = q.generation + 1, retry_at = now(), attempts = 0",
            {db::ArrayLiteral(ns), db::ArrayLiteral(keys), only_rule})
      .status();
}

}  // namespace

void ReplicationLoop::Start() {
  stop_ = false;
  for (int i = 0; i < options_.workers; ++i) {
    workers_.emplace_back([this] {
      while (!stop_) {
        auto ran = RunOne();
        if (!ran.ok()) {
          core::LogWarn("replication worker", {{"error", std::string(ran.status().message())}});
        }
        if (!ran.ok() || !*ran) {
          for (int t = 0; t < 5 && !stop_; ++t) absl::SleepFor(absl::Milliseconds(40));
        }
      }
    });
  }
}

void ReplicationLoop::Stop() {
  stop_ = true;
  for (auto& w : workers_) w.join();
  workers_.clear();
}

absl::StatusOr<events::IngestCounts> ReplicationLoop::ApplyMessages(
    const std::vector<events::ConsumedMessage>& messages) {
  using Object = std::pair<std::string, std::string>;  // namespace, key
  // Only events of objects some rule covers are claimed and queued: most
  // object events concern no rule, and need no row. A rule created after
  // this read compares its whole prefix when it starts. `covered` is the
  // test Enqueue's join applies (namespace equal, key under the prefix, not
  // dropping): a prefilter, the join stays the rule.
  CF_ASSIGN_OR_RETURN(db::Result rules,
                      pool_.Exec("SELECT namespace, prefix FROM migration.replication_rules WHERE NOT dropping"));
  auto covered = [&](const std::string& ns, const std::string& key) {
    return std::any_of(rules.begin(), rules.end(), [&](const db::Row& r) {
      return r.Text(0) == ns && absl::StartsWith(key, r.Text(1));
    });
  };
  return events::ApplyClaimed<Object>(
      pool_, "migration", "replication", messages,
      [&](const events::v1::EventEnvelope& e) -> std::optional<Object> {
        sv1::ObjectCreated created;
        sv1::ObjectRelocated relocated;
        std::optional<Object> object;
        if (e.payload().UnpackTo(&created)) object = Object{created.object().namespace_(), created.object().key()};
        if (e.payload().UnpackTo(&relocated)) object = Object{relocated.namespace_(), relocated.key()};
        // Deletions need nothing: the replica goes with its version.
        if (!object.has_value() || !covered(object->first, object->second)) return std::nullopt;
        return object;
      },
      [](db::Transaction& tx, const std::vector<Object>& objects) {
        std::vector<std::string> ns, keys;
        for (const auto& [n, k] : objects) {
          ns.push_back(n);
          keys.push_back(k);
        }
        return Enqueue(tx, ns, keys);
      });
}

absl::StatusOr<int> ReplicationLoop::RunFullSyncRound() {
  CF_ASSIGN_OR_RETURN(db::Result due,
                      pool_.Exec("SELECT id, namespace, prefix, coalesce(full_sync_token, ''), dropping FROM "
                                 "migration.replication_rules WHERE full_sync_token IS NOT NULL OR full_sync_due <= "
                                 "now() ORDER BY full_sync_due"));
  int queued = 0;
  for (const auto& rule : due) {
    const std::string id = rule.Text(0), ns = rule.Text(1), prefix = rule.Text(2);
    const bool dropping = rule.Bool(4);
    std::string token = rule.Text(3);
    bool done = false;
    for (int page = 0; page < options_.pages_per_round && !done; ++page) {
      auto listed = storage_.List(ns, prefix, token, kPageSize);
      if (!listed.ok()) {
        core::LogWarn("replication: listing failed; the comparison goes on next round",
                      {{"rule", id}, {"error", std::string(listed.status().message())}});
        break;
      }
      std::vector<std::string> namespaces, keys;
      for (const auto& o : listed->objects()) {
        namespaces.push_back(ns);
        keys.push_back(o.key());
      }
      token = listed->page().next_page_token();
      done = token.empty();
      CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
        if (dropping) {
          // Every replica the rule made is removed.
          CF_RETURN_IF_ERROR(tx.Exec("INSERT INTO migration.replication_queue AS q (rule_id, key) SELECT $1::uuid, "
                                     "k FROM (SELECT DISTINCT unnest($2::text[])) AS u(k) ON CONFLICT (rule_id, key) DO UPDATE SET "
                                     "generation = q.generation + 1, retry_at = now(), attempts = 0",
                                     {id, db::ArrayLiteral(keys)})
                                 .status());
        } else {
          CF_RETURN_IF_ERROR(Enqueue(tx, namespaces, keys, id));
        }
        if (done) {
          return tx
              .Exec("UPDATE migration.replication_rules SET full_sync_token = NULL, last_full_sync = now(), "
                    "full_sync_due = now() + make_interval(secs => $2) WHERE id = $1",
                    {id, std::to_string(absl::ToDoubleSeconds(options_.full_sync_every))})
              .status();
        }
        return tx.Exec("UPDATE migration.replication_rules SET full_sync_token = $2 WHERE id = $1", {id, token})
            .status();
      }));
      queued += static_cast<int>(keys.size());
    }
  }
  // A dropped rule whose walk has ended and whose replicas are all gone.
  CF_RETURN_IF_ERROR(pool_
                         .Exec("DELETE FROM migration.replication_rules r WHERE r.dropping AND r.full_sync_token "
                               "IS NULL AND r.last_full_sync IS NOT NULL AND r.full_sync_due > now() AND NOT "
                               "EXISTS (SELECT 1 FROM migration.replication_queue q WHERE q.rule_id = r.id)")
                         .status());
  return queued;
}

absl::StatusOr<bool> ReplicationLoop::RunOne() {
  CF_ASSIGN_OR_RETURN(
      db::Result claimed,
      pool_.Exec("UPDATE migration.replication_queue q SET lease_until = now() + make_interval(secs => $1), "
                 "attempts = q.attempts + 1 FROM (SELECT rule_id, key FROM migration.replication_queue WHERE "
                 "retry_at <= now() AND (lease_until IS NULL OR lease_until < now()) ORDER BY retry_at LIMIT 1 FOR "
                 "UPDATE SKIP LOCKED) c, migration.replication_rules r WHERE q.rule_id = c.rule_id AND q.key = "
                 "c.key AND r.id = q.rule_id RETURNING q.rule_id, q.key, q.generation, q.attempts, r.namespace, "
                 "r.backend, r.tier, r.dropping",
                 {std::to_string(absl::ToDoubleSeconds(options_.lease))}));
  if (claimed.empty()) return false;
  const db::Row& e = claimed[0];
  const std::string rule = e.Text(0), key = e.Text(1), generation = e.Text(2), ns = e.Text(4), backend = e.Text(5);
  const int64_t attempts = e.Int(3);
  const auto tier = static_cast<cloudflux::common::v1::StorageTier>(e.Int(6));
  bool unchanged = true;
  int64_t bytes = 0;
  absl::Status done;
  if (e.Bool(7)) {
    done = storage_.DeleteReplica(ns, key, backend);
  } else {
    auto made = storage_.Replicate(ns, key, backend, tier, options_.copy_timeout, &unchanged);
    done = made.status();
    if (made.ok()) bytes = made->size();
  }
  // Nothing more to do: the object is gone (its replicas went with it), or
  // lives on the rule's backend itself now.
  const bool settled = done.ok() || absl::IsNotFound(done) ||
                       (absl::IsInvalidArgument(done) && !e.Bool(7) &&
                        absl::StrContains(done.message(), "other than the object's own"));
  if (settled) {
    CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
      CF_RETURN_IF_ERROR(tx.Exec("DELETE FROM migration.replication_queue WHERE rule_id = $1 AND key = $2 AND "
                                 "generation = $3",
                                 {rule, key, generation})
                             .status());
      CF_RETURN_IF_ERROR(tx.Exec("UPDATE migration.replication_queue SET lease_until = NULL WHERE rule_id = $1 AND "
                                 "key = $2",
                                 {rule, key})
                             .status());
      if (!done.ok() || unchanged) return absl::OkStatus();
      return tx
          .Exec("UPDATE migration.replication_rules SET objects_copied = objects_copied + 1, bytes_copied = "
                "bytes_copied + $2 WHERE id = $1",
                {rule, std::to_string(bytes)})
          .status();
    }));
    return true;
  }
  // Retried: transient failures soon, others (a backend not configured, an
  // archived object) every few minutes, in case an operator fixes them.
  const double backoff = core::IsRetryable(done) ? std::min(300.0, 1.0 * (1 << std::min<int64_t>(attempts - 1, 9)))
                                                 : 300.0;
  core::LogWarn("replication attempt failed", {{"rule", rule},
                                               {"object", absl::StrCat(ns, "/", key)},
                                               {"attempt", std::to_string(attempts)},
                                               {"error", std::string(done.message())}});
  CF_RETURN_IF_ERROR(pool_
                         .Exec("UPDATE migration.replication_queue SET lease_until = NULL, last_error = $4, "
                               "retry_at = now() + make_interval(secs => $5) WHERE rule_id = $1 AND key = $2 AND "
                               "generation = $3",
                               {rule, key, generation, std::string(done.message()), std::to_string(backoff)})
                         .status());
  CF_RETURN_IF_ERROR(pool_
                         .Exec("UPDATE migration.replication_queue SET lease_until = NULL WHERE rule_id = $1 AND "
                               "key = $2",
                               {rule, key})
                         .status());
  return true;
}

absl::StatusOr<v1::ReplicationRule> ReplicationLoop::Create(const v1::ReplicationRule& r) {
  CF_RETURN_IF_ERROR(core::ValidateNamespace(r.namespace_()));
  CF_RETURN_IF_ERROR(core::ValidatePrefix(r.prefix()));
  if (!cloudflux::common::v1::StorageTier_IsValid(r.tier())) return absl::InvalidArgumentError("unknown tier");
  if (r.backend().empty()) return absl::InvalidArgumentError("a rule needs the backend its replicas go to");
  CF_ASSIGN_OR_RETURN(std::vector<sv1::Backend> backends, storage_.Backends());
  if (std::none_of(backends.begin(), backends.end(), [&](const sv1::Backend& b) { return b.name() == r.backend(); })) {
    return absl::InvalidArgumentError(absl::StrCat("backend '", r.backend(), "' is not configured"));
  }
  const std::string id = core::NewId();
  auto inserted = pool_.Exec(
      "INSERT INTO migration.replication_rules (id, namespace, prefix, backend, tier) VALUES ($1::uuid, $2, $3, $4, "
      "$5) ON CONFLICT (namespace, prefix, backend) DO NOTHING RETURNING id",
      {id, r.namespace_(), r.prefix(), r.backend(), std::to_string(static_cast<int>(r.tier()))});
  CF_RETURN_IF_ERROR(inserted.status());
  if (inserted->empty()) {
    return absl::AlreadyExistsError(absl::StrCat("a rule already replicates ", r.namespace_(), "/", r.prefix(),
                                                 " to '", r.backend(), "'"));
  }
  return Get(id);
}

absl::StatusOr<v1::ReplicationRule> ReplicationLoop::Get(const std::string& id) {
  CF_ASSIGN_OR_RETURN(std::string uuid, RuleId(id));
  CF_ASSIGN_OR_RETURN(db::Result rows, pool_.Exec(absl::StrCat(kRuleQuery, "WHERE r.id = $1::uuid"), {uuid}));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("replication rule ", uuid, " not found"));
  return RuleFromRow(rows[0]);
}

absl::StatusOr<v1::ListReplicationRulesResponse> ReplicationLoop::List() {
  CF_ASSIGN_OR_RETURN(db::Result rows, pool_.Exec(absl::StrCat(kRuleQuery, "ORDER BY r.namespace, r.prefix, r.backend")));
  v1::ListReplicationRulesResponse out;
  for (const auto& row : rows) *out.add_rules() = RuleFromRow(row);
  return out;
}

absl::StatusOr<v1::ReplicationRule> ReplicationLoop::Sync(const std::string& id) {
  CF_ASSIGN_OR_RETURN(std::string uuid, RuleId(id));
  CF_ASSIGN_OR_RETURN(db::Result rows, pool_.Exec("UPDATE migration.replication_rules SET full_sync_due = now() "
                                                  "WHERE id = $1::uuid AND NOT dropping RETURNING 1",
                                                  {uuid}));
  if (rows.empty()) {
    CF_RETURN_IF_ERROR(Get(uuid).status());
    return absl::FailedPreconditionError("the rule is being dropped");
  }
  return Get(uuid);
}

absl::StatusOr<v1::ReplicationRule> ReplicationLoop::Delete(const std::string& id, bool drop_replicas) {
  CF_ASSIGN_OR_RETURN(std::string uuid, RuleId(id));
  CF_ASSIGN_OR_RETURN(v1::ReplicationRule rule, Get(uuid));
  if (!drop_replicas) {
    CF_RETURN_IF_ERROR(pool_.Exec("DELETE FROM migration.replication_rules WHERE id = $1::uuid", {uuid}).status());
    return rule;
  }
  // The queue is emptied of pending copies; a fresh walk queues a removal
  // for every object under the prefix.
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_RETURN_IF_ERROR(tx.Exec("UPDATE migration.replication_rules SET dropping = true, full_sync_token = NULL, "
                               "last_full_sync = NULL, full_sync_due = now() WHERE id = $1::uuid",
                               {uuid})
                           .status());
    return tx.Exec("DELETE FROM migration.replication_queue WHERE rule_id = $1::uuid", {uuid}).status();
  }));
  return Get(uuid);
}

}  // namespace cloudflux::migration
