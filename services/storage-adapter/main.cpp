// cloudflux-storage-adapter: composition root of the storage adapter.
#include "absl/flags/flag.h"
#include "cloudflux/core/log.h"
#include "cloudflux/server/executor.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"
#include "backends_config.h"
#include "grpc_service.h"
#include "object_store.h"
#include "storage_core.h"

ABSL_FLAG(std::string, data_dir, "./data/storage-adapter",
          "Root directory of the local backend (backend name \"local\").");
ABSL_FLAG(std::string, backends_file, "",
          "JSON file of further backends (s3, gcs, local), see proto/cloudflux/storage/v1/config.proto.");
ABSL_FLAG(std::string, default_backend, "local", "Backend used when a PutObject names none.");
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
  cloudflux::storage::StorageCore core(app->pool(), std::move(*backends), default_backend);
  app->runner().AddDependency("backends", [&core](absl::Duration) { return core.PingBackends(); });

  cloudflux::server::BlockingExecutor executor(absl::GetFlag(FLAGS_handler_threads));
  cloudflux::storage::StorageGrpcService service(core, executor);
  app->runner().RegisterService(&service,
                                cloudflux::storage::v1::StorageService::service_full_name());
  return app->Run();
}
