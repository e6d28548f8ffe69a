// cloudflux-auth: composition root of the auth service.
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "auth", .schema = "auth", .default_port = 50051, .uses_redis = true},
      argc, argv);
  return app->Run();
}
