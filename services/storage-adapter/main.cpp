// cloudflux-storage-adapter: composition root of the storage adapter.
#include "absl/flags/flag.h"
#include "cloudflux/core/log.h"
#include "cloudflux/server/executor.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"
#include "grpc_service.h"
#include "object_store.h"
#include "storage_core.h"

ABSL_FLAG(std::string, data_dir, "./data/storage-adapter",
          "Root directory of the local backend (backend name \"local\").");
ABSL_FLAG(int32_t, handler_threads, 16,
          "Threads that run request handlers and stream I/O (they block on disk and database).");

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "storage-adapter", .schema = "storage", .default_port = 50052}, argc, argv);

  std::map<std::string, std::unique_ptr<cloudflux::storage::ObjectStore>> backends;
  auto local = cloudflux::storage::MakeLocalStore("local", absl::GetFlag(FLAGS_data_dir));
  if (!local.ok()) {
    cloudflux::core::LogError("cannot open the local backend",
                              {{"error", std::string(local.status().message())}});
    return 1;
  }
  backends["local"] = std::move(*local);
  cloudflux::storage::StorageCore core(app->pool(), std::move(backends), "local");
  app->runner().AddDependency("backends", [&core](absl::Duration) { return core.PingBackends(); });

  cloudflux::server::BlockingExecutor executor(absl::GetFlag(FLAGS_handler_threads));
  cloudflux::storage::StorageGrpcService service(core, executor);
  app->runner().RegisterService(&service,
                                cloudflux::storage::v1::StorageService::service_full_name());
  return app->Run();
}
