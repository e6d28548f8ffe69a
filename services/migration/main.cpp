// cloudflux-migration: composition root of the migration service.
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "migration", .schema = "migration", .default_port = 50055, .uses_redis = false},
      argc, argv);
  return app->Run();
}
