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

  std::map<std::string, std::unique_ptr<cloudflux::storage::ObjectStore>> backends;
  auto local = cloudflux::storage::MakeLocalStore("local", absl::GetFlag(FLAGS_data_dir));
  if (!local.ok()) {
    cloudflux::core::LogError("cannot open the local backend",
                              {{"error", std::string(local.status().message())}});
    return 1;
  }
  backends["local"] = std::move(*local);
  if (!absl::GetFlag(FLAGS_backends_file).empty()) {
    auto config = cloudflux::storage::ReadBackendsConfig(absl::GetFlag(FLAGS_backends_file));
    auto more = config.ok() ? cloudflux::storage::MakeBackends(*config)
                            : decltype(cloudflux::storage::MakeBackends(*config))(config.status());
    if (!more.ok()) {
      cloudflux::core::LogError("bad backend configuration",
                                {{"error", std::string(more.status().message())}});
      return 1;
    }
    for (auto& [name, store] : *more) {
      if (backends.count(name) > 0) {
        cloudflux::core::LogError("bad backend configuration",
                                  {{"error", "backend '" + name + "' is configured twice"}});
        return 1;
      }
      backends[name] = std::move(store);
    }
  }
  std::string default_backend = absl::GetFlag(FLAGS_default_backend);
  if (backends.count(default_backend) == 0) {
    cloudflux::core::LogError("bad backend configuration",
                              {{"error", "default backend '" + default_backend + "' is not configured"}});
    return 1;
  }
  cloudflux::storage::StorageCore core(app->pool(), std::move(backends), default_backend);
  app->runner().AddDependency("backends", [&core](absl::Duration) { return core.PingBackends(); });

  cloudflux::server::BlockingExecutor executor(absl::GetFlag(FLAGS_handler_threads));
  cloudflux::storage::StorageGrpcService service(core, executor);
  app->runner().RegisterService(&service,
                                cloudflux::storage::v1::StorageService::service_full_name());
  return app->Run();
}
