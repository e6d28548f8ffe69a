// cloudflux-sandbox: composition root of the sandbox service.
#include "cloudflux/core/log.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

namespace cloudflux::generated {
std::vector<cloudflux::db::Migration> SandboxMigrations();
}

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  cloudflux::service::ServiceSpec spec;
  spec.name = "sandbox";
  spec.schema = "sandbox";
  spec.default_port = 50056;
  spec.uses_redis = false;
  spec.migrations = cloudflux::generated::SandboxMigrations();
  auto app = cloudflux::service::ServiceApp::Create(std::move(spec), argc, argv);
  if (!app.ok()) {
    cloudflux::core::LogError("cannot start", {{"error", std::string(app.status().message())}});
    return 1;
  }
  return (*app)->Run();
}
