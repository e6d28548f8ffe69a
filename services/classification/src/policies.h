#pragma once
// PolicyStore: placement policies per namespace and key prefix
// (classification.policies). Every write is validated against the price
// catalog first: unknown clouds or tiers, negative limits, and contradictory
// combinations (a pinned tier outside the allowed ones or slower than the
// latency limit, no allowed class meeting the limit, a pin with
// auto-tiering off) are INVALID_ARGUMENT and change nothing. Thread-safe.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cloudflux/classification/v1/classification.pb.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"
#include "cloudflux/pricing/decide.h"

namespace cloudflux::classification {

class PolicyStore {
 public:
  PolicyStore(db::Pool& pool, const pricing::PriceCatalog& catalog,
              const core::Clock& clock = core::SystemClock::Get())
      : pool_(pool), catalog_(catalog), clock_(clock) {}

  // OK or INVALID_ARGUMENT saying what is wrong.
  absl::Status Validate(const cloudflux::classification::v1::Policy& policy) const;

  absl::StatusOr<cloudflux::classification::v1::Policy> Create(
      cloudflux::classification::v1::Policy policy);
  absl::StatusOr<cloudflux::classification::v1::Policy> Update(
      cloudflux::classification::v1::Policy policy);
  absl::StatusOr<cloudflux::classification::v1::Policy> Get(
      const cloudflux::classification::v1::PolicyRef& ref);
  absl::Status Delete(const cloudflux::classification::v1::PolicyRef& ref);
  absl::StatusOr<cloudflux::classification::v1::ListPoliciesResponse> List(
      const cloudflux::classification::v1::ListPoliciesRequest& request);

  // The policy with the longest prefix of `key` in `ns`, if any.
  absl::StatusOr<std::optional<cloudflux::classification::v1::Policy>> ForObject(
      const std::string& ns, const std::string& key);
  // Every policy of `ns`, for many ForKey lookups without a query each.
  absl::StatusOr<std::vector<cloudflux::classification::v1::Policy>> ForNamespace(const std::string& ns);
  // The one of `policies` (one namespace's) with the longest prefix of `key`.
  static const cloudflux::classification::v1::Policy* ForKey(
      const std::vector<cloudflux::classification::v1::Policy>& policies, const std::string& key);

  // What the objects under each policy cost per month (a sweep's
  // measurement); policies not listed measured nothing.
  struct PolicyCost {
    std::string ns, prefix;
    int64_t objects = 0;
    double monthly_cost = 0;
  };
  absl::Status RecordCosts(const std::vector<PolicyCost>& costs);
  // Its measured monthly cost exceeds its ceiling.
  static bool OverCeiling(const cloudflux::classification::v1::Policy& policy);
  // "namespace/prefix", how errors and classifications name a policy.
  static std::string Name(const std::string& ns, const std::string& prefix);
  static std::string Name(const cloudflux::classification::v1::Policy& policy) {
    return Name(policy.namespace_(), policy.prefix());
  }

  // `policy` applied on top of `base` (constraints, pin, size, auto-tiering;
  // no hysteresis while over its cost ceiling).
  static pricing::TierPolicy Apply(const cloudflux::classification::v1::Policy& policy,
                                   pricing::TierPolicy base);

 private:
  absl::StatusOr<cloudflux::classification::v1::Policy> Write(
      cloudflux::classification::v1::Policy policy, bool create);

  db::Pool& pool_;
  const pricing::PriceCatalog& catalog_;
  const core::Clock& clock_;
};

}  // namespace cloudflux::classification
