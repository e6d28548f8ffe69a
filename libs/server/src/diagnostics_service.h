#pragma once

#include <functional>

#include "cloudflux/diagnostics/v1/diagnostics.grpc.pb.h"
#include "cloudflux/server/server_runner.h"

namespace cloudflux::server::internal {

// cloudflux.diagnostics.v1.Diagnostics, served by every runner.
class DiagnosticsService final : public cloudflux::diagnostics::v1::Diagnostics::CallbackService {
 public:
  DiagnosticsService(const ServerOptions* options, std::string instance_id, absl::Time started,
                     std::function<bool()> serving,
                     std::function<std::vector<DependencyStatus>()> dependencies)
      : options_(options),
        instance_id_(std::move(instance_id)),
        started_(started),
        serving_(std::move(serving)),
        dependencies_(std::move(dependencies)) {}

  grpc::ServerUnaryReactor* GetServerInfo(
      grpc::CallbackServerContext* context,
      const cloudflux::diagnostics::v1::GetServerInfoRequest* request,
      cloudflux::diagnostics::v1::GetServerInfoResponse* response) override;

  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const cloudflux::diagnostics::v1::EchoRequest* request,
                                 cloudflux::diagnostics::v1::EchoResponse* response) override;

 private:
  const ServerOptions* options_;
  std::string instance_id_;
  absl::Time started_;
  std::function<bool()> serving_;
  std::function<std::vector<DependencyStatus>()> dependencies_;
};

}  // namespace cloudflux::server::internal
