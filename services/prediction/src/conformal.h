#pragma once
// Conformal prediction intervals for the forecasts. Split conformal: the
// residuals of forecasts on a held-out window (never trained on), scaled by
// sqrt(forecast + 1) so that busy and quiet objects share one table, give per
// target and activity class the quantiles that make
//   [forecast + q_lo * s, forecast + q_hi * s],  s = sqrt(forecast + 1),
// cover a chosen share of outcomes (lower bound clamped at 0). Adaptive
// conformal inference (Gibbs & Candès 2021) then moves each cell's
// miscoverage level after every scored interval,
//   alpha <- alpha + gamma * (alpha_target - miss),
// so that coverage holds when the workload drifts (a level driven below 0
// gives an unbounded upper bound until it recovers). Not thread-safe for
// Update; Bounds may run concurrently with other Bounds.

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "forecast_features.h"

namespace cloudflux::prediction {

struct Interval {
  double lower = 0, upper = 0;
};

inline constexpr std::array<double, 2> kIntervalLevels = {0.8, 0.95};

class ConformalCalibrator {
 public:
  // Collecting: one held-out residual.
  void Add(int target, Activity activity, double forecast, double actual);
  // Sorts what was collected (call once after the Adds).
  void Finish();

  // The interval at `level` (one of kIntervalLevels) for a forecast.
  Interval Bounds(int target, Activity activity, double forecast, double level) const;
  // Adaptive step: the interval at `level` did (or did not) cover.
  void Update(int target, Activity activity, double level, bool covered, double gamma = 0.005);

  // Residuals a cell holds (a cell with fewer than kMinCell uses its
  // target's residuals of every class).
  size_t count(int target, Activity activity) const;
  static constexpr size_t kMinCell = 50;

  std::string Serialize() const;
  static absl::StatusOr<ConformalCalibrator> Parse(std::string_view text);
  // The adaptive state alone (each cell's levels, a few hundred bytes), to
  // share what Update learned without the residuals.
  std::string SerializeLevels() const;
  // INVALID_ARGUMENT (and nothing changed) for text SerializeLevels did not
  // write.
  absl::Status ParseLevels(std::string_view text);

 private:
  static constexpr size_t kMaxKept = 4000;  // per cell, evenly thinned
  struct Cell {
    std::vector<double> scaled;  // sorted after Finish
    std::array<double, kIntervalLevels.size()> alpha = {1 - kIntervalLevels[0], 1 - kIntervalLevels[1]};
  };
  const Cell& Resolve(int target, Activity activity) const;
  static size_t LevelIndex(double level);
  std::array<std::array<Cell, kActivityClasses + 1>, kTargets> cells_;  // [.., kActivityClasses] = pooled
};

}  // namespace cloudflux::prediction
