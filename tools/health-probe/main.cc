// cloudflux-health-probe HOST:PORT [SERVICE] [--timeout-ms=N]
// Calls grpc.health.v1.Health/Check; prints the status and exits 0 only when
// it is SERVING (1 NOT_SERVING/UNKNOWN, 2 unreachable or error). Used by
// scripts/dev and container health checks.

#include <cstdlib>
#include <iostream>
#include <string>

#include "cloudflux/server/channel.h"
#include "grpc/health/v1/health.grpc.pb.h"

int main(int argc, char** argv) {
  std::string target, service;
  int timeout_ms = 2000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--timeout-ms=", 0) == 0) {
      timeout_ms = std::atoi(a.c_str() + 13);
    } else if (target.empty()) {
      target = a;
    } else {
      service = a;
    }
  }
  if (target.empty()) {
    std::cerr << "usage: cloudflux-health-probe HOST:PORT [SERVICE] [--timeout-ms=N]\n";
    return 2;
  }
  cloudflux::server::ChannelOptions options;
  options.max_attempts = 1;
  auto stub = grpc::health::v1::Health::NewStub(cloudflux::server::MakeChannel(target, options));
  auto ctx = cloudflux::server::MakeClientContext(absl::Milliseconds(timeout_ms));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(ctx.get(), req, &resp);
  if (!s.ok()) {
    std::cout << "ERROR " << s.error_message() << "\n";
    return 2;
  }
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()) << "\n";
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}
