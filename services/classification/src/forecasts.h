#pragma once
// ForecastSource: where the classifier gets access forecasts (the
// prediction service's 7-day forecasts with confidence). Without one, or
// for objects it has none for, or while it fails, decisions use the
// heuristic from windowed counts (pricing::EstimateUsage).

#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "access_stats.h"
#include "cloudflux/pricing/decide.h"

namespace cloudflux::classification {

class ForecastSource {
 public:
  virtual ~ForecastSource() = default;
  // One entry per object, in order: its forecast, or nullopt if there is
  // none. An error means the source could not be asked at all.
  virtual absl::StatusOr<std::vector<std::optional<pricing::Forecast>>> Get(
      const std::vector<const ObjectStats*>& objects) = 0;
};

}  // namespace cloudflux::classification
