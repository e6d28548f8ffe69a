#pragma once
// Classifier: one object's placement decision — its access statistics, the
// price catalog, the policy of its namespace/prefix and its latency need
// through pricing::Decide — and, when
// asked, the TierDecided event for a recommended move (outbox, topic
// cloudflux.classification.decisions). Thread-safe.

#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "access_stats.h"
#include "forecasts.h"
#include "policies.h"
#include "cloudflux/classification/v1/classification.pb.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/pricing/decide.h"

namespace cloudflux::classification {

inline constexpr char kDecisionTopic[] = "cloudflux.classification.decisions";

using pricing::DefaultPriceCatalogJson;
using pricing::ParseBackendClouds;

struct ClassifierOptions {
  std::map<std::string, pricing::CloudProvider> backend_clouds;
  int64_t default_max_latency_ms = 1000;
  pricing::TierPolicy policy;  // horizon, hysteresis, minimum age; constraints set per object
  ForecastSource* forecasts = nullptr;  // not owned; nullptr: heuristic only
};

class Classifier {
 public:
  Classifier(db::Pool& pool, AccessStatsStore& stats, PolicyStore& policies,
             const pricing::PriceCatalog& catalog, ClassifierOptions options,
             const core::Clock& clock = core::SystemClock::Get())
      : pool_(pool),
        stats_(stats),
        policies_(policies),
        catalog_(catalog),
        options_(std::move(options)),
        clock_(clock) {}

  absl::StatusOr<cloudflux::classification::v1::Classification> Classify(
      const cloudflux::classification::v1::ClassifyRequest& request);
  // Long scans stop with DEADLINE_EXCEEDED once `deadline` has passed.
  absl::StatusOr<cloudflux::classification::v1::ClassifyBatchResponse> ClassifyBatch(
      const cloudflux::classification::v1::ClassifyBatchRequest& request,
      absl::Time deadline = absl::InfiniteFuture());
  absl::StatusOr<cloudflux::classification::v1::Distribution> GetDistribution(
      const cloudflux::classification::v1::AnalyticsRequest& request);
  absl::StatusOr<cloudflux::classification::v1::CostBreakdown> GetCostBreakdown(
      const cloudflux::classification::v1::AnalyticsRequest& request,
      absl::Time deadline = absl::InfiniteFuture());
  absl::StatusOr<cloudflux::classification::v1::PotentialSavings> GetPotentialSavings(
      const cloudflux::classification::v1::PotentialSavingsRequest& request,
      absl::Time deadline = absl::InfiniteFuture());

  struct SweepResult {
    int64_t objects = 0;    // classified
    int64_t moves = 0;      // recommending a move
    int64_t published = 0;  // TierDecided written (moves not published before)
    int64_t errors = 0;     // objects that could not be priced
  };
  // Classifies every object and publishes TierDecided for each recommended
  // move that was not already published for the same version and target
  // (classification.object_stats.decided_*), a page per transaction.
  // Stops with CANCELLED between pages once `cancelled` returns true.
  absl::StatusOr<SweepResult> Sweep(const std::function<bool()>& cancelled = [] { return false; });

  // One object's decision, and what the analytics need of it.
  struct Decided {
    cloudflux::classification::v1::Classification classification;
    pricing::CostBreakdown current;  // the current placement over the horizon
    double move_cost = 0;            // of the recommended move (0 if none)
    std::optional<PolicyStore::PolicyCost> policy;  // the policy that applied (no costs filled)
  };

 private:
  // The first backend (by name) priced as `cloud`, "" if none.
  std::string BackendOf(pricing::CloudProvider cloud) const;
  // `rule`: the object's policy, if any. `latency_ms` 0 = policy/default.
  absl::StatusOr<Decided> Decide(const ObjectStats& s, const cloudflux::classification::v1::Policy* rule,
                                 int64_t latency_ms, absl::Time now, bool with_candidates,
                                 const std::optional<pricing::Forecast>& forecast) const;
  // Forecasts for `objects` (all nullopt without a source or when it fails).
  std::vector<std::optional<pricing::Forecast>> Forecasts(const std::vector<const ObjectStats*>& objects) const;
  // Policies read so far, per namespace.
  using PolicyCache = std::map<std::string, std::vector<cloudflux::classification::v1::Policy>>;
  // Decisions for `objects`, in order: one forecast request, each
  // namespace's policies read once into `policies`. Fails only when
  // policies cannot be read; an object that cannot be priced gets its error.
  absl::StatusOr<std::vector<absl::StatusOr<Decided>>> DecideAll(const std::vector<ObjectStats>& objects,
                                                                int64_t latency_ms, absl::Time now,
                                                                bool with_candidates, PolicyCache& policies);
  // Every object under ns/prefix (ns "" = all), a page at a time, with its
  // decision; objects that cannot be priced go to `on_error`.
  using Visit = std::function<absl::Status(const std::vector<std::pair<ObjectStats, Decided>>& page)>;
  absl::Status Scan(const std::string& ns, const std::string& prefix, int64_t latency_ms,
                    absl::Time deadline, const Visit& visit, int64_t* unpriced);
  // TierDecided for `decided` (moves only) and their decided_* marks, in one
  // transaction. Returns how many were written.
  absl::StatusOr<int64_t> Publish(const std::vector<const Decided*>& decided);

  db::Pool& pool_;
  AccessStatsStore& stats_;
  PolicyStore& policies_;
  const pricing::PriceCatalog& catalog_;
  ClassifierOptions options_;
  const core::Clock& clock_;
  events::Outbox outbox_{"classification"};
};

}  // namespace cloudflux::classification
