// cloudflux-prediction: composition root of the prediction service.
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "prediction", .schema = "prediction", .default_port = 50054, .uses_redis = false},
      argc, argv);
  return app->Run();
}
