#include "cloudflux/authn/authenticator.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/auth/v1/auth.grpc.pb.h"
#include "cloudflux/cache/redis.h"
#include "cloudflux/core/status.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/server/grpc_status.h"

namespace cloudflux::authn {

absl::StatusOr<std::string_view> BearerToken(const server::RequestMetadata& metadata) {
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return absl::UnauthenticatedError("missing bearer token");
  std::string_view value = it->second;
  if (value.size() < 7 || !absl::EqualsIgnoreCase(absl::string_view(value.data(), 7), "bearer ")) {
    return absl::UnauthenticatedError("authorization is not a bearer token");
  }
  value.remove_prefix(7);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (value.empty()) return absl::UnauthenticatedError("empty bearer token");
  return value;
}

absl::StatusOr<bool> RedisRevocationList::IsRevoked(const Claims& claims) {
  std::vector<std::string> command = {"MGET", RevocationKeys::kComplete};
  if (!claims.jti.empty()) command.push_back(RevocationKeys::Token(claims.jti));
  if (!claims.sid.empty()) command.push_back(RevocationKeys::Session(claims.sid));
  command.push_back(RevocationKeys::Subject(claims.sub));
  CF_ASSIGN_OR_RETURN(cache::RedisReply reply, redis_.Command(command));
  if (reply.elements.size() != command.size() - 1) {
    return absl::UnavailableError("unexpected answer from Redis to MGET");
  }
  using Type = cache::RedisReply::Type;
  if (reply.elements[0].type == Type::kNil) {
    return absl::UnavailableError(
        "the revocation list in Redis is incomplete (Redis restarted?) until the auth service "
        "has rebuilt it");
  }
  for (size_t i = 1; i + 1 < reply.elements.size(); ++i) {
    if (reply.elements[i].type != Type::kNil) return true;
  }
  const cache::RedisReply& version = reply.elements.back();
  int64_t current = 0;
  if (version.type != Type::kNil && absl::SimpleAtoi(version.str, &current)) {
    return claims.ver < current;
  }
  return false;
}

namespace {

class GrpcJwksSource final : public KeySource {
 public:
  GrpcJwksSource(const std::string& target, const server::ChannelOptions& channel)
      : stub_(cloudflux::auth::v1::AuthService::NewStub(server::MakeChannel(target, channel))) {}

  absl::StatusOr<std::shared_ptr<const PublicKeySet>> Fetch() override {
    auto ctx = server::MakeClientContext(absl::Seconds(3));
    cloudflux::auth::v1::GetJwksResponse resp;
    grpc::Status s = stub_->GetJwks(ctx.get(), {}, &resp);
    if (!s.ok()) {
      return core::Annotate(server::FromGrpcStatus(s), "fetching JWKS from the auth service");
    }
    auto set = std::make_shared<PublicKeySet>();
    for (const auto& k : resp.keys()) {
      if (k.kty() != "OKP" || k.crv() != "Ed25519") continue;
      auto raw = Base64UrlDecode(k.x());
      if (!raw.ok()) continue;
      CF_RETURN_IF_ERROR(set->Add(k.kid(), *raw));
    }
    return std::shared_ptr<const PublicKeySet>(std::move(set));
  }

 private:
  std::unique_ptr<cloudflux::auth::v1::AuthService::Stub> stub_;
};

}  // namespace

std::unique_ptr<KeySource> MakeGrpcJwksSource(const std::string& auth_target,
                                              const server::ChannelOptions& channel) {
  return std::make_unique<GrpcJwksSource>(auth_target, channel);
}

JwtAuthenticator::JwtAuthenticator(AuthenticatorOptions options, std::unique_ptr<KeySource> keys,
                                   std::shared_ptr<RevocationList> revocations,
                                   const PermissionTable& permissions, const core::Clock& clock)
    : options_(std::move(options)),
      source_(std::move(keys)),
      revocations_(std::move(revocations)),
      permissions_(permissions),
      clock_(clock) {}

absl::StatusOr<std::shared_ptr<const PublicKeySet>> JwtAuthenticator::KeysFor(
    const std::string& kid) {
  absl::MutexLock lock(&keys_mu_);
  if (keys_ != nullptr && keys_->Contains(kid)) return keys_;
  // Unknown kid: refetch, but not more often than min_refetch_interval, so a
  // flood of tokens with made-up kids cannot hammer the auth service.
  absl::Time now = clock_.Now();
  if (now - last_fetch_ >= options_.min_refetch_interval || keys_ == nullptr) {
    last_fetch_ = now;
    auto fetched = source_->Fetch();
    if (fetched.ok()) {
      keys_ = *fetched;
    } else if (keys_ == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot verify tokens: ", fetched.status().message()));
    }
  }
  return keys_;
}

std::optional<absl::StatusOr<Claims>> JwtAuthenticator::Lookup(const std::string& token,
                                                               absl::Time now,
                                                               std::optional<Claims>* due) {
  absl::MutexLock lock(&cache_mu_);
  auto it = cache_.find(token);
  if (it == cache_.end()) return std::nullopt;
  if (now >= it->second.claims.exp + options_.verify.leeway) {
    cache_.erase(it);
    return absl::StatusOr<Claims>(absl::UnauthenticatedError("token expired"));
  }
  if (now - it->second.revocation_checked >= options_.revocation_recheck) {
    if (due != nullptr) *due = it->second.claims;
    return std::nullopt;
  }
  return absl::StatusOr<Claims>(it->second.claims);
}

std::optional<absl::StatusOr<Claims>> JwtAuthenticator::VerifyTokenCached(std::string_view token) {
  return Lookup(std::string(token), clock_.Now(), nullptr);
}

void JwtAuthenticator::Forget(std::string_view token) {
  absl::MutexLock lock(&cache_mu_);
  cache_.erase(std::string(token));
}

absl::StatusOr<Claims> JwtAuthenticator::VerifyToken(std::string_view token) {
  std::string key(token);
  absl::Time now = clock_.Now();
  // Claims of a cached token whose revocation check is due.
  std::optional<Claims> cached;
  if (auto answer = Lookup(key, now, &cached)) return *std::move(answer);
  Claims claims;
  if (cached.has_value()) {
    claims = *std::move(cached);
  } else {
    CF_ASSIGN_OR_RETURN(UnverifiedHeader header, PeekHeader(token));
    if (header.alg != "EdDSA") {
      return absl::UnauthenticatedError(
          absl::StrCat("token algorithm '", header.alg, "' is not allowed"));
    }
    CF_ASSIGN_OR_RETURN(auto keys, KeysFor(header.kid));
    CF_ASSIGN_OR_RETURN(claims, VerifyJwt(token, *keys, options_.verify, now));
  }
  if (revocations_ != nullptr) {
    auto revoked = revocations_->IsRevoked(claims);
    if (!revoked.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot check token revocation: ", revoked.status().message()));
    }
    if (*revoked) {
      absl::MutexLock lock(&cache_mu_);
      cache_.erase(key);
      return absl::UnauthenticatedError("token revoked");
    }
  }
  absl::MutexLock lock(&cache_mu_);
  if (cache_.size() >= options_.max_cached_tokens) cache_.clear();
  cache_[key] = Entry{claims, now};
  return claims;
}

absl::StatusOr<server::Principal> JwtAuthenticator::Authenticate(
    std::string_view method, const server::RequestMetadata& metadata) {
  if (permissions_.IsPublic(method)) return server::Principal{};
  CF_ASSIGN_OR_RETURN(std::string_view token, BearerToken(metadata));
  CF_ASSIGN_OR_RETURN(Claims claims, VerifyToken(token));
  CF_RETURN_IF_ERROR(permissions_.Check(method, claims.roles));
  return server::Principal{claims.sub, claims.roles, claims.jti};
}

}  // namespace cloudflux::authn
