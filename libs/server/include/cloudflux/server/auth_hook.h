#pragma once
// The pluggable authentication hook of the server runner. An Authenticator
// sees every call's method and request metadata before any handler runs and
// either admits it with a Principal or refuses it (UNAUTHENTICATED,
// PERMISSION_DENIED, ...). Health and reflection are never passed to it.

#include <grpcpp/server_context.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace cloudflux::server {

// Who is calling. Handlers read it with PrincipalOf(context).
struct Principal {
  std::string subject;             // e.g. a principal id
  std::vector<std::string> roles;  // e.g. "admin", "operator", "viewer"
  std::string token_id;            // the credential's id (jti), for audit
  bool HasRole(std::string_view role) const {
    for (const auto& r : roles) {
      if (r == role) return true;
    }
    return false;
  }
};

// Request metadata as received; keys are lowercase.
using RequestMetadata = std::multimap<std::string_view, std::string_view>;

// Implementations must be thread-safe, free of side effects (an admitted call
// is authenticated twice: once to admit it, once to hand its Principal to the
// handler; cache verified credentials) and must not block for long: they run
// inline on gRPC's transport threads before the handler.
class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // `method` is the full path, "/cloudflux.auth.v1.AuthService/IssueToken".
  virtual absl::StatusOr<Principal> Authenticate(std::string_view method,
                                                 const RequestMetadata& metadata) = 0;
};

// Methods that are always open: grpc.health.v1 and server reflection.
bool IsAlwaysOpenMethod(std::string_view method);

// The authenticated caller of this call; nullopt when no authenticator is
// installed or the method is always open.
std::optional<Principal> PrincipalOf(const grpc::ServerContextBase& context);

// The call's request id: the client's x-request-id, or one minted on arrival.
std::string RequestIdOf(const grpc::ServerContextBase& context);

}  // namespace cloudflux::server
