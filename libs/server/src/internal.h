#pragma once
#include "cloudflux/server/tls.h"
// Pieces of the server runner shared between its translation units.

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cloudflux/server/auth_hook.h"
#include "cloudflux/server/server_runner.h"

namespace cloudflux::server::internal {

inline constexpr char kRequestIdHeader[] = "x-request-id";

// Per-call facts that handlers read (principal, request id), keyed by the
// call's context and alive from the call's first interception to its end.
// gRPC's auth context cannot carry them: it is shared by every call on a
// connection.
struct CallFacts {
  std::string request_id;
  std::optional<Principal> principal;
};
class CallRegistry {
 public:
  static CallRegistry& Get();
  void Put(const grpc::ServerContextBase* context, CallFacts facts);
  void Erase(const grpc::ServerContextBase* context);
  std::optional<CallFacts> Find(const grpc::ServerContextBase* context);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<const grpc::ServerContextBase*, CallFacts> calls_ ABSL_GUARDED_BY(mu_);
};

// A request id of at most this many characters is taken from the client.
inline constexpr size_t kMaxRequestIdLength = 128;

// "/pkg.Svc/Method" -> {"pkg.Svc", "Method"}.
std::pair<std::string, std::string> SplitMethod(std::string_view full_method);
// "unary", "client_stream", "server_stream", "bidi_stream"; from the generated
// descriptor pool, "unknown" if the method is not linked in.
std::string MethodTypeFromDescriptor(std::string_view full_method);
std::string MethodType(grpc::experimental::ServerRpcInfo::Type type);
const char* CodeName(grpc::StatusCode code);

// grpc_server_started_total, grpc_server_handled_total and
// grpc_server_handling_seconds (go-grpc-prometheus names and labels), with
// per-method series cached so the hot path takes a reader lock only.
class GrpcMetrics {
 public:
  explicit GrpcMetrics(prometheus::Registry& registry);

  struct Method {
    prometheus::Counter* started;
    prometheus::Histogram* seconds;
    std::array<std::atomic<prometheus::Counter*>, 17> handled{};
    std::string type, service, method;
  };
  Method& For(std::string_view full_method, const std::string& type);
  void Handled(Method& m, grpc::StatusCode code, double seconds);

 private:
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& handling_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Method>> methods_ ABSL_GUARDED_BY(mu_);
};

// Runs before any handler: mints/propagates the request id and applies the
// Authenticator. Calls it refuses never reach the C++ layer, so they are
// counted and logged here through `on_rejected`.
struct AuthHookConfig {
  std::shared_ptr<Authenticator> authenticator;
  std::function<void(std::string_view method, std::string_view request_id,
                     const absl::Status& status)>
      on_rejected;
};

// Server credentials that run the hook on each call's metadata in gRPC's
// own thread: plaintext, or TLS (mutual as an option) when `tls` is enabled.
// (The C++ API runs a metadata processor on a thread pool of its own; the C
// core takes one on any credentials.)
std::shared_ptr<grpc::ServerCredentials> MakeHookedCredentials(std::shared_ptr<AuthHookConfig> config,
                                                               const TlsOptions& tls);

// Metrics, access log and default deadline for every call.
// Calls a graceful shutdown waits for: everything but health Watch and
// reflection streams, which never end on their own.
struct InFlight {
  std::atomic<int> calls{0};
};

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeCallInterceptorFactory(
    GrpcMetrics* metrics, const ServerOptions* options,
    std::shared_ptr<Authenticator> authenticator, InFlight* in_flight);

}  // namespace cloudflux::server::internal
