// cloudflux-classification: composition root of the classification service.
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "classification", .schema = "classification", .default_port = 50053, .uses_redis = false},
      argc, argv);
  return app->Run();
}
