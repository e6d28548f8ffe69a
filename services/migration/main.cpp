// cloudflux-migration: composition root of the migration service.
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/server/executor.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"
#include "grpc_service.h"
#include "cloudflux/core/periodic.h"
#include "cloudflux/events/batch_ingest.h"
#include "cloudflux/events/object_events.h"
#include "migration_core.h"
#include "placement.h"
#include "replication.h"
#include "sync.h"
#include "storage_client.h"

ABSL_FLAG(std::string, storage_address, "127.0.0.1:50052",
          "The storage adapter (host:port): every object moves through it.");
ABSL_FLAG(int32_t, workers, 4, "Objects this replica moves at once (across jobs).");
ABSL_FLAG(absl::Duration, task_lease, absl::Minutes(2),
          "How long a claimed object stays with its worker without renewal (a dead replica's objects are "
          "taken over after this).");
ABSL_FLAG(absl::Duration, copy_timeout, absl::Hours(6), "Deadline of one object's copy.");
ABSL_FLAG(int32_t, max_attempts, 6,
          "Tries of an object after transient failures (paused 0.5 s, doubling up to 30 s, between them).");
ABSL_FLAG(std::string, price_catalog, "",
          "Price catalog JSON for estimates; empty = the one built in (config/price_catalog.json).");
ABSL_FLAG(std::string, backend_clouds, "",
          "Which cloud's prices apply to each storage backend: \"s3=aws,gcs=gcp,azure=azure\".");
ABSL_FLAG(std::string, placement_group, "cloudflux-migration-placement",
          "Kafka consumer group of the placement loop's decisions (one per deployment).");
ABSL_FLAG(absl::Duration, placement_session_timeout, absl::Seconds(10),
          "How long a silent decisions consumer keeps its partitions before the group hands them on.");
ABSL_FLAG(absl::Duration, placement_interval, absl::Minutes(1),
          "How often waiting move decisions become migrations (namespaces with an enabled placement policy); "
          "0 = never.");
ABSL_FLAG(std::string, replication_group, "cloudflux-migration-replication",
          "Kafka consumer group of the replication rules' object events (one per deployment).");
ABSL_FLAG(int32_t, replication_workers, 2, "Replicas this replica makes at once (replication rules).");
ABSL_FLAG(absl::Duration, replication_interval, absl::Seconds(5),
          "How often the replication rules' full comparisons go on (a few listing pages per rule each time).");
ABSL_FLAG(absl::Duration, sync_check_interval, absl::Seconds(5),
          "How often the sync pairs with an interval are checked for a run that is due (0 = never).");
ABSL_FLAG(absl::Duration, replication_full_sync, absl::Hours(24),
          "How often each replication rule compares everything under its prefix with its replicas.");
ABSL_FLAG(int32_t, handler_threads, 8, "Threads that run request handlers.");

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "migration", .schema = "migration", .default_port = 50055, .uses_redis = false}, argc, argv);
  namespace mg = cloudflux::migration;
  auto fail = [](const std::string& what, const absl::Status& s) {
    cloudflux::core::LogError(what, {{"error", std::string(s.message())}});
    return 1;
  };
  auto catalog = cloudflux::pricing::LoadCatalogOrDefault(absl::GetFlag(FLAGS_price_catalog));
  if (!catalog.ok()) return fail("bad price catalog", catalog.status());
  auto clouds = cloudflux::pricing::ParseBackendClouds(absl::GetFlag(FLAGS_backend_clouds));
  if (!clouds.ok()) return fail("bad --backend_clouds", clouds.status());
  if (absl::GetFlag(FLAGS_workers) < 1 || absl::GetFlag(FLAGS_max_attempts) < 1) {
    cloudflux::core::LogError("--workers and --max_attempts must be at least 1");
    return 2;
  }

  mg::StorageClient storage(
      cloudflux::server::MakeChannel(absl::GetFlag(FLAGS_storage_address), app->peer_channel_options()),
      [&app](grpc::ClientContext& ctx) { return app->AuthorizeCall(ctx); });
  mg::CoreOptions options;
  const char* host = std::getenv("HOSTNAME");
  options.worker_id = absl::StrCat(host != nullptr ? host : "migration", "-", cloudflux::core::NewId());
  options.backend_clouds = std::move(*clouds);
  options.workers = absl::GetFlag(FLAGS_workers);
  options.lease = absl::GetFlag(FLAGS_task_lease);
  options.copy_timeout = absl::GetFlag(FLAGS_copy_timeout);
  options.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  mg::MigrationCore core(app->pool(), storage, *catalog, std::move(options));
  core.Start();
  app->OnStop([&] { core.Stop(); });

  // The placement loop: classification's decisions in, migrations out.
  mg::PlacementLoop placement(app->pool(), core);
  auto decisions = cloudflux::events::BatchIngest::Start(
      [&placement](const std::vector<cloudflux::events::ConsumedMessage>& batch) {
        return placement.ApplyMessages(batch);
      },
      {.kafka = app->kafka_options(),
       .group_id = absl::GetFlag(FLAGS_placement_group),
       .topic = mg::kDecisionTopic,
       .max_batch = 1000,
       .consumers = 1,
       .session_timeout = absl::GetFlag(FLAGS_placement_session_timeout),
       .registry = &app->metrics().registry(),
       .metric_prefix = "cloudflux_migration_decisions",
       .what = "placement decisions batch"});
  if (!decisions.ok()) return fail("cannot consume move decisions", decisions.status());
  app->runner().AddDependency("decisions", [&](absl::Duration) { return (*decisions)->Health(); });
  app->OnStop([&] { (*decisions)->Stop(); });
  std::optional<cloudflux::core::PeriodicTask> rounds;
  if (absl::Duration every = absl::GetFlag(FLAGS_placement_interval); every > absl::ZeroDuration()) {
    rounds.emplace(every, [&placement] {
      auto n = placement.RunOnce();
      if (!n.ok()) cloudflux::core::LogWarn("placement round failed", {{"error", std::string(n.status().message())}});
    });
  }
  app->OnStop([&] {
    if (rounds.has_value()) rounds->Stop();
  });

  // Replication rules: the storage adapter's object events in, replicas out.
  if (absl::GetFlag(FLAGS_replication_workers) < 0) {
    return fail("bad flags", absl::InvalidArgumentError("--replication_workers must not be negative"));
  }
  mg::ReplicationLoop replication(app->pool(), storage,
                                  {.workers = absl::GetFlag(FLAGS_replication_workers),
                                   .lease = absl::GetFlag(FLAGS_task_lease),
                                   .copy_timeout = absl::GetFlag(FLAGS_copy_timeout),
                                   .full_sync_every = absl::GetFlag(FLAGS_replication_full_sync)});
  auto object_events = cloudflux::events::BatchIngest::Start(
      [&replication](const std::vector<cloudflux::events::ConsumedMessage>& batch) {
        return replication.ApplyMessages(batch);
      },
      {.kafka = app->kafka_options(),
       .group_id = absl::GetFlag(FLAGS_replication_group),
       .topic = cloudflux::events::kObjectTopic,
       .max_batch = 1000,
       .consumers = 1,
       .session_timeout = absl::GetFlag(FLAGS_placement_session_timeout),
       .registry = &app->metrics().registry(),
       .metric_prefix = "cloudflux_migration_object_events",
       .what = "replication object events batch"});
  if (!object_events.ok()) return fail("cannot consume object events", object_events.status());
  app->runner().AddDependency("object_events", [&](absl::Duration) { return (*object_events)->Health(); });
  app->OnStop([&] { (*object_events)->Stop(); });
  replication.Start();
  app->OnStop([&] { replication.Stop(); });
  std::optional<cloudflux::core::PeriodicTask> full_syncs;
  if (absl::Duration every = absl::GetFlag(FLAGS_replication_interval); every > absl::ZeroDuration()) {
    full_syncs.emplace(every, [&replication] {
      auto n = replication.RunFullSyncRound();
      if (!n.ok()) {
        cloudflux::core::LogWarn("replication round failed", {{"error", std::string(n.status().message())}});
      }
    });
  }
  app->OnStop([&] {
    if (full_syncs.has_value()) full_syncs->Stop();
  });

  // Two-way syncs: runs on request, and those of pairs with an interval.
  mg::SyncPairs syncs(app->pool(), storage,
                      {.lease = absl::GetFlag(FLAGS_task_lease), .copy_timeout = absl::GetFlag(FLAGS_copy_timeout)});
  std::optional<cloudflux::core::PeriodicTask> due_syncs;
  if (absl::Duration every = absl::GetFlag(FLAGS_sync_check_interval); every > absl::ZeroDuration()) {
    due_syncs.emplace(every, [&syncs] {
      auto n = syncs.RunDue();
      if (!n.ok()) cloudflux::core::LogWarn("scheduled syncs failed", {{"error", std::string(n.status().message())}});
    });
  }
  app->OnStop([&] {
    syncs.Stop();
    if (due_syncs.has_value()) due_syncs->Stop();
  });

  cloudflux::server::BlockingExecutor executor(absl::GetFlag(FLAGS_handler_threads));
  mg::MigrationGrpcService service(core, placement, replication, syncs, executor);
  app->runner().RegisterService(&service, cloudflux::migration::v1::MigrationService::service_full_name());
  return app->Run();
}
