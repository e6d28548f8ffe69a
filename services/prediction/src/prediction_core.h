#pragma once
// PredictionCore: the prediction service's behaviour behind its gRPC API.
// - Serving: forecasts from the champion model (the TSB baseline until there
//   is one) over the histories in HistoryStore, with the prefix-group and
//   namespace means refreshed in the background.
// - Registry (prediction.models): every model with its backtest and its
//   artifact (stored through the storage adapter), one champion at a time.
// - Training: one replica at a time (a lease row), in a background thread;
//   the challenger is promoted only when its walk-forward backtest beats
//   both baselines and, scored on the same recent days, the champion.
//   Triggered by the API, a schedule and drift (the champion's recent RMSSE
//   above TSB's, or its 80 % interval coverage off target).
// - Events: ModelTrained and ModelPromoted through the outbox (topic
//   cloudflux.prediction.models).
// Thread-safe.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "artifact_store.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/pricing/catalog.h"
#include "cloudflux/pricing/decide.h"
#include "cloudflux/prediction/v1/prediction.pb.h"
#include "forecaster.h"
#include "history_store.h"

namespace cloudflux::prediction {

inline constexpr char kModelTopic[] = "cloudflux.prediction.models";
inline constexpr int kMaxBatchObjects = 1000;

struct CoreOptions {
  TrainingOptions training;
  int forecast_threads = 2;
  std::string holder;  // this replica, in the training lease
  absl::Duration training_lease = absl::Minutes(30);
  // RecommendTier: which cloud prices each backend, the default latency
  // need and the decision policy (as the classification service's flags).
  std::map<std::string, pricing::CloudProvider> backend_clouds;
  int64_t default_max_latency_ms = 1000;
  pricing::TierPolicy policy;
  // Drift: retrain when the champion's RMSSE over the last 7 days exceeds
  // TSB's times this, or its 80 % coverage leaves [low, high].
  double drift_rmsse_ratio = 1.0;
  double drift_coverage_low = 0.70, drift_coverage_high = 0.90;
  int min_objects_to_train = 20;
};

class PredictionCore {
 public:
  PredictionCore(db::Pool& pool, HistoryStore& histories, ArtifactStore& artifacts,
                 const pricing::PriceCatalog& catalog, CoreOptions options,
                 const core::Clock& clock = core::SystemClock::Get());
  ~PredictionCore();  // waits for a training run to finish

  absl::StatusOr<cloudflux::prediction::v1::ObjectForecast> Forecast(
      const cloudflux::prediction::v1::ForecastRequest& request);
  absl::StatusOr<cloudflux::prediction::v1::ForecastBatchResponse> ForecastBatch(
      const cloudflux::prediction::v1::ForecastBatchRequest& request);
  absl::StatusOr<cloudflux::prediction::v1::RecommendTierResponse> RecommendTier(
      const cloudflux::prediction::v1::RecommendTierRequest& request);

  absl::StatusOr<cloudflux::prediction::v1::ListModelsResponse> ListModels(
      const cloudflux::prediction::v1::ListModelsRequest& request);
  absl::StatusOr<cloudflux::prediction::v1::Model> GetModel(const std::string& version);
  // Starts a training run in the background; FAILED_PRECONDITION while one
  // runs anywhere.
  absl::StatusOr<cloudflux::prediction::v1::Model> Train(const std::string& trigger, const std::string& reason);
  absl::StatusOr<cloudflux::prediction::v1::Model> Promote(const std::string& version);
  absl::StatusOr<cloudflux::prediction::v1::Model> Rollback();

  // Background duties (main.cpp runs them periodically): load the champion
  // when it changed (another replica promoted), refresh the group means,
  // and check drift (training when off target).
  absl::Status RefreshChampion();
  absl::Status RefreshGroups();
  absl::Status CheckDrift();
  // Starts a training run when the champion is older than `max_age` (or
  // there is none and enough objects are known).
  absl::Status TrainIfDue(absl::Duration max_age);
  // Blocks until no training run of this replica is in progress.
  void WaitForTraining();
  // Stops this replica's training run within a boosting round (its model
  // is FAILED, "cancelled", and the lease is released so that another
  // replica can train), then waits for it; later Train calls are refused.
  // For shutdown.
  void CancelTraining();
  bool training() const { return training_.load(); }

 private:
  // The registry's champion was trained by another build (Load said
  // FAILED_PRECONDITION): forecasts come from the baselines, and a training
  // run starts unless one was started after that champion.
  absl::Status ChampionOfAnotherBuild(const std::string& version, const absl::Status& why);
  struct Champion {
    std::string version;
    std::shared_ptr<const Forecaster> forecaster;
    std::shared_ptr<const std::string> bytes;  // its artifact, for fresh instances
    int64_t adapted_origin = -1;               // the last origin its intervals observed
  };
  // Scores the champion's forecasts from `origin` and moves its intervals'
  // levels with the outcomes (on a fresh instance, stored in the registry,
  // then swapped in). The score is the one before the step.
  absl::StatusOr<OriginScore> AdaptIntervals(const Champion& champion, const std::vector<ObjectHistory>& objects,
                                             int origin);
  Champion CurrentChampion() const;
  std::shared_ptr<const GroupMeans> Groups();
  int Today() const;
  // Forecasts for `objects` from today, filled into protos.
  absl::StatusOr<std::vector<cloudflux::prediction::v1::ObjectForecast>> Run(
      const std::vector<StoredHistory>& objects, int horizon_days);
  absl::Status RunTraining(std::string version);
  // The lease row 'train' for this replica (false if another holds it).
  absl::StatusOr<bool> TakeLease();
  void ReleaseLease();
  absl::StatusOr<cloudflux::prediction::v1::Model> MakeChampion(db::Transaction& tx, const std::string& version,
                                                                bool rollback);

  db::Pool& pool_;
  HistoryStore& histories_;
  ArtifactStore& artifacts_;
  const pricing::PriceCatalog& catalog_;
  CoreOptions options_;
  const core::Clock& clock_;
  events::Outbox outbox_{"prediction"};

  mutable std::mutex mu_;
  Champion champion_;  // mu_
  std::string unusable_champion_;  // mu_: the champion another build trained, once seen
  std::shared_ptr<const GroupMeans> groups_;  // mu_
  int groups_day_ = -1;                       // mu_
  std::shared_ptr<const Forecaster> baseline_;
  std::atomic<bool> training_{false};
  std::atomic<bool> cancel_{false};
  std::thread trainer_;  // mu_
};

}  // namespace cloudflux::prediction
