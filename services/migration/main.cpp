// cloudflux-migration: composition root of the migration service.
#include "cloudflux/core/log.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

namespace cloudflux::generated {
std::vector<cloudflux::db::Migration> MigrationMigrations();
}

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  cloudflux::service::ServiceSpec spec;
  spec.name = "migration";
  spec.schema = "migration";
  spec.default_port = 50055;
  spec.uses_redis = false;
  spec.migrations = cloudflux::generated::MigrationMigrations();
  auto app = cloudflux::service::ServiceApp::Create(std::move(spec), argc, argv);
  if (!app.ok()) {
    cloudflux::core::LogError("cannot start", {{"error", std::string(app.status().message())}});
    return 1;
  }
  return (*app)->Run();
}
