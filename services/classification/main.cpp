// cloudflux-classification: composition root of the classification service.
#include "cloudflux/core/log.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"

namespace cloudflux::generated {
std::vector<cloudflux::db::Migration> ClassificationMigrations();
}

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  cloudflux::service::ServiceSpec spec;
  spec.name = "classification";
  spec.schema = "classification";
  spec.default_port = 50053;
  spec.uses_redis = false;
  spec.migrations = cloudflux::generated::ClassificationMigrations();
  auto app = cloudflux::service::ServiceApp::Create(std::move(spec), argc, argv);
  if (!app.ok()) {
    cloudflux::core::LogError("cannot start", {{"error", std::string(app.status().message())}});
    return 1;
  }
  return (*app)->Run();
}
