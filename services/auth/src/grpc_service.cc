#include "grpc_service.h"

#include "cloudflux/server/executor.h"

namespace cloudflux::auth {

namespace v1 = cloudflux::auth::v1;


namespace {
Caller CallerOf(const grpc::CallbackServerContext& context) {
  Caller caller;
  if (auto principal = server::PrincipalOf(context)) caller.actor_id = principal->subject;
  caller.peer = context.peer();
  return caller;
}
}  // namespace

grpc::ServerUnaryReactor* AuthGrpcService::CreatePrincipal(grpc::CallbackServerContext* context,
                                                           const v1::CreatePrincipalRequest* request,
                                                           v1::CreatePrincipalResponse* response) {
  return server::FinishUnaryOn(executor_, context, response,
                     [=, this] { return core_.CreatePrincipal(*request, CallerOf(*context)); });
}

grpc::ServerUnaryReactor* AuthGrpcService::GetPrincipal(grpc::CallbackServerContext* context,
                                                        const v1::GetPrincipalRequest* request,
                                                        v1::Principal* response) {
  return server::FinishUnaryOn(executor_, context, response, [=, this] { return core_.GetPrincipal(request->id()); });
}

grpc::ServerUnaryReactor* AuthGrpcService::ListPrincipals(grpc::CallbackServerContext* context,
                                                          const v1::ListPrincipalsRequest* request,
                                                          v1::ListPrincipalsResponse* response) {
  return server::FinishUnaryOn(executor_, context, response, [=, this] { return core_.ListPrincipals(*request); });
}

grpc::ServerUnaryReactor* AuthGrpcService::SetPrincipalDisabled(
    grpc::CallbackServerContext* context, const v1::SetPrincipalDisabledRequest* request,
    v1::Principal* response) {
  return server::FinishUnaryOn(executor_, context, response,
                     [=, this] { return core_.SetPrincipalDisabled(*request, CallerOf(*context)); });
}

grpc::ServerUnaryReactor* AuthGrpcService::SetRoles(grpc::CallbackServerContext* context,
                                                    const v1::SetRolesRequest* request,
                                                    v1::Principal* response) {
  return server::FinishUnaryOn(executor_, context, response,
                     [=, this] { return core_.SetRoles(*request, CallerOf(*context)); });
}

grpc::ServerUnaryReactor* AuthGrpcService::CreateApiKey(grpc::CallbackServerContext* context,
                                                        const v1::CreateApiKeyRequest* request,
                                                        v1::CreateApiKeyResponse* response) {
  return server::FinishUnaryOn(executor_, context, response,
                     [=, this] { return core_.CreateApiKey(*request, CallerOf(*context)); });
}

grpc::ServerUnaryReactor* AuthGrpcService::ListApiKeys(grpc::CallbackServerContext* context,
                                                       const v1::ListApiKeysRequest* request,
                                                       v1::ListApiKeysResponse* response) {
  return server::FinishUnaryOn(executor_, context, response, [=, this] { return core_.ListApiKeys(*request); });
}

grpc::ServerUnaryReactor* AuthGrpcService::RevokeApiKey(grpc::CallbackServerContext* context,
                                                        const v1::RevokeApiKeyRequest* request,
                                                        v1::ApiKey* response) {
  return server::FinishUnaryOn(executor_, context, response,
                     [=, this] { return core_.RevokeApiKey(*request, CallerOf(*context)); });
}

grpc::ServerUnaryReactor* AuthGrpcService::IssueToken(grpc::CallbackServerContext* context,
                                                      const v1::IssueTokenRequest* request,
                                                      v1::IssueTokenResponse* response) {
  // A client_credentials grant whose inputs are all in memory finishes from
  // the group commit of its audit rows: no pool thread waits for it.
  auto* reactor = context->DefaultReactor();
  if (core_.TryIssueTokenAsync(*request, CallerOf(*context),
                               [reactor, response](absl::StatusOr<v1::IssueTokenResponse> r) {
                                 server::FinishWith(reactor, response, std::move(r));
                               })) {
    return reactor;
  }
  return server::FinishOn(executor_, reactor, response,
                          [=, this] { return core_.IssueToken(*request, CallerOf(*context)); });
}

grpc::ServerUnaryReactor* AuthGrpcService::RevokeToken(grpc::CallbackServerContext* context,
                                                       const v1::RevokeTokenRequest* request,
                                                       v1::RevokeTokenResponse* response) {
  return server::FinishUnaryOn(executor_, context, response,
                     [=, this] { return core_.RevokeToken(*request, CallerOf(*context)); });
}

grpc::ServerUnaryReactor* AuthGrpcService::IntrospectToken(
    grpc::CallbackServerContext* context, const v1::IntrospectTokenRequest* request,
    v1::IntrospectTokenResponse* response) {
  // Tokens seen within the last second are answered from memory on the
  // gRPC thread; anything needing Redis or the database goes to the pool.
  if (auto cached = core_.IntrospectTokenCached(*request)) {
    return server::FinishUnary(context, response, [&] { return std::move(*cached); });
  }
  return server::FinishUnaryOn(executor_, context, response, [=, this] { return core_.IntrospectToken(*request); });
}

grpc::ServerUnaryReactor* AuthGrpcService::GetJwks(grpc::CallbackServerContext* context,
                                                   const v1::GetJwksRequest* request,
                                                   v1::GetJwksResponse* response) {
  return server::FinishUnaryOn(executor_, context, response, [=, this] { return core_.GetJwks(); });
}

grpc::ServerUnaryReactor* AuthGrpcService::RotateSigningKey(
    grpc::CallbackServerContext* context, const v1::RotateSigningKeyRequest* request,
    v1::RotateSigningKeyResponse* response) {
  return server::FinishUnaryOn(executor_, context, response, [=, this] { return core_.RotateSigningKey(CallerOf(*context)); });
}

grpc::ServerUnaryReactor* AuthGrpcService::ListAuditEvents(
    grpc::CallbackServerContext* context, const v1::ListAuditEventsRequest* request,
    v1::ListAuditEventsResponse* response) {
  return server::FinishUnaryOn(executor_, context, response, [=, this] { return core_.ListAuditEvents(*request); });
}

}  // namespace cloudflux::auth
