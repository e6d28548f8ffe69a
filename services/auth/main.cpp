// cloudflux-auth: composition root of the auth service.
#include "cloudflux/core/log.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

namespace cloudflux::generated {
std::vector<cloudflux::db::Migration> AuthMigrations();
}

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  cloudflux::service::ServiceSpec spec;
  spec.name = "auth";
  spec.schema = "auth";
  spec.default_port = 50051;
  spec.uses_redis = true;
  spec.migrations = cloudflux::generated::AuthMigrations();
  auto app = cloudflux::service::ServiceApp::Create(std::move(spec), argc, argv);
  if (!app.ok()) {
    cloudflux::core::LogError("cannot start", {{"error", std::string(app.status().message())}});
    return 1;
  }
  return (*app)->Run();
}
