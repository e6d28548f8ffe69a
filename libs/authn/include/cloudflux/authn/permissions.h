#pragma once
// Which roles may call which gRPC method: one table for the whole suite, so
// that a reviewer reads every rule in one place (src/permissions.cc).
//
// Roles: admin (everything), operator (everything but identity
// administration), viewer (read-only methods), service (the suite's own
// services: with admin, the only role that may change objects in the
// reserved namespaces). Methods absent from the table are refused
// (PERMISSION_DENIED): a new RPC is closed until it is listed.

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace cloudflux::authn {

inline constexpr char kRoleAdmin[] = "admin";
inline constexpr char kRoleOperator[] = "operator";
inline constexpr char kRoleViewer[] = "viewer";
inline constexpr char kRoleService[] = "service";

bool IsKnownRole(std::string_view role);

// Namespaces the services keep for themselves (the prediction service's
// model artifacts in "cloudflux-models"): every namespace whose name begins
// with "cloudflux-".
bool IsReservedNamespace(std::string_view ns);
// OK unless `ns` is reserved and the caller, as authenticated, has neither
// the service nor the admin role (PERMISSION_DENIED). `roles` is nullptr
// when the server runs without authentication.
absl::Status CheckNamespaceWrite(std::string_view ns, const std::vector<std::string>* roles);

class PermissionTable {
 public:
  // `method` is "/pkg.Service/Method". A method may be public (no token).
  void Allow(std::string method, std::set<std::string> roles);
  void AllowPublic(std::string method);

  bool IsPublic(std::string_view method) const;
  bool IsListed(std::string_view method) const;
  // OK if any of `roles` may call `method`; PERMISSION_DENIED otherwise.
  absl::Status Check(std::string_view method, const std::vector<std::string>& roles) const;
  std::vector<std::string> Methods() const;

 private:
  std::map<std::string, std::set<std::string>, std::less<>> allowed_;
  std::set<std::string, std::less<>> public_;
};

// The CloudFlux table.
const PermissionTable& DefaultPermissions();

}  // namespace cloudflux::authn
