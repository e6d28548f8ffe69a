#pragma once
// ServiceToken: the access token a service presents when it calls another
// CloudFlux service, issued by the auth service for the service account
// (client_credentials grant) and reused until most of its lifetime is gone.
// Tokens travel as an "authorization: Bearer" header set on each
// ClientContext (gRPC's call credentials refuse plaintext channels, which the
// dev stack uses). Thread-safe.

#include <grpcpp/client_context.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cloudflux/auth/v1/auth.grpc.pb.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/server/channel.h"

namespace cloudflux::authn {

class ServiceToken {
 public:
  ServiceToken(const std::string& auth_target, const server::ChannelOptions& channel, std::string client_id,
               std::string client_secret, const core::Clock& clock = core::SystemClock::Get());

  // A token valid for a while yet: the cached one until 3/4 of its lifetime
  // has passed, then a new one (UNAVAILABLE etc. from the auth service when
  // it cannot issue one and the cached one has expired).
  absl::StatusOr<std::string> Get();
  // Sets the authorization header of `ctx`.
  absl::Status Authorize(grpc::ClientContext& ctx);
  const std::string& client_id() const { return client_id_; }

 private:
  std::unique_ptr<cloudflux::auth::v1::AuthService::Stub> stub_;
  std::string client_id_, client_secret_;
  const core::Clock& clock_;
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  absl::Time refresh_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time expires_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace cloudflux::authn
