// cloudflux-storage-adapter: composition root of the storage adapter.
#include "absl/flags/flag.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/periodic.h"
#include "cloudflux/server/executor.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"
#include "backends_config.h"
#include "grpc_service.h"
#include "object_store.h"
#include "read_recorder.h"
#include "storage_core.h"

ABSL_FLAG(std::string, data_dir, "./data/storage-adapter",
          "Root directory of the local backend (backend name \"local\").");
ABSL_FLAG(std::string, backends_file, "",
          "JSON file of further backends (s3, gcs, local), see proto/cloudflux/storage/v1/config.proto.");
ABSL_FLAG(std::string, default_backend, "local", "Backend used when a PutObject names none.");
ABSL_FLAG(absl::Duration, read_event_interval, absl::Seconds(1),
          "How long reads are summed before their ObjectRead events are written.");
ABSL_FLAG(absl::Duration, sweep_interval, absl::Seconds(30),
          "How often this instance heartbeats and removes orphaned bytes.");
ABSL_FLAG(absl::Duration, orphan_grace, absl::Minutes(5),
          "An instance that has not heartbeated for this long is taken for dead and the bytes "
          "of its unfinished writes are removed.");
ABSL_FLAG(absl::Duration, copy_resume_ttl, absl::Hours(24),
          "A copy between backends that stopped midway (its parts kept for the next copy of the "
          "same object to resume) and was not resumed for this long is given up, its parts "
          "removed.");
ABSL_FLAG(int32_t, handler_threads, 16,
          "Threads that run request handlers and stream I/O (they block on disk and database).");

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "storage-adapter", .schema = "storage", .default_port = 50052}, argc, argv);

  auto backends = cloudflux::storage::LoadBackends(absl::GetFlag(FLAGS_data_dir),
                                                  absl::GetFlag(FLAGS_backends_file));
  std::string default_backend = absl::GetFlag(FLAGS_default_backend);
  absl::Status bad = backends.status();
  if (bad.ok() && backends->count(default_backend) == 0) {
    bad = absl::InvalidArgumentError("default backend '" + default_backend + "' is not configured");
  }
  if (!bad.ok()) {
    cloudflux::core::LogError("bad backend configuration", {{"error", std::string(bad.message())}});
    return 1;
  }
  cloudflux::storage::StorageCore core(app->pool(), std::move(*backends), default_backend,
                                       app->instance_id());
  core.SetOrphanGrace(absl::GetFlag(FLAGS_orphan_grace));
  core.ExportMetrics(app->metrics().registry());
  if (absl::Status beat = core.Heartbeat(); !beat.ok()) {
    cloudflux::core::LogError("cannot record this instance", {{"error", std::string(beat.message())}});
    return 1;
  }
  app->runner().AddDependency("backends", [&core](absl::Duration) { return core.PingBackends(); });

  cloudflux::storage::ReadRecorder reads(app->pool(), core.outbox(), core.clock(),
                                         {.interval = absl::GetFlag(FLAGS_read_event_interval)});
  reads.Start();
  const absl::Duration grace = absl::GetFlag(FLAGS_orphan_grace);
  const absl::Duration resume_ttl = absl::GetFlag(FLAGS_copy_resume_ttl);
  cloudflux::core::PeriodicTask sweeper(absl::GetFlag(FLAGS_sweep_interval), [&core, grace, resume_ttl] {
    auto swept = core.SweepOrphans(grace, resume_ttl);
    if (!swept.ok()) {
      cloudflux::core::LogWarn("orphan sweep failed", {{"error", std::string(swept.status().message())}});
    }
  });
  app->OnStop([&] {
    sweeper.Stop();
    reads.Stop();  // the last reads' events go into the outbox before the relay drains it
  });

  cloudflux::server::BlockingExecutor executor(absl::GetFlag(FLAGS_handler_threads));
  cloudflux::storage::StorageGrpcService service(core, executor, reads);
  app->runner().RegisterService(&service,
                                cloudflux::storage::v1::StorageService::service_full_name());
  return app->Run();
}
