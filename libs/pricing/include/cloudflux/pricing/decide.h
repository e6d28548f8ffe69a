#pragma once
// The tier decision CloudFlux makes for one object: expected use from its
// access statistics (or a forecast), every candidate priced by the cost
// model, and a move only when it pays for itself over the horizon with a
// margin (hysteresis, so objects do not flap). The classification service
// and the trace simulator (bench/classification) both run this code.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cloudflux/pricing/cost_model.h"

namespace cloudflux::pricing {

struct AccessStats {
  int64_t size = 0;
  double age_days = 0;       // since the object was written
  double days_in_class = 0;  // since it entered its current class
  int64_t reads_1d = 0, reads_7d = 0, reads_30d = 0, reads_90d = 0;
  // Since the last read (or the write when never read); negative = unknown.
  double days_since_last_read = -1;
};

// A forecast from the prediction service, when it has one.
struct Forecast {
  double reads_next_7d = 0;
  double confidence = 0;  // 0..1: how much it outweighs the counts
};

struct TierPolicy {
  bool auto_tiering = true;
  Constraints constraints;
  std::optional<StorageTier> pinned_tier;  // always this tier (in the current cloud)
  int64_t min_object_size = 0;  // smaller objects are never moved
  double horizon_days = 90;
  // A move must save this fraction of the current placement's cost over the
  // horizon on top of paying for itself.
  double hysteresis = 0.1;
  // Objects younger than this are left where they were written: a few quiet
  // days say little about the reads to come.
  double min_observed_days = 14;
  // How a forecast weighs in on an object already placed:
  //  kDecides: it replaces the counts (weighted by its confidence);
  //  kConfirms: a move happens only where the counts alone would move the
  //    object too, to the class the forecast chooses (it can stop or
  //    redirect a move, never start one);
  //  kVetoes: the counts' move happens only if the forecast would move the
  //    object too (it can only stop a move).
  enum class ForecastRole { kDecides, kConfirms, kVetoes };
  ForecastRole forecast_role = ForecastRole::kDecides;
};

// "decides", "confirms" or "vetoes"; INVALID_ARGUMENT otherwise.
absl::StatusOr<TierPolicy::ForecastRole> ParseForecastRole(std::string_view name);

struct Decision {
  const ClassPrice* target = nullptr;  // where the object should be
  bool move = false;                   // target differs from the current class
  Usage expected;                      // over the horizon
  double current_monthly = 0;
  double target_monthly = 0;
  double saving = 0;  // over the horizon, the move's cost included
  std::vector<CostBreakdown> candidates;  // cheapest first
  std::string reason;
};

// Expected reads over `horizon_days`: a blend of the 7/30/90-day read rates
// (recent weighted most), or the forecast weighted by its confidence.
Usage EstimateUsage(const AccessStats& stats, double horizon_days, const std::optional<Forecast>& forecast);

// A placement without a class (cls nullptr) asks where to write a new object.
Decision Decide(const PriceCatalog& catalog, const AccessStats& stats, const Placement& current,
                const TierPolicy& policy, const std::optional<Forecast>& forecast = std::nullopt);

}  // namespace cloudflux::pricing
