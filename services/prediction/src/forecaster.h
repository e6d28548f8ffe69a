#pragma once
// Forecaster: the learned access forecast of the prediction service. One
// global model per target (each of the next 7 days, the 30/90/180-day sums:
// XGBoost, Tweedie loss) and per zero-probability window (7/30/90/180 days:
// logistic), trained on every object's history at origins every few days, calibrated
// by split conformal on the last origins (held out from training), with TSB
// and seasonal naive as the baselines it is scored against. A target without
// enough training rows falls back to TSB. ForecastBatch may run on several
// threads at once; Observe (the adaptive conformal step) must not run
// alongside it.

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "conformal.h"
#include "forecast_features.h"
#include "gbm.h"

namespace cloudflux::prediction {

// One object's daily reads. Days are absolute day numbers (any origin, the
// same for every object); reads[i] is day first_day + i.
struct ObjectHistory {
  std::string id;
  std::string ns;     // namespace
  std::string group;  // prefix group within the namespace
  int64_t size_bytes = 0;
  int first_day = 0;
  std::vector<double> reads;
};

// Mean reads per object and day of each group and namespace over the 7 and
// 28 days before a day (the features that carry a new object).
struct GroupMeans {
  std::map<std::string, std::pair<double, double>> group, ns;
  static GroupMeans At(const std::vector<ObjectHistory>& objects, int day);
  void Fill(const ObjectHistory& o, ObjectContext& context) const;
};

inline constexpr std::array<int, 4> kZeroWindows = {7, 30, 90, 180};
// Confidence grows with the days an object has been seen, full after this.
inline constexpr int kConfidentAfterDays = 28;

struct ObjectForecast {
  std::array<double, kTargets> mean{};  // 7 daily, then the 30/90/180-day sums
  std::array<Interval, kTargets> p80{}, p95{};
  std::array<double, kZeroWindows.size()> p_zero{};  // no read within 7/30/90/180 days
  // In [0, 1]: from the 80 % interval of the 30-day sum, scaled by the days
  // seen (full after kConfidentAfterDays); 0 without a learned 30-day model.
  double confidence = 0;
  bool learned = false;   // false: the TSB fallback
  double next_7_days() const;
};

struct TrainingOptions {
  // Origins every 3 days: their weekdays rotate, so that the model sees
  // every weekday as the first day to forecast.
  int origin_stride_days = 3;
  int calibration_origins = 7;  // per target, the last origins, held out
  int max_origins = 40;         // most recent origins each model trains on
  // Before those, sparser origins for the long sums: a 180-day window ends
  // by as_of only from an origin 180 days back, which the recent origins
  // (max_origins x stride days) do not reach.
  int long_origins = 20;
  int long_origin_stride_days = 9;
  size_t min_training_rows = 200;
  GbmParams params;
  GbmParams zero_params{.objective = "binary:logistic", .rounds = 20};
  // When set and true, training stops within a boosting round and Train
  // answers CANCELLED (a replica shutting down).
  const std::atomic<bool>* cancel = nullptr;
};

// Backtest on the held-out origins: pooled RMSSE over objects of the 7 daily
// forecasts, for the learned model and both baselines.
struct BacktestMetrics {
  double rmsse_model = -1, rmsse_tsb = -1, rmsse_seasonal_naive = -1;
  int64_t scored = 0;         // (object, origin) pairs scored
  int64_t training_rows = 0;  // rows of the 1-day target
  int64_t calibration_rows = 0;
};

// A forecaster's walk-forward score at one origin: its 7 daily forecasts
// from the origin, against what happened on those days, pooled over the
// objects that existed before it (and the baselines' on the same objects).
struct OriginScore {
  double rmsse_model = -1, rmsse_tsb = -1, rmsse_seasonal_naive = -1;
  double coverage80 = -1, coverage95 = -1;  // share of days inside the intervals
  int64_t scored = 0;
};

class Forecaster {
 public:
  // No learned model: every target is TSB's forecast, confidence 0.
  static std::unique_ptr<Forecaster> Baseline();
  // Trains on what was known before day `as_of` (no look-ahead: a target
  // window is used only when it ends by as_of).
  static absl::StatusOr<std::unique_ptr<Forecaster>> Train(const std::vector<ObjectHistory>& objects,
                                                           int as_of, const TrainingOptions& options = {});
  // INVALID_ARGUMENT for bytes Save did not write; FAILED_PRECONDITION for a
  // model trained on other features than FeatureNames() (another build's).
  static absl::StatusOr<std::unique_ptr<Forecaster>> Load(std::string_view bytes);
  absl::StatusOr<std::string> Save() const;

  // Forecasts from day `as_of` on for objects whose reads are known before
  // it, on `threads` threads.
  absl::StatusOr<std::vector<ObjectForecast>> ForecastBatch(const std::vector<const ObjectHistory*>& objects,
                                                            int as_of, const GroupMeans& groups,
                                                            int threads = 1) const;

  // Scores the forecasts from `origin` (which must be at least 7 days
  // before the end of the histories) on `threads` threads.
  absl::StatusOr<OriginScore> ScoreAt(const std::vector<ObjectHistory>& objects, int origin,
                                      int threads = 1) const;

  const BacktestMetrics& metrics() const { return metrics_; }
  int trained_as_of() const { return as_of_; }
  // Targets that have a learned model.
  int learned_targets() const;

  // Adaptive conformal step with what happened after a forecast.
  void Observe(const ObjectForecast& forecast, Activity activity, int target, double actual);
  // ScoreAt, then every scored day's outcome fed to Observe: the intervals
  // of forecasts made from now on follow the coverage seen at `origin`. The
  // score is the one before the adaptation. Not alongside ForecastBatch.
  absl::StatusOr<OriginScore> Adapt(const std::vector<ObjectHistory>& objects, int origin, int threads = 1);
  // The adaptive conformal state (what Observe has moved), to carry over to
  // another instance of the same model.
  std::string AdaptiveLevels() const { return conformal_.SerializeLevels(); }
  absl::Status SetAdaptiveLevels(std::string_view levels) { return conformal_.ParseLevels(levels); }

 private:
  Forecaster() = default;
  // ScoreAt; with `observer` (this forecaster, from Adapt), each scored
  // outcome also goes to its Observe.
  absl::StatusOr<OriginScore> Score(const std::vector<ObjectHistory>& objects, int origin, int threads,
                                    Forecaster* observer) const;
  // The forecasts of rows `x` (their activity classes and TSB forecasts).
  absl::Status FillForecasts(const FeatureMatrix& x, const std::vector<Activity>& activity,
                             const std::vector<double>& tsb, ObjectForecast* out) const;
  std::array<std::optional<GbmModel>, kTargets> models_;
  std::array<std::optional<GbmModel>, kZeroWindows.size()> zero_models_;
  ConformalCalibrator conformal_;
  BacktestMetrics metrics_;
  int as_of_ = 0;
};

// The reads of `o` before day `day` (empty if it did not exist yet).
std::span<const double> HistoryBefore(const ObjectHistory& o, int day);

}  // namespace cloudflux::prediction
