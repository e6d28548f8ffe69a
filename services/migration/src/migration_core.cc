#include "migration_core.h"
#include "ids.h"
#include "schedule.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <set>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/names.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/migration/v1/events.pb.h"
#include "cloudflux/pricing/cost_model.h"
#include "cloudflux/server/paging.h"

namespace cloudflux::migration {

namespace v1 = cloudflux::migration::v1;
namespace sv1 = cloudflux::storage::v1;
using cloudflux::common::v1::StorageTier;
using google::protobuf::util::TimeUtil;

namespace {

constexpr int kPageSize = 1000;

// A task as the per-object report shows it (ObjectFromRow).
constexpr char kObjectColumns[] =
    "namespace, key, version, size, from_backend, from_tier, to_backend, to_tier, outcome, reason, bytes_moved, "
    "sha256, attempts, bytes_resumed, coalesce(to_namespace, ''), verified";
constexpr int kObjectColumnCount = 16;  // columns after them start here

// The pause before a task whose `failures`-th counted attempt failed
// transiently is tried again: 0.5 s, doubling, at most 30 s (a storage
// adapter restarting takes seconds), each +-25 % so that copies refused
// together do not come back together.
absl::Duration RetryPause(int64_t failures) {
  thread_local absl::BitGen random;
  const absl::Duration base =
      std::min(absl::Seconds(30), absl::Milliseconds(500) * (int64_t{1} << std::clamp<int64_t>(failures - 1, 0, 10)));
  return base * absl::Uniform(random, 0.75, 1.25);
}

// One failed attempt of a task, for its report's watchers (task_failures).
absl::Status RecordFailure(db::Transaction& tx, const std::string& job, const std::string& ns, const std::string& key,
                           int64_t attempt, v1::ObjectOutcome outcome, const std::string& reason) {
  return tx.Exec("INSERT INTO migration.task_failures (job_id, namespace, key, attempt, outcome, reason) VALUES "
                 "($1::uuid, $2, $3, $4, $5::smallint, $6)",
                 {job, ns, key, std::to_string(attempt), std::to_string(outcome), reason})
      .status();
}

v1::MigrationObject ObjectFromRow(const db::Row& row) {
  v1::MigrationObject o;
  o.set_namespace_(row.Text(0));
  o.set_key(row.Text(1));
  o.set_version(row.Int(2));
  o.set_size(row.Int(3));
  o.set_from_backend(row.Text(4));
  o.set_from_tier(static_cast<StorageTier>(row.Int(5)));
  o.set_to_backend(row.Text(6));
  o.set_to_tier(static_cast<StorageTier>(row.Int(7)));
  o.set_outcome(static_cast<v1::ObjectOutcome>(row.Int(8)));
  o.set_reason(row.Text(9));
  o.set_bytes_moved(row.Int(10));
  o.set_sha256(row.Text(11));
  o.set_attempts(static_cast<int32_t>(row.Int(12)));
  o.set_bytes_resumed(row.Int(13));
  o.set_to_namespace(row.Text(14));
  o.set_verified(row.Bool(15));
  return o;
}

absl::StatusOr<std::string> CheckId(const std::string& id) { return CanonicalId(id, "a migration"); }

absl::Status CheckSelection(const v1::Selection& s) {
  if (s.objects_size() > 0 && (!s.namespace_().empty() || !s.prefix().empty())) {
    return absl::InvalidArgumentError("select either objects or a namespace (and prefix), not both");
  }
  if (s.objects_size() == 0 && s.namespace_().empty()) {
    return absl::InvalidArgumentError("an empty selection: give objects, or a namespace (and prefix)");
  }
  if (s.objects_size() > kMaxPlannedObjects) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxPlannedObjects, " objects per migration"));
  }
  for (const auto& o : s.objects()) {
    CF_RETURN_IF_ERROR(core::ValidateNamespace(o.namespace_()));
    CF_RETURN_IF_ERROR(core::ValidateKey(o.key()));
  }
  if (!s.namespace_().empty()) {
    CF_RETURN_IF_ERROR(core::ValidateNamespace(s.namespace_()));
    CF_RETURN_IF_ERROR(core::ValidatePrefix(s.prefix()));
  }
  if (!cloudflux::common::v1::StorageTier_IsValid(s.tier())) return absl::InvalidArgumentError("unknown tier filter");
  if (s.min_size() < 0 || s.max_size() < 0) return absl::InvalidArgumentError("sizes must not be negative");
  if (s.max_size() > 0 && s.max_size() < s.min_size()) {
    return absl::InvalidArgumentError("max_size is below min_size");
  }
  return absl::OkStatus();
}

// Whether a job in this mode reads what it copies back from the target.
bool ReadsBack(v1::VerifyMode mode) {
  return mode == v1::VERIFY_MODE_TRANSFERRED || mode == v1::VERIFY_MODE_ALL;
}

absl::Status CheckBandwidth(const std::optional<int64_t>& bandwidth) {
  if (bandwidth.has_value() && *bandwidth <= 0) {
    return absl::InvalidArgumentError("bandwidth_bytes_per_second must be positive (leave it unset for no cap)");
  }
  return absl::OkStatus();
}

bool Matches(const v1::Selection& s, const sv1::ObjectInfo& o) {
  if (s.tier() != cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED && o.tier() != s.tier()) return false;
  if (o.size() < s.min_size()) return false;
  if (s.max_size() > 0 && o.size() > s.max_size()) return false;
  if (s.has_created_before() && o.has_created() &&
      TimeUtil::TimestampToMicroseconds(o.created()) >= TimeUtil::TimestampToMicroseconds(s.created_before())) {
    return false;
  }
  return true;
}

// Columns Migration is read from, with the tasks' counts (GROUP BY j.id).
constexpr char kJobQuery[] =
    "SELECT j.id::text, j.state, j.origin, j.description, j.request, j.estimate, "
    "(extract(epoch from j.created_at) * 1000000)::bigint, (extract(epoch from j.finished_at) * 1000000)::bigint, "
    "extract(epoch from coalesce(j.finished_at, now()) - j.started_at), "
    "count(t.key), count(t.key) FILTER (WHERE t.outcome = 3), count(t.key) FILTER (WHERE t.outcome = 4), "
    "count(t.key) FILTER (WHERE t.outcome = 5), count(t.key) FILTER (WHERE t.outcome IN (1, 2)), "
    "coalesce(sum(t.size) FILTER (WHERE t.outcome <> 4), 0), "
    "coalesce(sum(t.bytes_moved) FILTER (WHERE t.outcome = 3), 0), "
    "coalesce(sum(t.size) FILTER (WHERE t.outcome IN (1, 2)), 0), j.bandwidth, j.seq, "
    "coalesce(j.concurrency, j.parallelism), j.throttled "
    "FROM migration.jobs j LEFT JOIN migration.tasks t ON t.job_id = j.id ";

v1::Migration MigrationFromRow(const db::Row& r) {
  v1::Migration m;
  m.set_id(r.Text(0));
  m.set_state(static_cast<v1::MigrationState>(r.Int(1)));
  m.set_origin(r.Text(2));
  m.set_description(r.Text(3));
  m.mutable_request()->ParseFromString(r.Bytes(4));
  m.mutable_estimate()->ParseFromString(r.Bytes(5));
  *m.mutable_created() = TimeUtil::MicrosecondsToTimestamp(r.Int(6));
  if (!r.IsNull(7)) *m.mutable_finished() = TimeUtil::MicrosecondsToTimestamp(r.Int(7));
  double elapsed = r.Double(8);
  auto* p = m.mutable_progress();
  p->set_objects_total(r.Int(9));
  p->set_objects_done(r.Int(10));
  p->set_objects_skipped(r.Int(11));
  p->set_objects_failed(r.Int(12));
  p->set_objects_left(r.Int(13));
  p->set_bytes_total(r.Int(14));
  p->set_bytes_done(r.Int(15));
  p->set_bytes_left(r.Int(16));
  p->set_bytes_per_second(elapsed > 0 ? p->bytes_done() / elapsed : 0);
  p->set_eta_seconds(p->bytes_left() == 0 ? 0 : p->bytes_per_second() > 0 ? p->bytes_left() / p->bytes_per_second() : -1);
  if (!r.IsNull(17)) {
    m.mutable_request()->set_bandwidth_bytes_per_second(r.Int(17));
  } else {
    m.mutable_request()->clear_bandwidth_bytes_per_second();
  }
  p->set_concurrency(static_cast<int32_t>(r.Int(19)));
  p->set_throttled(r.Int(20));
  if (m.state() == v1::MIGRATION_STATE_RUNNING) {
    const absl::Time now = absl::Now();
    p->set_outside_window(!InHourWindow(m.request().window_start_hour(), m.request().window_end_hour(), now));
    std::optional<int64_t> base;
    if (m.request().has_bandwidth_bytes_per_second()) base = m.request().bandwidth_bytes_per_second();
    p->set_bandwidth_now(BandwidthAt(base, m.request().bandwidth_timetable(), now).value_or(0));
  }
  return m;
}

bool Terminal(v1::MigrationState s) {
  return s == v1::MIGRATION_STATE_COMPLETED || s == v1::MIGRATION_STATE_FAILED ||
         s == v1::MIGRATION_STATE_CANCELLED;
}

bool Transient(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kDeadlineExceeded || code == absl::StatusCode::kAborted ||
         code == absl::StatusCode::kInternal || code == absl::StatusCode::kUnknown;
}

}  // namespace

MigrationCore::MigrationCore(db::Pool& pool, StorageClient& storage, const pricing::PriceCatalog& catalog,
                             CoreOptions options, const core::Clock& clock)
    : pool_(pool), storage_(storage), catalog_(catalog), options_(std::move(options)), clock_(clock) {}

MigrationCore::~MigrationCore() { Stop(); }

absl::StatusOr<std::vector<MigrationCore::Planned>> MigrationCore::Plan(const v1::Selection& selection,
                                                                       const v1::Target& target,
                                                                       v1::MigrationMode mode, bool lenient) {
  CF_RETURN_IF_ERROR(CheckSelection(selection));
  if (!v1::MigrationMode_IsValid(mode)) return absl::InvalidArgumentError("unknown mode");
  const bool copy = mode == v1::MIGRATION_MODE_COPY;
  if (copy) {
    if (target.namespace_().empty()) {
      return absl::InvalidArgumentError("a copy needs target.namespace, where the copies are written");
    }
    CF_RETURN_IF_ERROR(core::Annotate(core::ValidateNamespace(target.namespace_()), "target namespace"));
  } else if (!target.namespace_().empty()) {
    return absl::InvalidArgumentError(
        "a move keeps each object's namespace: to write the objects into another namespace, copy them "
        "(mode MIGRATION_MODE_COPY)");
  }
  if (!cloudflux::common::v1::StorageTier_IsValid(target.tier())) {
    return absl::InvalidArgumentError("unknown target tier");
  }
  if (!copy && target.backend().empty() && target.tier() == cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED) {
    return absl::InvalidArgumentError("the target needs a backend, a tier or both");
  }
  if (!target.backend().empty()) {
    CF_ASSIGN_OR_RETURN(auto backends, storage_.Backends());
    bool known = std::any_of(backends.begin(), backends.end(),
                             [&](const sv1::Backend& b) { return b.name() == target.backend(); });
    if (!known) return absl::InvalidArgumentError(absl::StrCat("no backend '", target.backend(), "'"));
  }
  std::vector<sv1::ObjectInfo> objects;
  if (selection.objects_size() > 0) {
    std::set<std::pair<std::string, std::string>> seen;
    for (const auto& o : selection.objects()) {
      if (!seen.insert({o.namespace_(), o.key()}).second) continue;
      auto info = storage_.Head(o.namespace_(), o.key());
      if (info.status().code() == absl::StatusCode::kNotFound) {
        if (lenient) continue;  // deleted since it was decided
        return absl::NotFoundError(absl::StrCat("no object '", o.namespace_(), "/", o.key(), "'"));
      }
      CF_RETURN_IF_ERROR(info.status());
      objects.push_back(std::move(*info));
    }
  } else {
    std::string token;
    do {
      CF_ASSIGN_OR_RETURN(sv1::ListObjectsResponse page,
                          storage_.List(selection.namespace_(), selection.prefix(), token, kPageSize));
      for (auto& o : *page.mutable_objects()) objects.push_back(std::move(o));
      if (static_cast<int>(objects.size()) > kMaxPlannedObjects) {
        return absl::FailedPreconditionError(
            absl::StrCat("the selection has more than ", kMaxPlannedObjects, " objects: narrow it"));
      }
      token = page.page().next_page_token();
    } while (!token.empty());
  }
  std::vector<Planned> plan;
  for (auto& o : objects) {
    if (!Matches(selection, o)) continue;
    Planned p;
    if (copy) {
      if (o.namespace_() == target.namespace_()) {
        return absl::InvalidArgumentError(absl::StrCat("'", o.namespace_(), "/", o.key(),
                                                       "' is in the target namespace: a copy would replace it"));
      }
      p.to_namespace = target.namespace_();
    }
    p.to_backend = target.backend().empty() ? o.backend() : target.backend();
    p.to_tier = target.tier() == cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED ? o.tier() : target.tier();
    if (pricing::IsArchiveTier(o.tier()) && lenient) {
      p.skip = true;
      p.reason = "in an archive class: restore it first";
    } else if (pricing::IsArchiveTier(o.tier())) {
      return absl::FailedPreconditionError(absl::StrCat("'", o.namespace_(), "/", o.key(),
                                                        "' is in an archive class: restore it first "
                                                        "(StorageService.RestoreObject)"));
    }
    if (!p.skip && copy) {
      auto there = storage_.Head(p.to_namespace, o.key());
      if (there.ok() && there->sha256() == o.sha256() && there->backend() == p.to_backend &&
          there->tier() == p.to_tier) {
        p.skip = true;
        p.present = true;
        p.reason = "a copy is already there";
      } else if (!there.ok() && there.status().code() != absl::StatusCode::kNotFound) {
        return there.status();
      }
    } else if (!p.skip && p.to_backend == o.backend() && p.to_tier == o.tier()) {
      p.skip = true;
      p.present = true;
      p.reason = "already at the target";
    }
    p.object = std::move(o);
    plan.push_back(std::move(p));
  }
  if (plan.empty()) return absl::FailedPreconditionError("the selection matches no object");
  return plan;
}

absl::StatusOr<v1::MigrationEstimate> MigrationCore::Price(const std::vector<Planned>& plan,
                                                           std::optional<int64_t> bandwidth) {
  v1::MigrationEstimate e;
  absl::Time now = clock_.Now();
  for (const Planned& p : plan) {
    if (p.skip) {
      e.set_skipped(e.skipped() + 1);
      continue;
    }
    e.set_objects(e.objects() + 1);
    if (p.to_backend.empty()) continue;  // a copy deleted: no move to price
    e.set_bytes(e.bytes() + p.object.size());
    const bool copy = !p.to_namespace.empty();
    auto from_cloud = options_.backend_clouds.find(p.object.backend());
    auto to_cloud = options_.backend_clouds.find(p.to_backend);
    if (from_cloud == options_.backend_clouds.end() || to_cloud == options_.backend_clouds.end()) continue;
    const pricing::ClassPrice* from = catalog_.ForTier(from_cloud->second, p.object.tier());
    const pricing::ClassPrice* to = catalog_.ForTier(to_cloud->second, p.to_tier);
    if (from == nullptr || to == nullptr) continue;
    double days = 0;
    if (p.object.has_updated()) {
      days = std::max(0.0, absl::ToDoubleHours(now - absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(
                                                         p.object.updated()))) /
                               24);
    }
    pricing::Constraints only_target;
    only_target.allowed_clouds = {to->cloud()};
    only_target.allowed_tiers = {to->tier()};
    auto candidates = pricing::PriceCandidates(catalog_, p.object.size(), {from, days, days}, {}, 30, only_target);
    // A copy keeps the source (no early deletion; it is still paid for).
    for (const auto& c : candidates) {
      if (c.is_current) {
        e.set_monthly_cost_before(e.monthly_cost_before() + c.monthly);
        if (copy) e.set_monthly_cost_after(e.monthly_cost_after() + c.monthly);
      }
      if (c.cls == to && (!c.is_current || copy)) {
        e.set_egress_cost(e.egress_cost() + c.move_egress);
        e.set_request_cost(e.request_cost() + c.move_requests);
        e.set_retrieval_cost(e.retrieval_cost() + c.move_retrieval);
        if (!copy) e.set_early_deletion_cost(e.early_deletion_cost() + c.early_deletion);
        e.set_monthly_cost_after(e.monthly_cost_after() + c.monthly);
      }
    }
  }
  e.set_total_move_cost(e.egress_cost() + e.request_cost() + e.retrieval_cost() + e.early_deletion_cost());
  if (bandwidth.has_value() && *bandwidth > 0) e.set_seconds(static_cast<double>(e.bytes()) / *bandwidth);
  return e;
}

absl::StatusOr<v1::MigrationEstimate> MigrationCore::Estimate(const v1::EstimateMigrationRequest& request) {
  std::optional<int64_t> bandwidth;
  if (request.has_bandwidth_bytes_per_second()) bandwidth = request.bandwidth_bytes_per_second();
  CF_RETURN_IF_ERROR(CheckBandwidth(bandwidth));
  CF_ASSIGN_OR_RETURN(std::vector<Planned> plan, Plan(request.selection(), request.target(), request.mode()));
  return Price(plan, bandwidth);
}

absl::Status MigrationCore::CheckReadableTargets(const std::vector<Planned>& plan) {
  if (std::none_of(plan.begin(), plan.end(), [](const Planned& p) {
        return !p.skip && pricing::IsArchiveTier(p.to_tier);
      })) {
    return absl::OkStatus();
  }
  CF_ASSIGN_OR_RETURN(auto backends, storage_.Backends());
  for (const Planned& p : plan) {
    if (p.skip || !pricing::IsArchiveTier(p.to_tier)) continue;
    for (const auto& b : backends) {
      if (b.name() == p.to_backend && b.archive_needs_restore()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", p.object.namespace_(), "/", p.object.key(), "' would go into ", p.to_backend,
            "'s archive class, which cannot be read back without a restore: use VERIFY_MODE_STREAM"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Migration> MigrationCore::Create(const v1::CreateMigrationRequest& request,
                                                    const CreateOptions& options) {
  std::optional<int64_t> bandwidth;
  if (request.has_bandwidth_bytes_per_second()) bandwidth = request.bandwidth_bytes_per_second();
  CF_RETURN_IF_ERROR(CheckBandwidth(bandwidth));
  if (request.parallelism() < 0 || request.parallelism() > 256) {
    return absl::InvalidArgumentError("parallelism must be 0..256 (0 = 4)");
  }
  if (request.max_bytes() < 0 || request.max_cost() < 0) {
    return absl::InvalidArgumentError("max_bytes and max_cost must not be negative");
  }
  if (!core::IsValidUtf8(request.description())) return absl::InvalidArgumentError("description is not UTF-8");
  if (!v1::VerifyMode_IsValid(request.verify())) return absl::InvalidArgumentError("unknown verify mode");
  CF_RETURN_IF_ERROR(CheckWindow(request.window_start_hour(), request.window_end_hour()));
  CF_RETURN_IF_ERROR(CheckTimetable(request.bandwidth_timetable()));
  CF_ASSIGN_OR_RETURN(std::vector<Planned> plan,
                      Plan(request.selection(), request.target(), request.mode(), options.lenient));
  if (ReadsBack(request.verify())) CF_RETURN_IF_ERROR(CheckReadableTargets(plan));
  CF_ASSIGN_OR_RETURN(v1::MigrationEstimate estimate, Price(plan, bandwidth));
  const bool checks = request.verify() == v1::VERIFY_MODE_ALL &&
                      std::any_of(plan.begin(), plan.end(), [](const Planned& p) { return p.present; });
  if (estimate.objects() == 0 && !request.dry_run() && !checks) {
    return absl::FailedPreconditionError("every selected object is already at the target: nothing to move");
  }
  if (request.max_bytes() > 0 && estimate.bytes() > request.max_bytes()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the moves add up to ", estimate.bytes(), " bytes, over max_bytes ", request.max_bytes()));
  }
  if (request.max_cost() > 0 && estimate.total_move_cost() > request.max_cost()) {
    return absl::FailedPreconditionError(absl::StrCat("the moves cost $", estimate.total_move_cost(),
                                                      ", over max_cost $", request.max_cost()));
  }
  return InsertJob(request, estimate, options, plan, bandwidth);
}

absl::StatusOr<v1::Migration> MigrationCore::InsertJob(const v1::CreateMigrationRequest& request,
                                                       const v1::MigrationEstimate& estimate,
                                                       const CreateOptions& options, const std::vector<Planned>& plan,
                                                       std::optional<int64_t> bandwidth) {
  const std::string& origin = options.origin;
  const std::string id = core::NewId();
  const bool dry = request.dry_run();
  std::vector<std::string> ns, key, version, size, sha, from_backend, from_tier, to_backend, to_tier, outcome,
      reason, to_namespace, verify_only;
  const bool check_present = request.verify() == v1::VERIFY_MODE_ALL && !dry;
  for (const Planned& p : plan) {
    const bool check = check_present && p.present;
    verify_only.push_back(check ? "true" : "false");
    to_namespace.push_back(p.to_namespace);
    ns.push_back(p.object.namespace_());
    key.push_back(p.object.key());
    version.push_back(std::to_string(p.object.version()));
    size.push_back(std::to_string(p.object.size()));
    sha.push_back(p.object.sha256());
    from_backend.push_back(p.object.backend());
    from_tier.push_back(std::to_string(p.object.tier()));
    to_backend.push_back(p.to_backend);
    to_tier.push_back(std::to_string(p.to_tier));
    outcome.push_back(
        std::to_string((p.skip && !check) || dry ? v1::OBJECT_OUTCOME_SKIPPED : v1::OBJECT_OUTCOME_PENDING));
    reason.push_back(p.skip && !check ? p.reason : dry ? "dry run" : "");
  }
  v1::CreateMigrationRequest timetable;
  *timetable.mutable_bandwidth_timetable() = request.bandwidth_timetable();
  v1::MigrationStarted started;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO migration.jobs (id, state, origin, description, request, estimate, bandwidth, "
                "parallelism, finished_at, placement_namespace, planned_bytes, planned_cost, verify, window_start, "
                "window_end, timetable) VALUES ($1::uuid, $2, $3, $4, $5::bytea, $6::bytea, $7, $8, CASE WHEN $9 "
                "THEN now() END, $10, $11, $12, $13, $14, $15, $16::bytea)",
                {id, std::to_string(dry ? v1::MIGRATION_STATE_COMPLETED : v1::MIGRATION_STATE_RUNNING), origin,
                 request.description(), db::Bytea(request.SerializeAsString()),
                 db::Bytea(estimate.SerializeAsString()),
                 bandwidth.has_value() ? db::Param(std::to_string(*bandwidth)) : db::Param(),
                 std::to_string(request.parallelism() > 0 ? request.parallelism() : 4), dry ? "true" : "false",
                 options.placement_namespace.empty() ? db::Param() : db::Param(options.placement_namespace),
                 std::to_string(dry ? 0 : estimate.bytes()), std::to_string(dry ? 0.0 : estimate.total_move_cost()),
                 std::to_string(request.verify() == v1::VERIFY_MODE_UNSPECIFIED ? v1::VERIFY_MODE_STREAM
                                                                                : request.verify()),
                 std::to_string(request.window_start_hour()), std::to_string(request.window_end_hour()),
                 request.bandwidth_timetable().empty() ? db::Param()
                                                       : db::Bytea(timetable.SerializeAsString())})
            .status());
    CF_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO migration.tasks (job_id, namespace, key, version, size, sha256, from_backend, "
                "from_tier, to_backend, to_tier, outcome, reason, to_namespace, verify_only) SELECT $1::uuid, u.n, "
                "u.k, u.v, u.s, u.h, u.fb, u.ft, u.tb, u.tt, u.o, u.r, nullif(u.tn, ''), u.c FROM unnest($2::text[], "
                "$3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::smallint[], $9::text[], "
                "$10::smallint[], $11::smallint[], $12::text[], $13::text[], $14::boolean[]) AS u(n, k, v, s, h, fb, "
                "ft, tb, tt, o, r, tn, c)",
                {id, db::ArrayLiteral(ns), db::ArrayLiteral(key), db::ArrayLiteral(version), db::ArrayLiteral(size),
                 db::ArrayLiteral(sha), db::ArrayLiteral(from_backend), db::ArrayLiteral(from_tier),
                 db::ArrayLiteral(to_backend), db::ArrayLiteral(to_tier), db::ArrayLiteral(outcome),
                 db::ArrayLiteral(reason), db::ArrayLiteral(to_namespace), db::ArrayLiteral(verify_only)})
            .status());
    CF_ASSIGN_OR_RETURN(db::Result r, tx.Exec(absl::StrCat(kJobQuery, "WHERE j.id = $1::uuid GROUP BY j.id"), {id}));
    *started.mutable_migration() = MigrationFromRow(r[0]);
    return outbox_.Enqueue(tx, kJobTopic, events::MakeEnvelope("migration", id, id, started, clock_));
  }));
  core::LogInfo("migration created", {{"id", id},
                                      {"objects", std::to_string(estimate.objects())},
                                      {"bytes", std::to_string(estimate.bytes())},
                                      {"origin", origin},
                                      {"dry_run", dry ? "true" : "false"}});
  // As read in its transaction: nothing has been claimed yet.
  return started.migration();
}

absl::StatusOr<v1::Migration> MigrationCore::Rollback(const std::string& raw_id) {
  CF_ASSIGN_OR_RETURN(v1::Migration job, Get(raw_id));
  if (!Terminal(job.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("migration ", job.id(), " is ", v1::MigrationState_Name(job.state()),
                     ": pause or cancel it and let it end before rolling it back"));
  }
  CF_ASSIGN_OR_RETURN(db::Result moved,
                      pool_.Exec("SELECT namespace, key, version, from_backend, from_tier, to_backend, to_tier, "
                                 "coalesce(to_namespace, ''), sha256 FROM migration.tasks WHERE job_id = $1::uuid AND "
                                 "outcome = 3 AND to_backend <> '' ORDER BY namespace, key",
                                 {job.id()}));
  if (moved.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("migration ", job.id(), " moved nothing: nothing to roll back"));
  }
  // Each moved object back where the task found it, if it is still the
  // version moved and still where the task put it; each copy deleted, if
  // it is still the one written.
  std::vector<Planned> plan;
  for (const auto& row : moved) {
    // A copy is deleted where it was written (to_backend empty); a moved
    // object goes back.
    const bool copied = !row.Text(7).empty();
    const std::string ns = copied ? row.Text(7) : row.Text(0);
    auto info = storage_.Head(ns, row.Text(1));
    Planned p;
    if (!copied) {
      p.to_backend = row.Text(3);
      p.to_tier = static_cast<StorageTier>(row.Int(4));
    }
    if (info.status().code() == absl::StatusCode::kNotFound) {
      p.object.set_namespace_(ns);
      p.object.set_key(row.Text(1));
      if (!copied) p.object.set_version(row.Int(2));
      p.skip = true;
      p.reason = "deleted since";
    } else {
      CF_RETURN_IF_ERROR(info.status());
      p.object = std::move(*info);
      if (copied ? p.object.sha256() != row.Text(8) : p.object.version() != row.Int(2)) {
        p.skip = true;
        p.reason = "overwritten since";
      } else if (!copied && (p.object.backend() != row.Text(5) || p.object.tier() != row.Int(6))) {
        p.skip = true;
        p.reason = "moved elsewhere since";
      } else if (!copied && pricing::IsArchiveTier(p.object.tier())) {
        p.skip = true;
        p.reason = "in an archive class: restore it first";
      }
    }
    plan.push_back(std::move(p));
  }
  v1::CreateMigrationRequest request;
  request.set_description(absl::StrCat("rollback of ", job.id()));
  request.set_parallelism(job.request().parallelism());
  // What goes back is read back as the job's copies were (nothing of a
  // rollback is already at its target).
  request.set_verify(ReadsBack(job.request().verify()) ? v1::VERIFY_MODE_TRANSFERRED : v1::VERIFY_MODE_STREAM);
  std::optional<int64_t> bandwidth;
  if (job.request().has_bandwidth_bytes_per_second()) {
    bandwidth = job.request().bandwidth_bytes_per_second();
    request.set_bandwidth_bytes_per_second(*bandwidth);
  }
  CF_ASSIGN_OR_RETURN(v1::MigrationEstimate estimate, Price(plan, bandwidth));
  CreateOptions options;
  options.origin = "rollback";
  return InsertJob(request, estimate, options, plan, bandwidth);
}

absl::StatusOr<v1::Migration> MigrationCore::Get(const std::string& raw_id) {
  CF_ASSIGN_OR_RETURN(std::string id, CheckId(raw_id));
  CF_ASSIGN_OR_RETURN(db::Result r, pool_.Exec(absl::StrCat(kJobQuery, "WHERE j.id = $1::uuid GROUP BY j.id"), {id}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no migration '", id, "'"));
  v1::Migration m = MigrationFromRow(r[0]);
  CF_ASSIGN_OR_RETURN(db::Result current,
                      pool_.Exec("SELECT namespace, key FROM migration.tasks WHERE job_id = $1::uuid AND outcome = 2 "
                                 "ORDER BY namespace, key LIMIT 20",
                                 {id}));
  for (const auto& c : current) {
    auto* o = m.mutable_progress()->add_current();
    o->set_namespace_(c.Text(0));
    o->set_key(c.Text(1));
  }
  return m;
}

absl::StatusOr<v1::ListMigrationsResponse> MigrationCore::List(const v1::ListMigrationsRequest& request) {
  if (!v1::MigrationState_IsValid(request.state())) return absl::InvalidArgumentError("unknown state");
  CF_ASSIGN_OR_RETURN(server::PageCursor page, server::ParsePage(request.page(), 50, 500));
  int64_t before = std::numeric_limits<int64_t>::max();
  if (!page.after.empty() && !absl::SimpleAtoi(page.after, &before)) {
    return absl::InvalidArgumentError("malformed page_token");
  }
  CF_ASSIGN_OR_RETURN(db::Result r,
                      pool_.Exec(absl::StrCat(kJobQuery, "WHERE j.seq < $1 AND ($2 = 0 OR j.state = $2) GROUP BY "
                                                         "j.id ORDER BY j.seq DESC LIMIT $3"),
                                 {std::to_string(before), std::to_string(request.state()),
                                  std::to_string(page.size + 1)}));
  v1::ListMigrationsResponse out;
  size_t n = std::min<size_t>(r.size(), static_cast<size_t>(page.size));
  for (size_t i = 0; i < n; ++i) *out.add_migrations() = MigrationFromRow(r[i]);
  out.mutable_page()->set_total_size(-1);
  if (r.size() > n) out.mutable_page()->set_next_page_token(server::PageToken(r[n - 1].Text(18)));
  return out;
}

absl::StatusOr<v1::Migration> MigrationCore::SetState(const std::string& raw_id, v1::MigrationState to) {
  CF_ASSIGN_OR_RETURN(std::string id, CheckId(raw_id));
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result r, tx.Exec("SELECT state FROM migration.jobs WHERE id = $1::uuid FOR UPDATE", {id}));
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no migration '", id, "'"));
    auto from = static_cast<v1::MigrationState>(r[0].Int(0));
    if (from == to) return absl::OkStatus();
    if (Terminal(from)) {
      return absl::FailedPreconditionError(
          absl::StrCat("migration ", id, " has ended (", v1::MigrationState_Name(from), ")"));
    }
    CF_RETURN_IF_ERROR(tx.Exec("UPDATE migration.jobs SET state = $2 WHERE id = $1::uuid",
                               {id, std::to_string(to)})
                           .status());
    if (to == v1::MIGRATION_STATE_CANCELLED) {
      CF_RETURN_IF_ERROR(tx.Exec("UPDATE migration.tasks SET outcome = 4, reason = 'cancelled', updated_at = now() "
                                 "WHERE job_id = $1::uuid AND outcome = 1",
                                 {id})
                             .status());
      return MaybeFinish(tx, id);
    }
    return absl::OkStatus();
  }));
  return Get(id);
}

absl::StatusOr<v1::Migration> MigrationCore::Pause(const std::string& id) {
  return SetState(id, v1::MIGRATION_STATE_PAUSED);
}
absl::StatusOr<v1::Migration> MigrationCore::Resume(const std::string& id) {
  return SetState(id, v1::MIGRATION_STATE_RUNNING);
}
absl::StatusOr<v1::Migration> MigrationCore::Cancel(const std::string& id) {
  return SetState(id, v1::MIGRATION_STATE_CANCELLED);
}

absl::StatusOr<v1::Migration> MigrationCore::SetBandwidth(const v1::SetBandwidthRequest& request) {
  CF_ASSIGN_OR_RETURN(std::string id, CheckId(request.id()));
  std::optional<int64_t> bandwidth;
  if (request.has_bandwidth_bytes_per_second()) bandwidth = request.bandwidth_bytes_per_second();
  CF_RETURN_IF_ERROR(CheckBandwidth(bandwidth));
  CF_ASSIGN_OR_RETURN(db::Result r,
                      pool_.Exec("UPDATE migration.jobs SET bandwidth = $2 WHERE id = $1::uuid RETURNING state",
                                 {id, bandwidth.has_value() ? db::Param(std::to_string(*bandwidth)) : db::Param()}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no migration '", id, "'"));
  return Get(id);
}

absl::StatusOr<v1::MigrationUpdate> MigrationCore::WatchUpdate(const std::string& id, FailureCursor* cursor) {
  v1::MigrationUpdate update;
  CF_ASSIGN_OR_RETURN(*update.mutable_migration(), Get(id));
  // Failed attempts recorded after the cursor (the task may be running
  // again already; outcome, attempt and reason are the failed attempt's).
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      pool_.Exec(absl::StrCat("SELECT ", kObjectColumns, ", f.fid, f.foutcome, f.fattempt, f.freason FROM migration.tasks "
                              "JOIN (SELECT id AS fid, job_id AS fjob, namespace AS fns, key AS fkey, outcome AS foutcome, "
                              "attempt AS fattempt, reason AS freason FROM migration.task_failures WHERE job_id = $1::uuid "
                              "AND id > $2 ORDER BY id LIMIT 1000) f ON job_id = f.fjob AND namespace = f.fns AND key = "
                              "f.fkey ORDER BY f.fid"),
                 {update.migration().id(), std::to_string(cursor->below)}));
  for (const auto& row : r) {
    if (update.failures_size() >= 100) break;
    constexpr int f = kObjectColumnCount;  // the failed attempt's columns
    if (!cursor->sent.insert(row.Int(f)).second) continue;
    v1::MigrationObject* o = update.add_failures();
    *o = ObjectFromRow(row);
    o->set_outcome(static_cast<v1::ObjectOutcome>(row.Int(f + 1)));
    o->set_attempts(static_cast<int32_t>(row.Int(f + 2)));
    o->set_reason(row.Text(f + 3));
  }
  cursor->Advance(absl::Now());
  return update;
}

void MigrationCore::FailureCursor::Advance(absl::Time now) {
  // Ids are taken in insertion order but become visible in commit order: a
  // gap below an id already sent may be an attempt still committing. It is
  // waited for, then taken for a rolled-back insert.
  for (;;) {
    while (!sent.empty() && *sent.begin() == below + 1) {
      below = *sent.begin();
      sent.erase(sent.begin());
    }
    if (sent.empty()) {
      gap_since = absl::InfiniteFuture();
      return;
    }
    if (gap_since == absl::InfiniteFuture()) gap_since = now;
    if (now - gap_since < kGapWait) return;
    below = *sent.begin() - 1;
    gap_since = absl::InfiniteFuture();
  }
}

absl::StatusOr<v1::ListMigrationObjectsResponse> MigrationCore::ListObjects(
    const v1::ListMigrationObjectsRequest& request) {
  CF_ASSIGN_OR_RETURN(std::string id, CheckId(request.id()));
  if (!v1::ObjectOutcome_IsValid(request.outcome())) return absl::InvalidArgumentError("unknown outcome");
  CF_ASSIGN_OR_RETURN(server::PageCursor page, server::ParsePage(request.page(), 100, 1000));
  CF_ASSIGN_OR_RETURN(db::Result job, pool_.Exec("SELECT 1 FROM migration.jobs WHERE id = $1::uuid", {id}));
  if (job.empty()) return absl::NotFoundError(absl::StrCat("no migration '", id, "'"));
  // The cursor is "namespace/key" of the last row (names hold no NUL).
  std::string after_ns, after_key;
  if (!page.after.empty()) {
    size_t nul = page.after.find('\0');
    if (nul == std::string::npos) return absl::InvalidArgumentError("malformed page_token");
    after_ns = page.after.substr(0, nul);
    after_key = page.after.substr(nul + 1);
  }
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      pool_.Exec(absl::StrCat("SELECT ", kObjectColumns, " FROM migration.tasks WHERE job_id = $1::uuid AND ($2 = 0 OR "
                              "outcome = $2) AND (namespace, key) > ($3, $4) ORDER BY namespace, key LIMIT $5"),
                 {id, std::to_string(request.outcome()), after_ns, after_key, std::to_string(page.size + 1)}));
  v1::ListMigrationObjectsResponse out;
  size_t n = std::min<size_t>(r.size(), static_cast<size_t>(page.size));
  for (size_t i = 0; i < n; ++i) {
    *out.add_objects() = ObjectFromRow(r[i]);
  }
  out.mutable_page()->set_total_size(-1);
  if (r.size() > n) {
    out.mutable_page()->set_next_page_token(
        server::PageToken(absl::StrCat(r[n - 1].Text(0), std::string(1, '\0'), r[n - 1].Text(1))));
  }
  return out;
}

// The caller holds the job's row lock (Cancel, FinishIfDone), so that two
// finishing the same job see each other.
absl::Status MigrationCore::MaybeFinish(db::Transaction& tx, const std::string& job) {
  // Most calls find open tasks left: answered from the open-task index.
  CF_ASSIGN_OR_RETURN(db::Result open, tx.Exec("SELECT 1 FROM migration.tasks WHERE job_id = $1::uuid AND outcome "
                                               "IN (1, 2) LIMIT 1",
                                               {job}));
  if (!open.empty()) return absl::OkStatus();
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      tx.Exec("SELECT j.state, count(t.key) FILTER (WHERE t.outcome IN (1, 2)), count(t.key) FILTER (WHERE t.outcome "
              "= 5) FROM migration.jobs j LEFT JOIN migration.tasks t ON t.job_id = j.id WHERE j.id = $1::uuid "
              "GROUP BY j.id",
              {job}));
  if (r.empty() || r[0].Int(1) > 0) return absl::OkStatus();
  auto state = static_cast<v1::MigrationState>(r[0].Int(0));
  if (state == v1::MIGRATION_STATE_COMPLETED || state == v1::MIGRATION_STATE_FAILED) return absl::OkStatus();
  v1::MigrationState final_state = state == v1::MIGRATION_STATE_CANCELLED ? v1::MIGRATION_STATE_CANCELLED
                                   : r[0].Int(2) > 0                    ? v1::MIGRATION_STATE_FAILED
                                                                        : v1::MIGRATION_STATE_COMPLETED;
  CF_ASSIGN_OR_RETURN(db::Result done,
                      tx.Exec("UPDATE migration.jobs SET state = $2, finished_at = now() WHERE id = $1::uuid "
                              "AND finished_at IS NULL RETURNING id",
                              {job, std::to_string(final_state)}));
  if (done.empty()) return absl::OkStatus();
  CF_ASSIGN_OR_RETURN(db::Result row, tx.Exec(absl::StrCat(kJobQuery, "WHERE j.id = $1::uuid GROUP BY j.id"), {job}));
  v1::MigrationFinished finished;
  *finished.mutable_migration() = MigrationFromRow(row[0]);
  core::LogInfo("migration finished", {{"id", job}, {"state", v1::MigrationState_Name(final_state)}});
  return outbox_.Enqueue(tx, kJobTopic, events::MakeEnvelope("migration", job, job, finished, clock_));
}

void MigrationCore::Start() {
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { Work(); });
}

void MigrationCore::Stop() {
  {
    std::lock_guard lock(claim_mu_);
    stop_ = true;
  }
  claim_cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
  std::vector<db::Row> left(ready_.begin(), ready_.end());
  ready_.clear();
  Release(left);
}

void MigrationCore::Work() {
  bool after_task = false;
  while (!stop_) {
    std::optional<db::Row> task;
    bool claimer = false;
    {
      std::unique_lock lock(claim_mu_);
      while (!stop_) {
        if (!ready_.empty()) {
          task = std::move(ready_.front());
          ready_.pop_front();
          break;
        }
        // A worker that has just ended a task claims at once (more work is
        // likely); otherwise claims that found nothing are one per poll.
        if (!claiming_ && (after_task || absl::Now() >= next_poll_)) {
          claiming_ = claimer = true;
          break;
        }
        const absl::Duration wait =
            claiming_ ? options_.idle_poll : std::max(absl::Milliseconds(1), next_poll_ - absl::Now());
        claim_cv_.wait_for(lock, absl::ToChronoMilliseconds(wait));
      }
    }
    after_task = false;
    if (claimer) {
      // For itself and every worker not running a task.
      const int n = std::max(1, options_.workers - busy_.load());
      auto claimed = Claim(n);
      {
        std::lock_guard lock(claim_mu_);
        claiming_ = false;
        if (claimed.ok() && !claimed->empty()) {
          task = std::move(claimed->front());
          for (size_t i = 1; i < claimed->size(); ++i) ready_.push_back(std::move((*claimed)[i]));
        } else {
          next_poll_ = absl::Now() + (claimed.ok() ? options_.idle_poll : absl::Seconds(1));
        }
      }
      claim_cv_.notify_all();
      if (!claimed.ok()) {
        core::LogWarn("migration tasks could not be claimed", {{"error", std::string(claimed.status().message())}});
      }
    }
    if (!task) continue;
    ++busy_;
    absl::Status ran = RunTask(*task);
    --busy_;
    after_task = true;
    if (!ran.ok()) {
      core::LogWarn("migration task failed to run", {{"error", std::string(ran.message())}});
      absl::SleepFor(absl::Seconds(1));
    }
  }
}

void MigrationCore::Release(const std::vector<db::Row>& claimed) {
  for (const auto& c : claimed) {
    // Back to new (or due), as if never claimed: the attempt never started.
    (void)pool_.Exec("UPDATE migration.tasks SET outcome = 1, worker = NULL, attempts = attempts - 1, lease_until = "
                     "NULL, updated_at = now() WHERE job_id = $1::uuid AND namespace = $2 AND key = $3 AND worker = "
                     "$4 AND outcome = 2 AND attempts = $5",
                     {c.Text(0), c.Text(1), c.Text(2), options_.worker_id, c.Text(8)});
  }
}

void MigrationCore::Pace(const std::string& job, int64_t bytes, std::optional<int64_t> bandwidth) {
  if (!bandwidth.has_value() || *bandwidth <= 0) return;
  absl::Time start;
  {
    std::lock_guard lock(pace_mu_);
    absl::Time now = absl::Now();
    absl::Time& next = next_start_[job];
    // A cap that has not been used for a while does not bank credit.
    start = std::max(next, now);
    next = start + absl::Seconds(static_cast<double>(bytes) / static_cast<double>(*bandwidth));
  }
  while (!stop_ && absl::Now() < start) absl::SleepFor(std::min(absl::Milliseconds(100), start - absl::Now()));
}

absl::StatusOr<std::vector<db::Row>> MigrationCore::Claim(int n) {
  const int64_t lease_ms = absl::ToInt64Milliseconds(options_.lease);
  // Tasks of the oldest running jobs with room under their concurrency:
  // those whose worker's lease ran out, retries that are due, then the next
  // new tasks after the job's claim cursor (each found through an index of
  // its own). Claims of running jobs are made one transaction at a time
  // (the jobs' rows locked first), so that each sees the claims before it
  // and a job's parallelism holds across workers and replicas.
  // Each candidate query ($1 the job, $2 how many, $3/$4 the cursor) feeds
  // the claim's UPDATE in one statement: the planner sees the LIMIT and
  // updates the picked rows by their key.
  static constexpr const char* kCandidates[] = {
      "SELECT namespace, key FROM migration.tasks WHERE job_id = $1::uuid AND outcome = 2 AND lease_until < now() "
      "LIMIT $2 FOR UPDATE SKIP LOCKED",
      "SELECT namespace, key FROM migration.tasks WHERE job_id = $1::uuid AND outcome = 1 AND retry_at <= now() "
      "ORDER BY retry_at LIMIT $2 FOR UPDATE SKIP LOCKED",
      "SELECT namespace, key FROM migration.tasks WHERE job_id = $1::uuid AND (job_id, namespace, key) > ($1::uuid, "
      "$3, $4) AND outcome = 1 AND retry_at IS NULL ORDER BY namespace, key LIMIT $2 FOR UPDATE SKIP LOCKED"};
  std::vector<db::Row> claimed;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    claimed.clear();
    CF_RETURN_IF_ERROR(tx.Exec("SELECT 1 FROM migration.jobs WHERE state = 1 ORDER BY seq FOR UPDATE").status());
    CF_ASSIGN_OR_RETURN(db::Result rooms,
                        tx.Exec("SELECT id, claim_namespace, claim_key, room FROM (SELECT j.id::text AS id, "
                                "j.claim_namespace, j.claim_key, j.seq, coalesce(j.concurrency, j.parallelism) - "
                                "(SELECT count(*) FROM migration.tasks r WHERE r.job_id = j.id AND r.outcome = 2 AND "
                                "r.lease_until >= now()) AS room FROM migration.jobs j, (SELECT extract(hour FROM "
                                "now() AT TIME ZONE 'UTC') AS h) utc WHERE j.state = 1 AND (j.window_start = "
                                "j.window_end OR CASE WHEN j.window_start < j.window_end THEN utc.h >= j.window_start "
                                "AND utc.h < j.window_end ELSE utc.h >= j.window_start OR utc.h < j.window_end END)) "
                                "r WHERE room > 0 ORDER BY seq"));
    for (const auto& room : rooms) {
      int64_t left = std::min<int64_t>(room.Int(3), n - static_cast<int64_t>(claimed.size()));
      for (int kind = 0; kind < 3 && left > 0; ++kind) {
        std::vector<db::Param> params = {room.Text(0), std::to_string(left)};
        if (kind == 2) {
          params.push_back(room.Text(1));
          params.push_back(room.Text(2));
        }
        const size_t worker_param = params.size() + 1;
        params.push_back(options_.worker_id);
        params.push_back(std::to_string(lease_ms));
        CF_ASSIGN_OR_RETURN(
            db::Result rows,
            tx.Exec(absl::StrCat(
                        "WITH p AS (", kCandidates[kind], ") UPDATE migration.tasks t SET outcome = 2, worker = $",
                        worker_param, ", attempts = t.attempts + 1, lease_until = now() + $", worker_param + 1,
                        " * interval '1 millisecond', updated_at = now() FROM p, migration.jobs j WHERE t.job_id = "
                        "$1::uuid AND t.namespace = p.namespace AND t.key = p.key AND j.id = t.job_id RETURNING "
                        "t.job_id::text, t.namespace, t.key, t.version, t.size, t.sha256, t.to_backend, t.to_tier, "
                        "t.attempts, j.bandwidth, coalesce(t.to_namespace, ''), coalesce(j.concurrency, "
                        "j.parallelism), t.from_backend, t.throttled, j.parallelism, now()::text, j.timetable, "
                        "j.verify, t.verify_only"),
                    params));
        if (rows.empty()) continue;
        // The cursor: the last new task claimed, in key order (the "C"
        // collation's byte order).
        const db::Row* last = nullptr;
        for (const auto& row : rows) {
          if (kind == 0) {
            // The attempt whose lease ran out is a failed one: the watchers
            // see it, and its worker's late answer no longer matches the task.
            const int64_t lost = row.Int(8) - 1;
            CF_RETURN_IF_ERROR(RecordFailure(tx, room.Text(0), row.Text(1), row.Text(2), lost,
                                             v1::OBJECT_OUTCOME_PENDING,
                                             absl::StrCat("attempt ", lost,
                                                          ": its lease ran out (the worker stopped or stalled); "
                                                          "taken over")));
          }
          if (last == nullptr || std::make_pair(row.Text(1), row.Text(2)) > std::make_pair(last->Text(1), last->Text(2))) {
            last = &row;
          }
          claimed.push_back(row);
        }
        left -= static_cast<int64_t>(rows.size());
        if (kind == 2) {
          CF_RETURN_IF_ERROR(tx.Exec("UPDATE migration.jobs SET claim_namespace = $2, claim_key = $3 WHERE id = "
                                     "$1::uuid",
                                     {room.Text(0), last->Text(1), last->Text(2)})
                                 .status());
        }
      }
      if (static_cast<int64_t>(claimed.size()) >= n) break;
    }
    return absl::OkStatus();
  }));
  return claimed;
}

absl::Status MigrationCore::RunTask(const db::Row& c) {
  const int64_t lease_ms = absl::ToInt64Milliseconds(options_.lease);
  const std::string job = c.Text(0), ns = c.Text(1), key = c.Text(2), sha = c.Text(5), to_backend = c.Text(6);
  const int64_t version = c.Int(3), size = c.Int(4);
  const auto to_tier = static_cast<StorageTier>(c.Int(7));
  const int attempts = static_cast<int>(c.Int(8));
  std::optional<int64_t> bandwidth;
  if (!c.IsNull(9)) bandwidth = c.Int(9);
  if (!c.IsNull(16)) {  // the timetable's slot now, if one holds
    v1::CreateMigrationRequest timetable;
    timetable.ParseFromString(c.Bytes(16));
    bandwidth = BandwidthAt(bandwidth, timetable.bandwidth_timetable(), absl::Now());
  }
  const auto verify = static_cast<v1::VerifyMode>(c.Int(17));
  const bool verify_only = c.Bool(18);
  const std::string to_namespace = c.Text(10);
  const int64_t concurrency = c.Int(11), throttled_before = c.Int(13), parallelism = c.Int(14);
  const std::string claimed_at = c.Text(15);
  // The cap holds across the job's copies, on every replica. Between
  // backends the bytes stream through the storage adapter: each of the
  // job's (at most `concurrency`) copies sends at most an equal share of the
  // cap; the job's copies in one storage adapter process pool their shares
  // (pace group = the job), so one held up leaves its share to the others,
  // and the newest share (a changed cap) reaches those already running.
  // Within one backend the store copies (or only the catalog changes):
  // object starts are paced instead.
  const bool streamed = !to_backend.empty() && c.Text(12) != to_backend;
  const int64_t share = bandwidth.has_value() && streamed
                            ? std::max<int64_t>(1, *bandwidth / std::max<int64_t>(1, concurrency))
                            : 0;
  if (!streamed) Pace(job, size, bandwidth);

  ++copies_;
  absl::Time renewed = absl::Now();
  int64_t resumed = 0;
  absl::StatusOr<sv1::ObjectInfo> result;
  bool verified = false;
  // Reads the object at the target back (a check only, or after a tier
  // change in place, which no copy read back).
  auto check = [&] {
    const std::string& at = to_namespace.empty() ? ns : to_namespace;
    auto checked = storage_.Verify(at, key, to_namespace.empty() ? version : 0, options_.copy_timeout);
    if (!checked.ok()) return absl::StatusOr<sv1::ObjectInfo>(checked.status());
    if (!checked->intact()) {
      return absl::StatusOr<sv1::ObjectInfo>(absl::DataLossError(
          absl::StrCat("its bytes at the target read back as ", checked->bytes_read(), " bytes with SHA-256 ",
                       checked->sha256(), ", not the catalog's ", checked->object().size(), " bytes with ",
                       checked->object().sha256())));
    }
    verified = true;
    return absl::StatusOr<sv1::ObjectInfo>(checked->object());
  };
  if (verify_only) {
    result = check();
  } else if (to_backend.empty()) {  // a copy job's rollback: the copy goes, if it is still the one written
    absl::Status deleted = storage_.Delete(ns, key, version);
    if (deleted.ok() || absl::IsNotFound(deleted)) {
      result = sv1::ObjectInfo();
      result->set_sha256(sha);
    } else {
      result = deleted;
    }
  } else {
    result = storage_.Copy(ns, key, version, to_namespace, to_backend, to_tier, options_.copy_timeout, [&](int64_t) {
    if (absl::Now() - renewed < options_.lease / 4) return;
    renewed = absl::Now();
    (void)pool_.Exec("UPDATE migration.tasks SET lease_until = now() + $4 * interval '1 millisecond' WHERE job_id "
                     "= $1::uuid AND namespace = $2 AND key = $3 AND worker = $5 AND attempts = $6",
                     {job, ns, key, std::to_string(lease_ms), options_.worker_id, std::to_string(attempts)});
  }, &resumed, share, ReadsBack(verify), job);
    const bool in_place = to_namespace.empty() && c.Text(12) == to_backend;
    if (result.ok() && !in_place) verified = ReadsBack(verify);
    if (result.ok() && in_place && verify == v1::VERIFY_MODE_ALL) result = check();
  }
  // A throttled answer (the target's 503 SlowDown or 429, RESOURCE_EXHAUSTED
  // from the storage adapter) halves the job's concurrency. While that can
  // still go down, the attempt is not counted against the object.
  const bool throttled = !result.ok() && absl::IsResourceExhausted(result.status());
  const bool forgiven = throttled && concurrency > 1;
  const int64_t counted_attempts = attempts - throttled_before - (forgiven ? 1 : 0);
  v1::ObjectOutcome outcome = v1::OBJECT_OUTCOME_MOVED;
  std::string reason;
  if (verify_only && result.ok()) {
    outcome = v1::OBJECT_OUTCOME_SKIPPED;
    reason = "already at the target; its bytes there read back intact";
  }
  if (to_backend.empty() && absl::IsAborted(result.status())) {
    outcome = v1::OBJECT_OUTCOME_SKIPPED;  // the copy was overwritten: not ours to delete
    reason = std::string(result.status().message());
  } else if (result.ok() && !sha.empty() && result->sha256() != sha) {
    verified = false;
    outcome = v1::OBJECT_OUTCOME_FAILED;
    reason = absl::StrCat("the target's SHA-256 ", result->sha256(), " is not the source's ", sha);
  } else if (!result.ok()) {
    if (Transient(result.status().code()) && counted_attempts < options_.max_attempts) {
      outcome = v1::OBJECT_OUTCOME_PENDING;  // again, after a pause
      reason = absl::StrCat("attempt ", attempts, ": ", result.status().message());
    } else {
      outcome = v1::OBJECT_OUTCOME_FAILED;
      reason = std::string(result.status().message());
    }
  }
  bool ended = false;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    ended = false;
    CF_ASSIGN_OR_RETURN(
        db::Result r,
        tx.Exec("UPDATE migration.tasks SET outcome = $5::smallint, reason = $6, bytes_moved = $7, bytes_resumed = $8, "
                "throttled = throttled + $10, lease_until = NULL, updated_at = now(), retry_at = now() + $9 * interval '1 millisecond', verified = $12 WHERE job_id = $1::uuid AND namespace = $2 AND key = $3 AND "
                "worker = $4 AND outcome = 2 AND attempts = $11 RETURNING version, size, from_backend, from_tier, to_backend, to_tier, "
                "sha256, attempts",
                {job, ns, key, options_.worker_id, std::to_string(outcome), reason,
                 std::to_string(outcome == v1::OBJECT_OUTCOME_MOVED && !to_backend.empty() ? size : 0),
                 std::to_string(outcome == v1::OBJECT_OUTCOME_MOVED ? resumed : 0),
                 std::to_string(absl::ToInt64Milliseconds(RetryPause(counted_attempts))), forgiven ? "1" : "0", std::to_string(attempts),
                 verified && outcome != v1::OBJECT_OUTCOME_FAILED ? "true" : "false"}));
    if (r.empty()) return absl::OkStatus();  // cancelled meanwhile, or taken over
    // Like TCP's window: halved by a throttled copy that was claimed after
    // the last halving (the copies refused together with the first one
    // started under the old concurrency and do not lower it again), raised
    // by one by a copy that got through and was claimed after the last
    // change.
    if (throttled) {
      CF_RETURN_IF_ERROR(
          tx.Exec("UPDATE migration.jobs SET throttled = throttled + 1, concurrency = CASE WHEN lowered_at IS NULL OR "
                  "lowered_at <= $2::timestamptz THEN greatest(1, coalesce(concurrency, parallelism) / 2) ELSE "
                  "concurrency END, lowered_at = CASE WHEN lowered_at IS NULL OR lowered_at <= $2::timestamptz THEN "
                  "clock_timestamp() ELSE lowered_at END WHERE id = $1::uuid",
                  {job, claimed_at})
              .status());
    } else if (outcome == v1::OBJECT_OUTCOME_MOVED && concurrency < parallelism) {
      CF_RETURN_IF_ERROR(
          tx.Exec("UPDATE migration.jobs SET concurrency = CASE WHEN concurrency + 1 >= parallelism THEN NULL ELSE "
                  "concurrency + 1 END, raised_at = clock_timestamp() WHERE id = $1::uuid AND concurrency IS NOT NULL "
                  "AND lowered_at <= $2::timestamptz AND (raised_at IS NULL OR raised_at <= $2::timestamptz)",
                  {job, claimed_at})
              .status());
    }
    if (outcome == v1::OBJECT_OUTCOME_PENDING || outcome == v1::OBJECT_OUTCOME_FAILED) {
      CF_RETURN_IF_ERROR(RecordFailure(tx, job, ns, key, r[0].Int(7), outcome, reason));
    }
    if (outcome != v1::OBJECT_OUTCOME_PENDING) {
      ended = true;
      v1::ObjectMigrated event;
      event.set_migration_id(job);
      auto* o = event.mutable_object();
      o->set_namespace_(ns);
      o->set_key(key);
      o->set_version(r[0].Int(0));
      o->set_size(r[0].Int(1));
      o->set_from_backend(r[0].Text(2));
      o->set_from_tier(static_cast<StorageTier>(r[0].Int(3)));
      o->set_to_backend(r[0].Text(4));
      o->set_to_tier(static_cast<StorageTier>(r[0].Int(5)));
      o->set_sha256(r[0].Text(6));
      o->set_attempts(static_cast<int32_t>(r[0].Int(7)));
      o->set_outcome(outcome);
      o->set_reason(reason);
      o->set_bytes_moved(outcome == v1::OBJECT_OUTCOME_MOVED && !to_backend.empty() ? size : 0);
      o->set_to_namespace(to_namespace);
      o->set_bytes_resumed(outcome == v1::OBJECT_OUTCOME_MOVED ? resumed : 0);
      o->set_verified(verified && outcome != v1::OBJECT_OUTCOME_FAILED);
      CF_RETURN_IF_ERROR(
          outbox_.Enqueue(tx, kJobTopic, events::MakeEnvelope("migration", job, job, event, clock_)));
    }
    return absl::OkStatus();
  }));
  // Whether the job has ended, looked at after this task's end is committed:
  // of tasks ending together, the last to commit sees all the others'
  // ends, so some look finds none open.
  if (ended) CF_RETURN_IF_ERROR(FinishIfDone(job));
  return absl::OkStatus();
}

absl::Status MigrationCore::FinishIfDone(const std::string& job) {
  // Open: claimed, waiting for a retry, or new after the claim cursor (none
  // is new before it).
  CF_ASSIGN_OR_RETURN(
      db::Result open,
      pool_.Exec("SELECT 1 FROM migration.jobs j WHERE j.id = $1::uuid AND (EXISTS (SELECT 1 FROM migration.tasks t "
                 "WHERE t.job_id = j.id AND t.outcome = 2) OR EXISTS (SELECT 1 FROM migration.tasks t WHERE t.job_id = "
                 "j.id AND t.outcome = 1 AND t.retry_at IS NOT NULL) OR EXISTS (SELECT 1 FROM migration.tasks t WHERE "
                 "t.job_id = j.id AND (t.job_id, t.namespace, t.key) > (j.id, j.claim_namespace, j.claim_key) AND "
                 "t.outcome = 1 AND t.retry_at IS NULL))",
                 {job}));
  if (!open.empty()) return absl::OkStatus();
  return pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_RETURN_IF_ERROR(tx.Exec("SELECT 1 FROM migration.jobs WHERE id = $1::uuid FOR UPDATE", {job}).status());
    return MaybeFinish(tx, job);
  });
}

}  // namespace cloudflux::migration
