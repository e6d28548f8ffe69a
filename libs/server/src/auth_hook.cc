#include "cloudflux/server/auth_hook.h"

#include "internal.h"

namespace cloudflux::server {

bool IsAlwaysOpenMethod(std::string_view method) {
  return method.starts_with("/grpc.health.v1.Health/") ||
         method.starts_with("/grpc.reflection.v1alpha.ServerReflection/") ||
         method.starts_with("/grpc.reflection.v1.ServerReflection/");
}

std::optional<Principal> PrincipalOf(const grpc::ServerContextBase& context) {
  auto facts = internal::CallRegistry::Get().Find(&context);
  if (!facts.has_value()) return std::nullopt;
  return facts->principal;
}

std::string RequestIdOf(const grpc::ServerContextBase& context) {
  auto facts = internal::CallRegistry::Get().Find(&context);
  return facts.has_value() ? facts->request_id : std::string();
}

namespace internal {

CallRegistry& CallRegistry::Get() {
  static CallRegistry* registry = new CallRegistry();  // never destroyed: calls may outlive main
  return *registry;
}

void CallRegistry::Put(const grpc::ServerContextBase* context, CallFacts facts) {
  absl::MutexLock lock(&mu_);
  calls_[context] = std::move(facts);
}

void CallRegistry::Erase(const grpc::ServerContextBase* context) {
  absl::MutexLock lock(&mu_);
  calls_.erase(context);
}

std::optional<CallFacts> CallRegistry::Find(const grpc::ServerContextBase* context) {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(context);
  if (it == calls_.end()) return std::nullopt;
  return it->second;
}

}  // namespace internal
}  // namespace cloudflux::server
