#pragma once
// gRPC adapter of AuthCore: parses nothing itself, maps statuses.

#include "auth_core.h"
#include "cloudflux/auth/v1/auth.grpc.pb.h"
#include "cloudflux/server/executor.h"

namespace cloudflux::auth {

class AuthGrpcService final : public cloudflux::auth::v1::AuthService::CallbackService {
 public:
  // `executor` runs every handler (they all touch Postgres or Redis).
  AuthGrpcService(AuthCore& core, server::BlockingExecutor& executor)
      : core_(core), executor_(executor) {}

#define CF_AUTH_RPC(Method, Request, Response)                                           \
  grpc::ServerUnaryReactor* Method(grpc::CallbackServerContext* context,                 \
                                   const cloudflux::auth::v1::Request* request,          \
                                   cloudflux::auth::v1::Response* response) override;
  CF_AUTH_RPC(CreatePrincipal, CreatePrincipalRequest, CreatePrincipalResponse)
  CF_AUTH_RPC(GetPrincipal, GetPrincipalRequest, Principal)
  CF_AUTH_RPC(ListPrincipals, ListPrincipalsRequest, ListPrincipalsResponse)
  CF_AUTH_RPC(SetPrincipalDisabled, SetPrincipalDisabledRequest, Principal)
  CF_AUTH_RPC(SetRoles, SetRolesRequest, Principal)
  CF_AUTH_RPC(CreateApiKey, CreateApiKeyRequest, CreateApiKeyResponse)
  CF_AUTH_RPC(ListApiKeys, ListApiKeysRequest, ListApiKeysResponse)
  CF_AUTH_RPC(RevokeApiKey, RevokeApiKeyRequest, ApiKey)
  CF_AUTH_RPC(IssueToken, IssueTokenRequest, IssueTokenResponse)
  CF_AUTH_RPC(RevokeToken, RevokeTokenRequest, RevokeTokenResponse)
  CF_AUTH_RPC(IntrospectToken, IntrospectTokenRequest, IntrospectTokenResponse)
  CF_AUTH_RPC(GetJwks, GetJwksRequest, GetJwksResponse)
  CF_AUTH_RPC(RotateSigningKey, RotateSigningKeyRequest, RotateSigningKeyResponse)
  CF_AUTH_RPC(ListAuditEvents, ListAuditEventsRequest, ListAuditEventsResponse)
#undef CF_AUTH_RPC

 private:
  AuthCore& core_;
  server::BlockingExecutor& executor_;
};

}  // namespace cloudflux::auth
