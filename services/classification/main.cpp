// cloudflux-classification: composition root of the classification service.
#include "absl/flags/flag.h"
#include "cloudflux/core/log.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"
#include "access_stats.h"
#include "stats_ingest.h"

ABSL_FLAG(int32_t, stats_batch, 5000, "Most object events applied to the access statistics at once.");
ABSL_FLAG(std::string, stats_group, "cloudflux-classification-access-stats",
          "Kafka consumer group of the access statistics (one per deployment).");

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "classification", .schema = "classification", .default_port = 50053, .uses_redis = false},
      argc, argv);
  cloudflux::classification::AccessStatsStore stats(app->pool());
  auto ingest = cloudflux::classification::StatsIngest::Start(
      stats, {.kafka = app->kafka_options(),
              .group_id = absl::GetFlag(FLAGS_stats_group),
              .max_batch = static_cast<size_t>(absl::GetFlag(FLAGS_stats_batch))});
  if (!ingest.ok()) {
    cloudflux::core::LogError("cannot consume object events", {{"error", std::string(ingest.status().message())}});
    return 1;
  }
  app->runner().AddDependency("access-stats", [&](absl::Duration) { return (*ingest)->Health(); });
  app->OnStop([&] { (*ingest)->Stop(); });
  return app->Run();
}
