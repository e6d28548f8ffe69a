#include "cloudflux/authn/service_token.h"

#include "absl/strings/str_cat.h"
#include "cloudflux/core/status.h"
#include "cloudflux/server/grpc_status.h"

namespace cloudflux::authn {

ServiceToken::ServiceToken(const std::string& auth_target, const server::ChannelOptions& channel,
                           std::string client_id, std::string client_secret, const core::Clock& clock)
    : stub_(cloudflux::auth::v1::AuthService::NewStub(server::MakeChannel(auth_target, channel))),
      client_id_(std::move(client_id)),
      client_secret_(std::move(client_secret)),
      clock_(clock) {}

absl::StatusOr<std::string> ServiceToken::Get() {
  absl::MutexLock lock(&mu_);
  absl::Time now = clock_.Now();
  if (now < refresh_at_) return token_;
  cloudflux::auth::v1::IssueTokenRequest request;
  request.set_grant_type("client_credentials");
  request.set_client_id(client_id_);
  request.set_client_secret(client_secret_);
  cloudflux::auth::v1::IssueTokenResponse response;
  auto ctx = server::MakeClientContext(absl::Seconds(5));
  grpc::Status s = stub_->IssueToken(ctx.get(), request, &response);
  if (!s.ok()) {
    // A token that has not expired yet still serves while auth is away.
    if (now < expires_at_) return token_;
    return core::Annotate(server::FromGrpcStatus(s),
                          absl::StrCat("getting a token for service account '", client_id_, "'"));
  }
  absl::Duration lifetime = absl::Seconds(std::max<int64_t>(response.expires_in(), 1));
  token_ = response.access_token();
  expires_at_ = now + lifetime;
  refresh_at_ = now + lifetime * 3 / 4;
  return token_;
}

absl::Status ServiceToken::Authorize(grpc::ClientContext& ctx) {
  CF_ASSIGN_OR_RETURN(std::string token, Get());
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  return absl::OkStatus();
}

}  // namespace cloudflux::authn
