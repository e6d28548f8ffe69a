// cloudflux-sandbox: composition root of the sandbox service.
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "sandbox", .schema = "sandbox", .default_port = 50056, .uses_redis = false},
      argc, argv);
  return app->Run();
}
