// cloudflux-health-probe HOST:PORT [SERVICE] [--timeout-ms=N] [--tls-ca=FILE
//   [--tls-cert=FILE --tls-key=FILE] [--tls-server-name=NAME]]
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
  cloudflux::server::TlsOptions tls;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--timeout-ms=", 0) == 0) {
      timeout_ms = std::atoi(a.c_str() + 13);
    } else if (a.rfind("--tls-ca=", 0) == 0) {
      tls.ca_file = a.substr(9);
    } else if (a.rfind("--tls-cert=", 0) == 0) {
      tls.cert_file = a.substr(11);
    } else if (a.rfind("--tls-key=", 0) == 0) {
      tls.key_file = a.substr(10);
    } else if (a.rfind("--tls-server-name=", 0) == 0) {
      tls.server_name = a.substr(18);
    } else if (target.empty()) {
      target = a;
    } else {
      service = a;
    }
  }
  if (target.empty()) {
    std::cerr << "usage: cloudflux-health-probe HOST:PORT [SERVICE] [--timeout-ms=N] [--tls-ca=FILE "
                 "[--tls-cert=FILE --tls-key=FILE] [--tls-server-name=NAME]]\n";
    return 2;
  }
  cloudflux::server::ChannelOptions options;
  options.max_attempts = 1;
  options.tls = tls;
  if (auto valid = cloudflux::server::ValidateClientTls(tls); !valid.ok()) {
    std::cerr << valid.message() << "\n";
    return 2;
  }
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
