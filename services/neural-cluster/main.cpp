// cloudflux-neural-cluster: composition root of the neural-cluster service.
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "neural-cluster", .schema = "neural_cluster", .default_port = 50057, .uses_redis = false},
      argc, argv);
  return app->Run();
}
