#include "placement.h"
#include "schedule.h"

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/classification/v1/events.pb.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/names.h"
#include "cloudflux/core/status.h"
#include "cloudflux/events/apply_claimed.h"
#include "cloudflux/events/outbox.h"

namespace cloudflux::migration {

namespace v1 = cloudflux::migration::v1;
namespace cv1 = cloudflux::classification::v1;

namespace {

constexpr char kPolicyQuery[] =
    "SELECT p.namespace, p.enabled, p.daily_bytes, p.daily_cost, p.window_start_hour, p.window_end_hour, "
    "p.batch_objects, (SELECT coalesce(sum(j.planned_bytes), 0) FROM migration.jobs j WHERE "
    "j.placement_namespace = p.namespace AND j.created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME "
    "ZONE 'UTC'), (SELECT coalesce(sum(j.planned_cost), 0) FROM migration.jobs j WHERE j.placement_namespace = "
    "p.namespace AND j.created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), "
    "(SELECT count(*) FROM migration.decisions d WHERE d.namespace = p.namespace) FROM migration.placement_policies p ";

v1::PlacementPolicy PolicyFromRow(const db::Row& r) {
  v1::PlacementPolicy p;
  p.set_namespace_(r.Text(0));
  p.set_enabled(r.Bool(1));
  p.set_daily_bytes(r.Int(2));
  p.set_daily_cost(r.Double(3));
  p.set_window_start_hour(static_cast<int32_t>(r.Int(4)));
  p.set_window_end_hour(static_cast<int32_t>(r.Int(5)));
  p.set_batch_objects(static_cast<int32_t>(r.Int(6)));
  p.set_bytes_today(r.Int(7));
  p.set_cost_today(r.Double(8));
  p.set_pending_decisions(r.Int(9));
  return p;
}

}  // namespace

absl::StatusOr<events::IngestCounts> PlacementLoop::ApplyMessages(const std::vector<events::ConsumedMessage>& messages) {
  return events::ApplyClaimed<cv1::TierDecided>(
      pool_, "migration", "placement", messages,
      [](const events::v1::EventEnvelope& e) -> std::optional<cv1::TierDecided> {
        cv1::TierDecided d;
        if (!e.payload().UnpackTo(&d)) return std::nullopt;
        return d;
      },
      [](db::Transaction& tx, const std::vector<cv1::TierDecided>& decided) -> absl::Status {
        // The newest decision per object (later in the batch wins).
        std::map<std::pair<std::string, std::string>, const cv1::TierDecided*> newest;
        for (const cv1::TierDecided& d : decided) newest[{d.namespace_(), d.key()}] = &d;
        std::vector<std::string> ns, key, version, backend, tier;
        for (const auto& [id, d] : newest) {
          ns.push_back(d->namespace_());
          key.push_back(d->key());
          version.push_back(std::to_string(d->version()));
          backend.push_back(d->to_backend().empty() ? d->from_backend() : d->to_backend());
          tier.push_back(std::to_string(d->to_tier()));
        }
        // Kept only for namespaces whose policy is enabled.
        return tx
            .Exec("INSERT INTO migration.decisions AS d (namespace, key, version, to_backend, to_tier) SELECT u.* FROM "
                  "unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::smallint[]) AS u(ns, key, version, "
                  "backend, tier) JOIN migration.placement_policies p ON p.namespace = u.ns AND p.enabled "
                  "ON CONFLICT (namespace, key) DO UPDATE SET version = EXCLUDED.version, to_backend = "
                  "EXCLUDED.to_backend, to_tier = EXCLUDED.to_tier, decided_at = now() WHERE EXCLUDED.version >= "
                  "d.version",
                  {db::ArrayLiteral(ns), db::ArrayLiteral(key), db::ArrayLiteral(version), db::ArrayLiteral(backend),
                   db::ArrayLiteral(tier)})
            .status();
      });
}

absl::StatusOr<int> PlacementLoop::RunOnce() {
  CF_ASSIGN_OR_RETURN(db::Result r, pool_.Exec(absl::StrCat(kPolicyQuery, "WHERE p.enabled ORDER BY p.namespace")));
  int started = 0;
  for (const auto& row : r) {
    v1::PlacementPolicy policy = PolicyFromRow(row);
    auto n = RunPolicy(policy);
    if (!n.ok()) {
      core::LogWarn("placement round failed",
                    {{"namespace", policy.namespace_()}, {"error", std::string(n.status().message())}});
      continue;
    }
    started += *n;
  }
  return started;
}

absl::StatusOr<int> PlacementLoop::RunPolicy(const v1::PlacementPolicy& policy) {
  if (policy.pending_decisions() == 0 || !InHourWindow(policy.window_start_hour(), policy.window_end_hour(), clock_.Now())) return 0;
  const int batch = policy.batch_objects() > 0 ? policy.batch_objects() : 1000;
  CF_ASSIGN_OR_RETURN(db::Result waiting,
                      pool_.Exec("SELECT key, version, to_backend, to_tier FROM migration.decisions WHERE namespace = "
                                 "$1 ORDER BY decided_at, key LIMIT $2",
                                 {policy.namespace_(), std::to_string(batch)}));
  // One migration per target.
  std::map<std::pair<std::string, int64_t>, std::vector<std::pair<std::string, int64_t>>> by_target;
  for (const auto& w : waiting) by_target[{w.Text(2), w.Int(3)}].push_back({w.Text(0), w.Int(1)});
  int started = 0;
  int64_t bytes_left = policy.daily_bytes() > 0 ? policy.daily_bytes() - policy.bytes_today() : 0;
  double cost_left = policy.daily_cost() > 0 ? policy.daily_cost() - policy.cost_today() : 0;
  for (auto& [target, objects] : by_target) {
    if ((policy.daily_bytes() > 0 && bytes_left <= 0) || (policy.daily_cost() > 0 && cost_left <= 0)) break;
    // A batch over what is left of a budget is halved until it fits.
    for (size_t take = objects.size(); take > 0; take /= 2) {
      v1::CreateMigrationRequest request;
      request.set_description(absl::StrCat("placement: ", policy.namespace_()));
      request.mutable_target()->set_backend(target.first);
      request.mutable_target()->set_tier(static_cast<cloudflux::common::v1::StorageTier>(target.second));
      for (size_t i = 0; i < take; ++i) {
        auto* o = request.mutable_selection()->add_objects();
        o->set_namespace_(policy.namespace_());
        o->set_key(objects[i].first);
      }
      if (policy.daily_bytes() > 0) request.set_max_bytes(bytes_left);
      if (policy.daily_cost() > 0) request.set_max_cost(cost_left);
      auto job = core_.Create(request,
                              {.origin = "placement", .placement_namespace = policy.namespace_(), .lenient = true});
      bool over_budget = job.status().code() == absl::StatusCode::kFailedPrecondition &&
                         (absl::StrContains(job.status().message(), "max_bytes") ||
                          absl::StrContains(job.status().message(), "max_cost"));
      if (over_budget && take > 1) continue;
      if (over_budget) break;  // not even one object fits today
      // Started, or nothing to do for them (already there, deleted): the
      // decisions are settled either way; other errors keep them waiting.
      if (!job.ok() && job.status().code() != absl::StatusCode::kFailedPrecondition) return job.status();
      if (!job.ok()) {
        core::LogInfo("placement decisions settled without a migration",
                      {{"namespace", policy.namespace_()},
                       {"decisions", std::to_string(take)},
                       {"why", std::string(job.status().message())}});
      }
      std::vector<std::string> keys, versions;
      for (size_t i = 0; i < take; ++i) {
        keys.push_back(objects[i].first);
        versions.push_back(std::to_string(objects[i].second));
      }
      CF_RETURN_IF_ERROR(pool_.Exec("DELETE FROM migration.decisions d USING unnest($2::text[], $3::bigint[]) AS "
                                    "u(key, version) WHERE d.namespace = $1 AND d.key = u.key AND d.version <= "
                                    "u.version",
                                    {policy.namespace_(), db::ArrayLiteral(keys), db::ArrayLiteral(versions)})
                             .status());
      if (job.ok()) {
        ++started;
        bytes_left -= job->estimate().bytes();
        cost_left -= job->estimate().total_move_cost();
      }
      break;
    }
  }
  return started;
}

absl::StatusOr<v1::PlacementPolicy> PlacementLoop::Set(const v1::PlacementPolicy& p) {
  CF_RETURN_IF_ERROR(core::ValidateNamespace(p.namespace_()));
  if (p.daily_bytes() < 0 || p.daily_cost() < 0 || p.batch_objects() < 0 || p.batch_objects() > kMaxPlannedObjects) {
    return absl::InvalidArgumentError(
        absl::StrCat("budgets must not be negative and batch_objects must be 0..", kMaxPlannedObjects));
  }
  CF_RETURN_IF_ERROR(CheckWindow(p.window_start_hour(), p.window_end_hour()));
  CF_RETURN_IF_ERROR(
      pool_
          .Exec("INSERT INTO migration.placement_policies (namespace, enabled, daily_bytes, daily_cost, "
                "window_start_hour, window_end_hour, batch_objects) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT "
                "(namespace) DO UPDATE SET enabled = EXCLUDED.enabled, daily_bytes = EXCLUDED.daily_bytes, "
                "daily_cost = EXCLUDED.daily_cost, window_start_hour = EXCLUDED.window_start_hour, "
                "window_end_hour = EXCLUDED.window_end_hour, batch_objects = EXCLUDED.batch_objects, updated_at = now()",
                {p.namespace_(), p.enabled() ? "true" : "false", std::to_string(p.daily_bytes()),
                 std::to_string(p.daily_cost()), std::to_string(p.window_start_hour()),
                 std::to_string(p.window_end_hour()), std::to_string(p.batch_objects())})
          .status());
  if (!p.enabled()) {  // a disabled namespace's decisions are not kept
    CF_RETURN_IF_ERROR(pool_.Exec("DELETE FROM migration.decisions WHERE namespace = $1", {p.namespace_()}).status());
  }
  return Get(p.namespace_());
}

absl::StatusOr<v1::PlacementPolicy> PlacementLoop::Get(const std::string& ns) {
  CF_RETURN_IF_ERROR(core::ValidateNamespace(ns));
  CF_ASSIGN_OR_RETURN(db::Result r, pool_.Exec(absl::StrCat(kPolicyQuery, "WHERE p.namespace = $1"), {ns}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no placement policy for namespace '", ns, "'"));
  return PolicyFromRow(r[0]);
}

absl::StatusOr<v1::ListPlacementPoliciesResponse> PlacementLoop::List() {
  CF_ASSIGN_OR_RETURN(db::Result r, pool_.Exec(absl::StrCat(kPolicyQuery, "ORDER BY p.namespace")));
  v1::ListPlacementPoliciesResponse out;
  for (const auto& row : r) *out.add_policies() = PolicyFromRow(row);
  return out;
}

absl::Status PlacementLoop::Delete(const std::string& ns) {
  CF_RETURN_IF_ERROR(core::ValidateNamespace(ns));
  return pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result r,
                        tx.Exec("DELETE FROM migration.placement_policies WHERE namespace = $1 RETURNING 1", {ns}));
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no placement policy for namespace '", ns, "'"));
    return tx.Exec("DELETE FROM migration.decisions WHERE namespace = $1", {ns}).status();
  });
}

}  // namespace cloudflux::migration
