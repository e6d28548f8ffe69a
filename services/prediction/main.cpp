// cloudflux-prediction: composition root of the prediction service.
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "artifact_store.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/periodic.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/events/batch_ingest.h"
#include "cloudflux/events/object_events.h"
#include "cloudflux/server/executor.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"
#include "grpc_service.h"
#include "history_store.h"
#include "prediction_core.h"

ABSL_FLAG(std::string, storage_address, "127.0.0.1:50052",
          "The storage adapter (host:port): model artifacts are stored through it.");
ABSL_FLAG(int32_t, history_batch, 5000, "Most object events applied to the histories at once.");
ABSL_FLAG(int32_t, history_consumers, 2, "Consumer-group members writing histories in parallel in this process.");
ABSL_FLAG(std::string, history_group, "cloudflux-prediction-histories",
          "Kafka consumer group of the histories (one per deployment).");
ABSL_FLAG(absl::Duration, history_session_timeout, absl::Seconds(10),
          "How long a silent ingest member keeps its partitions before the group hands them on.");
ABSL_FLAG(absl::Duration, train_interval, absl::Hours(24),
          "Train a challenger when the newest model is older than this; 0 = only through the API or drift.");
ABSL_FLAG(absl::Duration, drift_check_interval, absl::Hours(6),
          "How often the champion's last 7 days are scored against TSB and its intervals' coverage (a "
          "challenger is trained when off target); 0 = never.");
ABSL_FLAG(absl::Duration, training_lease, absl::Minutes(30),
          "How long a replica's claim to train lasts (a replica that dies frees it after this).");
ABSL_FLAG(int32_t, forecast_threads, 2, "Threads of one large forecast batch (and of training's scoring).");
ABSL_FLAG(int32_t, min_objects_to_train, 20, "Fewer objects with a history than this: no training.");
ABSL_FLAG(int32_t, model_rounds, cloudflux::prediction::GbmParams{}.rounds,
          "Boosting rounds of each count model (more: slower forecasts; see bench/RESULTS.md for the trade).");
ABSL_FLAG(double, model_learning_rate, cloudflux::prediction::GbmParams{}.learning_rate,
          "Learning rate of each model.");
ABSL_FLAG(std::string, price_catalog, "",
          "Price catalog JSON for RecommendTier; empty = the one built in (config/price_catalog.json).");
ABSL_FLAG(std::string, backend_clouds, "",
          "Which cloud's prices apply to each storage backend: \"s3=aws,gcs=gcp,azure=azure\".");
ABSL_FLAG(int64_t, default_max_latency_ms, 1000, "Time to first byte objects need unless a request says.");
ABSL_FLAG(double, horizon_days, 90, "Decision horizon of RecommendTier.");
ABSL_FLAG(double, hysteresis, 0.1, "Share of the current cost a move must save beyond its own cost.");
ABSL_FLAG(double, min_observed_days, 14, "Objects younger than this are not moved.");
ABSL_FLAG(std::string, forecast_role, "vetoes",
          "What RecommendTier lets the forecast do, as classification's flag of that name: vetoes, confirms or "
          "decides.");
ABSL_FLAG(int32_t, handler_threads, 8, "Threads that run request handlers.");

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "prediction", .schema = "prediction", .default_port = 50054, .uses_redis = false}, argc, argv);
  namespace pr = cloudflux::prediction;
  auto fail = [](const std::string& what, const absl::Status& s) {
    cloudflux::core::LogError(what, {{"error", std::string(s.message())}});
    return 1;
  };
  auto catalog = cloudflux::pricing::LoadCatalogOrDefault(absl::GetFlag(FLAGS_price_catalog));
  if (!catalog.ok()) return fail("bad price catalog", catalog.status());
  auto clouds = cloudflux::pricing::ParseBackendClouds(absl::GetFlag(FLAGS_backend_clouds));
  if (!clouds.ok()) return fail("bad --backend_clouds", clouds.status());

  pr::HistoryStore histories(app->pool());
  auto ingest = cloudflux::events::BatchIngest::Start(
      [&histories](const std::vector<cloudflux::events::ConsumedMessage>& batch) {
        return histories.ApplyMessages(batch);
      },
      {.kafka = app->kafka_options(),
       .group_id = absl::GetFlag(FLAGS_history_group),
       .topic = cloudflux::events::kObjectTopic,
       .max_batch = static_cast<size_t>(absl::GetFlag(FLAGS_history_batch)),
       .consumers = absl::GetFlag(FLAGS_history_consumers),
       .session_timeout = absl::GetFlag(FLAGS_history_session_timeout),
       .registry = &app->metrics().registry(),
       .metric_prefix = "cloudflux_prediction_ingest",
       .what = "history batch"});
  if (!ingest.ok()) return fail("cannot consume object events", ingest.status());
  app->runner().AddDependency("histories", [&](absl::Duration) { return (*ingest)->Health(); });
  app->OnStop([&] { (*ingest)->Stop(); });

  pr::ArtifactStore artifacts(
      cloudflux::server::MakeChannel(absl::GetFlag(FLAGS_storage_address), app->peer_channel_options()),
      [&app](grpc::ClientContext& ctx) { return app->AuthorizeCall(ctx); });
  pr::CoreOptions options;
  const char* host = std::getenv("HOSTNAME");
  options.holder = absl::StrCat(host != nullptr ? host : "prediction", "-", cloudflux::core::NewId());
  options.training_lease = absl::GetFlag(FLAGS_training_lease);
  options.forecast_threads = absl::GetFlag(FLAGS_forecast_threads);
  options.min_objects_to_train = absl::GetFlag(FLAGS_min_objects_to_train);
  if (absl::GetFlag(FLAGS_model_rounds) < 1 || !(absl::GetFlag(FLAGS_model_learning_rate) > 0) ||
      absl::GetFlag(FLAGS_model_learning_rate) > 1) {
    return fail("bad flags", absl::InvalidArgumentError("--model_rounds must be positive and "
                                                        "--model_learning_rate in (0, 1]"));
  }
  options.training.params.rounds = absl::GetFlag(FLAGS_model_rounds);
  options.training.params.learning_rate = options.training.zero_params.learning_rate =
      absl::GetFlag(FLAGS_model_learning_rate);
  options.backend_clouds = std::move(*clouds);
  options.default_max_latency_ms = absl::GetFlag(FLAGS_default_max_latency_ms);
  options.policy.horizon_days = absl::GetFlag(FLAGS_horizon_days);
  options.policy.hysteresis = absl::GetFlag(FLAGS_hysteresis);
  options.policy.min_observed_days = absl::GetFlag(FLAGS_min_observed_days);
  auto forecast_role = cloudflux::pricing::ParseForecastRole(absl::GetFlag(FLAGS_forecast_role));
  if (!forecast_role.ok()) return fail("bad --forecast_role", forecast_role.status());
  options.policy.forecast_role = *forecast_role;
  pr::PredictionCore core(app->pool(), histories, artifacts, *catalog, std::move(options));

  // The champion (promoted by any replica) and the group means follow the
  // database; training runs on schedule and on drift.
  auto warn = [](const char* what, const absl::Status& s) {
    if (!s.ok()) cloudflux::core::LogWarn(what, {{"error", std::string(s.message())}});
  };
  cloudflux::core::PeriodicTask refresh(absl::Seconds(10), [&] {
    warn("cannot load the champion model", core.RefreshChampion());
  });
  cloudflux::core::PeriodicTask groups(absl::Minutes(5), [&] {
    warn("cannot refresh the group means", core.RefreshGroups());
  });
  refresh.Wake();
  std::optional<cloudflux::core::PeriodicTask> schedule, drift;
  if (absl::Duration every = absl::GetFlag(FLAGS_train_interval); every > absl::ZeroDuration()) {
    schedule.emplace(std::min(every, absl::Hours(1)), [&core, every, &warn] {
      warn("scheduled training did not start", core.TrainIfDue(every));
    });
  }
  if (absl::Duration every = absl::GetFlag(FLAGS_drift_check_interval); every > absl::ZeroDuration()) {
    drift.emplace(every, [&core, &warn] { warn("drift check failed", core.CheckDrift()); });
  }
  app->OnStop([&] {
    refresh.Stop();
    groups.Stop();
    if (schedule.has_value()) schedule->Stop();
    if (drift.has_value()) drift->Stop();
    core.CancelTraining();  // a run in progress stops within a boosting round
  });

  cloudflux::server::BlockingExecutor executor(absl::GetFlag(FLAGS_handler_threads));
  pr::PredictionGrpcService service(core, executor);
  app->runner().RegisterService(&service, cloudflux::prediction::v1::PredictionService::service_full_name());
  return app->Run();
}
