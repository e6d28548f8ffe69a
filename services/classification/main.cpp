// cloudflux-classification: composition root of the classification service.
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/core/log.h"
#include "cloudflux/server/executor.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"
#include "access_stats.h"
#include "classifier.h"
#include "grpc_service.h"
#include "prediction_forecasts.h"
#include "stats_ingest.h"
#include "sweeper.h"

ABSL_FLAG(int32_t, stats_batch, 5000, "Most object events applied to the access statistics at once.");
ABSL_FLAG(int32_t, stats_consumers, 4,
          "Consumer-group members writing access statistics in parallel in this process.");
ABSL_FLAG(std::string, stats_group, "cloudflux-classification-access-stats",
          "Kafka consumer group of the access statistics (one per deployment).");
ABSL_FLAG(absl::Duration, stats_session_timeout, absl::Seconds(10),
          "How long a silent ingest member keeps its partitions before the group hands them to the "
          "others (heartbeats every tenth of it; at least 1s).");
ABSL_FLAG(std::string, price_catalog, "",
          "Price catalog JSON (proto/cloudflux/pricing/v1/pricing.proto); empty = the one built in "
          "(config/price_catalog.json).");
ABSL_FLAG(std::string, backend_clouds, "",
          "Which cloud's prices apply to each storage backend: \"s3=aws,gcs=gcp,azure=azure\".");
ABSL_FLAG(int64_t, default_max_latency_ms, 1000, "Time to first byte objects need unless a request says.");
ABSL_FLAG(double, horizon_days, 90, "Decision horizon: a move must pay for itself within it.");
ABSL_FLAG(double, hysteresis, 0.1, "Share of the current cost a move must save beyond its own cost.");
ABSL_FLAG(double, min_observed_days, 14, "Objects younger than this are not moved.");
ABSL_FLAG(std::string, forecast_role, "vetoes",
          "How prediction's forecasts weigh in on objects already placed: vetoes (they can stop a move the counts "
          "suggest), confirms (they can also redirect it) or decides (they replace the counts, weighted by their "
          "confidence). New objects' first class always uses them.");
ABSL_FLAG(absl::Duration, sweep_interval, absl::Hours(1),
          "How often every object is classified and new move decisions published (one replica per "
          "interval); 0 = never.");
ABSL_FLAG(std::string, prediction_address, "",
          "The prediction service (host:port) whose forecasts steer decisions; empty = decisions from "
          "access counts only.");
ABSL_FLAG(absl::Duration, prediction_timeout, absl::Seconds(5), "Deadline of one forecast request.");
ABSL_FLAG(int32_t, handler_threads, 8, "Threads that run request handlers (they wait on the database).");

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "classification", .schema = "classification", .default_port = 50053, .uses_redis = false},
      argc, argv);
  namespace cls = cloudflux::classification;
  auto fail = [](const std::string& what, const absl::Status& s) {
    cloudflux::core::LogError(what, {{"error", std::string(s.message())}});
    return 1;
  };
  auto catalog = cloudflux::pricing::LoadCatalogOrDefault(absl::GetFlag(FLAGS_price_catalog));
  if (!catalog.ok()) return fail("bad price catalog", catalog.status());
  auto clouds = cls::ParseBackendClouds(absl::GetFlag(FLAGS_backend_clouds));
  if (!clouds.ok()) return fail("bad --backend_clouds", clouds.status());

  cls::AccessStatsStore stats(app->pool());
  auto ingest = cls::StatsIngest::Start(
      stats, {.kafka = app->kafka_options(),
              .group_id = absl::GetFlag(FLAGS_stats_group),
              .max_batch = static_cast<size_t>(absl::GetFlag(FLAGS_stats_batch)),
              .consumers = absl::GetFlag(FLAGS_stats_consumers),
              .session_timeout = absl::GetFlag(FLAGS_stats_session_timeout),
              .registry = &app->metrics().registry()});
  if (!ingest.ok()) return fail("cannot consume object events", ingest.status());
  app->runner().AddDependency("access-stats", [&](absl::Duration) { return (*ingest)->Health(); });
  app->OnStop([&] { (*ingest)->Stop(); });

  std::unique_ptr<cls::PredictionForecasts> forecasts;
  if (std::string address = absl::GetFlag(FLAGS_prediction_address); !address.empty()) {
    forecasts = std::make_unique<cls::PredictionForecasts>(
        cloudflux::server::MakeChannel(address, app->peer_channel_options()),
        [&app](grpc::ClientContext& ctx) { return app->AuthorizeCall(ctx); }, absl::GetFlag(FLAGS_prediction_timeout));
    // Optional: without forecasts decisions come from access counts.
    app->runner().AddDependency("prediction", [&](absl::Duration) { return forecasts->Health(); }, false);
  }

  cls::ClassifierOptions options;
  options.forecasts = forecasts.get();
  options.backend_clouds = std::move(*clouds);
  options.default_max_latency_ms = absl::GetFlag(FLAGS_default_max_latency_ms);
  options.policy.horizon_days = absl::GetFlag(FLAGS_horizon_days);
  options.policy.hysteresis = absl::GetFlag(FLAGS_hysteresis);
  options.policy.min_observed_days = absl::GetFlag(FLAGS_min_observed_days);
  auto forecast_role = cloudflux::pricing::ParseForecastRole(absl::GetFlag(FLAGS_forecast_role));
  if (!forecast_role.ok()) return fail("bad --forecast_role", forecast_role.status());
  options.policy.forecast_role = *forecast_role;
  cls::PolicyStore policies(app->pool(), *catalog);
  cls::Classifier classifier(app->pool(), stats, policies, *catalog, std::move(options));
  const char* host = std::getenv("HOSTNAME");
  cls::Sweeper sweeper(app->pool(), classifier,
                       {.interval = absl::GetFlag(FLAGS_sweep_interval),
                        .holder = absl::StrCat(host != nullptr ? host : "classification", "-",
                                               cloudflux::core::NewId())},
                       app->metrics().registry());
  app->OnStop([&] { sweeper.Stop(); });
  cloudflux::server::BlockingExecutor executor(absl::GetFlag(FLAGS_handler_threads));
  cls::ClassificationGrpcService service(classifier, policies, executor);
  app->runner().RegisterService(&service,
                                cloudflux::classification::v1::ClassificationService::service_full_name());
  return app->Run();
}
