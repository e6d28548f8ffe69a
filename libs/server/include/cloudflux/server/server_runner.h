#pragma once
#include "cloudflux/server/tls.h"
// ServerRunner: one object that turns a set of gRPC services into a CloudFlux
// server. It adds grpc.health.v1 (whose status follows the service's
// dependency checks), server reflection, the Diagnostics service, Prometheus
// metrics (grpc_server_* with go-grpc-prometheus labels), JSON access logs,
// a default deadline for calls that carry none, the authentication hook,
// keepalive and message-size limits, and graceful shutdown.
//
// Lifetime: construct, Register*, Start, then either Run (blocks until
// SIGTERM/SIGINT, then shuts down) or Shutdown. Registered services must
// outlive the runner. Start/Shutdown are called from one thread; everything
// else is thread-safe.

#include <grpcpp/impl/service_type.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cloudflux/server/auth_hook.h"

namespace grpc {
class Server;
}
namespace prometheus {
class Registry;
}

namespace cloudflux::server {

// Which calls get an access-log line.
enum class AccessLog { kAll, kErrors, kNone };

struct ServerOptions {
  std::string service_name = "cloudflux";  // "auth", "storage-adapter", ...
  std::string version = "dev";
  std::string listen_address = "0.0.0.0:50051";  // port 0 picks one, see port()
  int max_receive_message_bytes = 16 << 20;
  int max_send_message_bytes = 16 << 20;
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // HTTP/2 receive window per stream, fixed. gRPC's default grows windows
  // with bandwidth-delay probing, which on fast links buffers tens of MiB
  // per streaming call; a fixed window bounds that (1 MiB still allows
  // ~1 GB/s per stream at 1 ms round trip). 0 = gRPC's adaptive windows.
  int http2_stream_window_bytes = 1 << 20;
  // Applied to calls that arrive without a deadline: they are cancelled then.
  absl::Duration default_deadline = absl::Seconds(30);
  // In-flight calls get this long to finish after a shutdown signal.
  absl::Duration shutdown_grace = absl::Seconds(20);
  // Time between going NOT_SERVING and refusing new calls (lets load
  // balancers take the endpoint out first).
  absl::Duration shutdown_delay = absl::ZeroDuration();
  absl::Duration health_check_interval = absl::Seconds(2);
  absl::Duration dependency_check_timeout = absl::Seconds(1);
  // Upper bound of Diagnostics.Echo's delay.
  absl::Duration diagnostics_max_delay = absl::Seconds(30);
  AccessLog access_log = AccessLog::kAll;
  // TLS (mutual TLS as an option) when enabled; plaintext otherwise.
  TlsOptions tls;
};

// A dependency probe: OK when reachable. Must return within `timeout`.
using DependencyCheck = std::function<absl::Status(absl::Duration timeout)>;

struct DependencyStatus {
  std::string name;
  bool healthy = false;
  std::string last_error;
  absl::Time last_checked;
  bool required = true;  // false: the service serves without it, degraded
};

class ServerRunner {
 public:
  // `registry` receives the grpc_server_* and dependency metrics; may be null.
  ServerRunner(ServerOptions options, std::shared_ptr<prometheus::Registry> registry);
  ~ServerRunner();
  ServerRunner(const ServerRunner&) = delete;
  ServerRunner& operator=(const ServerRunner&) = delete;

  // Before Start. `full_name` (Generated::service_full_name()) gets its own
  // health entry besides the overall "" one.
  void RegisterService(grpc::Service* service, std::string full_name);
  // Before Start. Health is SERVING only while every required check passes;
  // an optional one (the service works without it, degraded: say how in the
  // check's error) is reported in GetServerInfo and cloudflux_dependency_up
  // only.
  void AddDependency(std::string name, DependencyCheck check, bool required = true);
  // Before Start. Without one, every call is admitted.
  void SetAuthenticator(std::shared_ptr<Authenticator> authenticator);

  // Binds, runs the dependency checks once, and starts serving.
  absl::Status Start();
  // The bound port (after Start).
  int port() const { return port_; }
  // NOT_SERVING, wait shutdown_delay, let in-flight calls finish up to
  // shutdown_grace, then cancel what is left. Idempotent.
  void Shutdown();
  // Start (if needed), wait for SIGTERM/SIGINT, Shutdown. Call
  // BlockShutdownSignals() at the top of main first.
  absl::Status Run();

  bool serving() const { return serving_.load(); }
  std::vector<DependencyStatus> dependencies() const;
  const ServerOptions& options() const { return options_; }

 private:
  class Impl;
  void CheckDependencies();
  ServerOptions options_;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> serving_{false};
  int port_ = 0;
};

}  // namespace cloudflux::server
