#include "policies.h"

#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cloudflux/core/names.h"
#include "cloudflux/core/status.h"
#include "cloudflux/server/paging.h"

namespace cloudflux::classification {

namespace v1 = cloudflux::classification::v1;
using cloudflux::common::v1::CloudProvider;
using cloudflux::common::v1::CloudProvider_IsValid;
using cloudflux::common::v1::CloudProvider_Name;
using cloudflux::common::v1::StorageTier;
using cloudflux::common::v1::StorageTier_IsValid;
using cloudflux::common::v1::StorageTier_Name;

namespace {

absl::Status ValidateRef(const std::string& ns, const std::string& prefix) {
  CF_RETURN_IF_ERROR(core::Annotate(core::ValidateNamespace(ns), "policy"));
  return core::ValidatePrefix(prefix, "policy prefix");
}

}  // namespace

absl::Status PolicyStore::Validate(const v1::Policy& p) const {
  CF_RETURN_IF_ERROR(ValidateRef(p.namespace_(), p.prefix()));
  std::set<CloudProvider> clouds;
  for (int c : p.allowed_clouds()) {
    if (!CloudProvider_IsValid(c) || c == cloudflux::common::v1::CLOUD_PROVIDER_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("allowed_clouds has an unknown cloud (", c, ")"));
    }
    clouds.insert(static_cast<CloudProvider>(c));
  }
  std::set<StorageTier> tiers;
  for (int t : p.allowed_tiers()) {
    if (!StorageTier_IsValid(t) || t == cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("allowed_tiers has an unknown tier (", t, ")"));
    }
    tiers.insert(static_cast<StorageTier>(t));
  }
  if (!StorageTier_IsValid(p.pinned_tier())) {
    return absl::InvalidArgumentError(absl::StrCat("pinned_tier is unknown (", p.pinned_tier(), ")"));
  }
  if (p.max_first_byte_latency_ms() < 0) {
    return absl::InvalidArgumentError("max_first_byte_latency_ms must not be negative");
  }
  if (p.min_object_size() < 0) return absl::InvalidArgumentError("min_object_size must not be negative");
  if (!std::isfinite(p.monthly_cost_ceiling()) || p.monthly_cost_ceiling() < 0) {
    return absl::InvalidArgumentError("monthly_cost_ceiling must be a non-negative amount");
  }
  bool pinned = p.pinned_tier() != cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED;
  if (pinned && !tiers.empty() && !tiers.count(p.pinned_tier())) {
    return absl::InvalidArgumentError(absl::StrCat("contradictory policy: pinned_tier ",
                                                   StorageTier_Name(p.pinned_tier()),
                                                   " is not among allowed_tiers"));
  }
  if (pinned && p.has_auto_tiering() && !p.auto_tiering()) {
    return absl::InvalidArgumentError(
        "contradictory policy: a pinned tier needs moves, but auto_tiering is off");
  }
  // Some class of the catalog must satisfy everything at once.
  for (CloudProvider c : clouds) {
    bool priced = false;
    for (const pricing::ClassPrice* cls : catalog_.classes()) priced |= cls->cloud() == c;
    if (!priced) {
      return absl::InvalidArgumentError(
          absl::StrCat("allowed_clouds names ", CloudProvider_Name(c), ", which the price catalog lacks"));
    }
  }
  bool any = false, any_fast_enough = false;
  for (const pricing::ClassPrice* cls : catalog_.classes()) {
    if (!clouds.empty() && !clouds.count(cls->cloud())) continue;
    if (!tiers.empty() && !tiers.count(cls->tier())) continue;
    if (pinned && cls->tier() != p.pinned_tier()) continue;
    any = true;
    any_fast_enough |= p.max_first_byte_latency_ms() == 0 ||
                       cls->first_byte_latency_ms() <= p.max_first_byte_latency_ms();
  }
  if (!any) {
    return absl::InvalidArgumentError(
        "contradictory policy: no storage class of the allowed clouds has an allowed tier");
  }
  if (!any_fast_enough) {
    return absl::InvalidArgumentError(absl::StrCat(
        "contradictory policy: no allowed ", pinned ? "class of the pinned tier" : "class",
        " has its first byte within ", p.max_first_byte_latency_ms(), " ms"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Policy> PolicyStore::Write(v1::Policy policy, bool create) {
  CF_RETURN_IF_ERROR(Validate(policy));
  policy.set_updated_at_micros(absl::ToUnixMicros(clock_.Now()));
  // Measurements are the sweep's, never the caller's.
  policy.clear_measured_objects();
  policy.clear_measured_monthly_cost();
  policy.clear_measured_at_micros();
  std::vector<db::Param> params = {policy.namespace_(), policy.prefix(),
                                   db::Bytea(policy.SerializeAsString()),
                                   std::to_string(policy.updated_at_micros())};
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      pool_.Exec(create ? "INSERT INTO classification.policies (namespace, prefix, body, updated_at) "
                          "VALUES ($1, $2, $3::bytea, to_timestamp($4::double precision / 1000000)) "
                          "ON CONFLICT DO NOTHING"
                        : "UPDATE classification.policies SET body = $3::bytea, updated_at = "
                          "to_timestamp($4::double precision / 1000000) WHERE namespace = $1 AND "
                          "prefix = $2",
                 params));
  if (r.affected_rows() == 0) {
    return create ? absl::AlreadyExistsError(absl::StrCat("policy ", Name(policy), " exists"))
                  : absl::NotFoundError(absl::StrCat("no policy ", Name(policy)));
  }
  return policy;
}

absl::StatusOr<v1::Policy> PolicyStore::Create(v1::Policy policy) { return Write(std::move(policy), true); }
absl::StatusOr<v1::Policy> PolicyStore::Update(v1::Policy policy) { return Write(std::move(policy), false); }

namespace {
// A policy row: its body and what the last sweep measured (Parse's columns).
const std::string kColumns =
    "body, measured_objects, measured_monthly_cost, (extract(epoch from measured_at) * 1000000)::bigint";

absl::StatusOr<v1::Policy> Parse(const db::Row& row, int column) {
  v1::Policy p;
  if (!p.ParseFromString(row.Bytes(column))) return absl::DataLossError("a stored policy does not parse");
  if (!row.IsNull(column + 1)) {
    p.set_measured_objects(row.Int(column + 1));
    p.set_measured_monthly_cost(std::stod(row.Text(column + 2)));
    p.set_measured_at_micros(row.Int(column + 3));
  }
  return p;
}
}  // namespace

absl::StatusOr<v1::Policy> PolicyStore::Get(const v1::PolicyRef& ref) {
  CF_RETURN_IF_ERROR(ValidateRef(ref.namespace_(), ref.prefix()));
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec("SELECT " + kColumns + " FROM classification.policies WHERE namespace = $1 AND "
                                 "prefix = $2",
                                 {ref.namespace_(), ref.prefix()}));
  if (rows.empty()) {
    return absl::NotFoundError(absl::StrCat("no policy ", Name(ref.namespace_(), ref.prefix())));
  }
  return Parse(rows[0], 0);
}

absl::Status PolicyStore::Delete(const v1::PolicyRef& ref) {
  CF_RETURN_IF_ERROR(ValidateRef(ref.namespace_(), ref.prefix()));
  CF_ASSIGN_OR_RETURN(db::Result r,
                      pool_.Exec("DELETE FROM classification.policies WHERE namespace = $1 AND "
                                 "prefix = $2",
                                 {ref.namespace_(), ref.prefix()}));
  if (r.affected_rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no policy ", Name(ref.namespace_(), ref.prefix())));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ListPoliciesResponse> PolicyStore::List(const v1::ListPoliciesRequest& request) {
  CF_ASSIGN_OR_RETURN(server::PageCursor page, server::ParsePage(request.page(), 100, 1000));
  if (!request.namespace_().empty()) CF_RETURN_IF_ERROR(core::ValidateNamespace(request.namespace_()));
  // Cursor: namespace and prefix, NUL-separated (neither holds a NUL).
  std::string after_ns, after_prefix;
  bool resume = !page.after.empty();
  if (resume) {
    auto nul = page.after.find('\0');
    if (nul == std::string::npos) return absl::InvalidArgumentError("page_token is not valid");
    after_ns = page.after.substr(0, nul);
    after_prefix = page.after.substr(nul + 1);
  }
  CF_ASSIGN_OR_RETURN(
      db::Result rows,
      pool_.Exec("SELECT " + kColumns + ", namespace, prefix FROM classification.policies WHERE ($1 = '' OR "
                 "namespace = $1) AND (NOT $2::bool OR (namespace, prefix) > ($3, $4)) ORDER BY "
                 "namespace, prefix LIMIT $5",
                 {request.namespace_(), resume ? "t" : "f", after_ns, after_prefix,
                  std::to_string(page.size + 1)}));
  v1::ListPoliciesResponse out;
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < page.size; ++i) {
    CF_ASSIGN_OR_RETURN(*out.add_policies(), Parse(rows[i], 0));
  }
  if (static_cast<int>(rows.size()) > page.size) {
    const db::Row& last = rows[page.size - 1];
    std::string cursor = last.Text(4);
    cursor.push_back('\0');
    cursor += last.Text(5);
    out.mutable_page()->set_next_page_token(server::PageToken(cursor));
  }
  out.mutable_page()->set_total_size(-1);
  return out;
}

absl::StatusOr<std::optional<v1::Policy>> PolicyStore::ForObject(const std::string& ns,
                                                                 const std::string& key) {
  CF_ASSIGN_OR_RETURN(std::vector<v1::Policy> of_ns, ForNamespace(ns));
  const v1::Policy* p = ForKey(of_ns, key);
  return p == nullptr ? std::optional<v1::Policy>() : std::optional<v1::Policy>(*p);
}

absl::StatusOr<std::vector<v1::Policy>> PolicyStore::ForNamespace(const std::string& ns) {
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec("SELECT " + kColumns + " FROM classification.policies WHERE namespace = $1", {ns}));
  std::vector<v1::Policy> out;
  for (const db::Row& r : rows) {
    CF_ASSIGN_OR_RETURN(v1::Policy p, Parse(r, 0));
    out.push_back(std::move(p));
  }
  return out;
}

const v1::Policy* PolicyStore::ForKey(const std::vector<v1::Policy>& policies, const std::string& key) {
  const v1::Policy* best = nullptr;
  for (const auto& p : policies) {
    if (absl::StartsWith(key, p.prefix()) && (best == nullptr || p.prefix().size() > best->prefix().size())) {
      best = &p;
    }
  }
  return best;
}

absl::Status PolicyStore::RecordCosts(const std::vector<PolicyCost>& costs) {
  std::vector<std::string> ns, prefix, objects, cost;
  for (const auto& c : costs) {
    ns.push_back(c.ns);
    prefix.push_back(c.prefix);
    objects.push_back(std::to_string(c.objects));
    cost.push_back(absl::StrCat(c.monthly_cost));
  }
  // Policies under which no object was found measured zero.
  return pool_
      .Exec("UPDATE classification.policies p SET measured_objects = coalesce(u.objects, 0), "
            "measured_monthly_cost = coalesce(u.cost, 0), measured_at = now() FROM "
            "classification.policies q LEFT JOIN unnest($1::text[], $2::text[], $3::bigint[], "
            "$4::double precision[]) AS u(ns, prefix, objects, cost) ON u.ns = q.namespace AND "
            "u.prefix = q.prefix WHERE p.namespace = q.namespace AND p.prefix = q.prefix",
            {db::ArrayLiteral(ns), db::ArrayLiteral(prefix), db::ArrayLiteral(objects), db::ArrayLiteral(cost)})
      .status();
}

std::string PolicyStore::Name(const std::string& ns, const std::string& prefix) {
  return absl::StrCat(ns, "/", prefix);
}

bool PolicyStore::OverCeiling(const v1::Policy& policy) {
  return policy.monthly_cost_ceiling() > 0 && policy.measured_monthly_cost() > policy.monthly_cost_ceiling();
}

pricing::TierPolicy PolicyStore::Apply(const v1::Policy& policy, pricing::TierPolicy base) {
  if (policy.has_auto_tiering()) base.auto_tiering = policy.auto_tiering();
  for (int t : policy.allowed_tiers()) base.constraints.allowed_tiers.insert(static_cast<StorageTier>(t));
  if (policy.max_first_byte_latency_ms() > 0) {
    base.constraints.max_first_byte_latency_ms = policy.max_first_byte_latency_ms();
  }
  if (policy.pinned_tier() != cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED) {
    base.pinned_tier = policy.pinned_tier();
  }
  base.min_object_size = std::max(base.min_object_size, policy.min_object_size());
  // Over its cost ceiling: any move that pays for itself, no margin.
  if (OverCeiling(policy)) base.hysteresis = 0;
  return base;
}

}  // namespace cloudflux::classification
