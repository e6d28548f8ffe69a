// cloudflux-storage-adapter: composition root of the storage-adapter service.
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "storage-adapter", .schema = "storage", .default_port = 50052, .uses_redis = false},
      argc, argv);
  return app->Run();
}
