#pragma once
// JwtAuthenticator: the Authenticator every CloudFlux server installs in its
// ServerRunner. For each call it takes the bearer token from the
// `authorization` metadata, verifies it locally against the auth service's
// public keys (refetched when an unknown kid shows up, at most once per
// `min_refetch_interval`), consults the revocation list, and checks the
// caller's roles against the PermissionTable. Verified tokens are cached, so
// the hot path is a hash lookup; a cached token's revocation is re-checked
// after `revocation_recheck`.

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cloudflux/authn/jwt.h"
#include "cloudflux/authn/permissions.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/server/auth_hook.h"
#include "cloudflux/server/channel.h"

namespace cloudflux::cache {
class RedisClient;
}

namespace cloudflux::authn {

// Where the public keys come from (the auth service's JWKS, or its own DB).
class KeySource {
 public:
  virtual ~KeySource() = default;
  virtual absl::StatusOr<std::shared_ptr<const PublicKeySet>> Fetch() = 0;
};

// Whether a verified access token was revoked since it was issued: by its
// id, by its session (the refresh-token family it came from), or because
// its subject changed (disabled, roles changed) after it was issued.
class RevocationList {
 public:
  virtual ~RevocationList() = default;
  // UNAVAILABLE when the answer cannot be known (the source is down or
  // incomplete): the caller must then refuse the token.
  virtual absl::StatusOr<bool> IsRevoked(const Claims& claims) = 0;
};

// The Redis keys of the revocation mirror the auth service keeps (its record
// is in PostgreSQL) and every service reads.
struct RevocationKeys {
  // Present (no expiry) while the mirror holds everything the record does;
  // a Redis that restarted empty lacks it until the auth service rebuilt
  // the mirror, and no token is accepted meanwhile.
  static constexpr char kComplete[] = "cloudflux:revocations:complete";
  static std::string Token(const std::string& jti) { return "cloudflux:revoked:" + jti; }
  static std::string Session(const std::string& sid) { return "cloudflux:revoked-session:" + sid; }
  // Value: the subject's current token version; its tokens issued under a
  // lower one (Claims::ver) are revoked.
  static std::string Subject(const std::string& sub) { return "cloudflux:token-version:" + sub; }
};

// Reads the mirror: one MGET of the token's, its session's and its
// subject's keys and the completeness marker.
class RedisRevocationList final : public RevocationList {
 public:
  explicit RedisRevocationList(cache::RedisClient& redis) : redis_(redis) {}
  absl::StatusOr<bool> IsRevoked(const Claims& claims) override;

 private:
  cache::RedisClient& redis_;
};

// AuthService.GetJwks over gRPC.
std::unique_ptr<KeySource> MakeGrpcJwksSource(const std::string& auth_target,
                                              const server::ChannelOptions& channel = {});

struct AuthenticatorOptions {
  VerifyOptions verify;
  absl::Duration min_refetch_interval = absl::Seconds(1);
  absl::Duration revocation_recheck = absl::Seconds(1);
  size_t max_cached_tokens = 100000;
};

// Thread-safe.
class JwtAuthenticator final : public server::Authenticator {
 public:
  JwtAuthenticator(AuthenticatorOptions options, std::unique_ptr<KeySource> keys,
                   std::shared_ptr<RevocationList> revocations, const PermissionTable& permissions,
                   const core::Clock& clock = core::SystemClock::Get());

  absl::StatusOr<server::Principal> Authenticate(std::string_view method,
                                                 const server::RequestMetadata& metadata) override;

  // Verifies a bearer token without a method (for IntrospectToken).
  absl::StatusOr<Claims> VerifyToken(std::string_view token);
  // VerifyToken's answer when it needs no I/O (a cached token whose
  // revocation was checked recently); nullopt when VerifyToken must be called.
  std::optional<absl::StatusOr<Claims>> VerifyTokenCached(std::string_view token);
  // Drops a token from the cache (it was just revoked here).
  void Forget(std::string_view token);

 private:
  struct Entry {
    Claims claims;
    absl::Time revocation_checked;
  };
  absl::StatusOr<std::shared_ptr<const PublicKeySet>> KeysFor(const std::string& kid);
  // The cache's answer: the claims of a token checked within
  // revocation_recheck, or "expired"; nullopt when the token must be
  // verified or re-checked (`due` then receives its cached claims, if any).
  std::optional<absl::StatusOr<Claims>> Lookup(const std::string& token, absl::Time now,
                                               std::optional<Claims>* due);

  AuthenticatorOptions options_;
  std::unique_ptr<KeySource> source_;
  std::shared_ptr<RevocationList> revocations_;
  const PermissionTable& permissions_;
  const core::Clock& clock_;

  absl::Mutex keys_mu_;
  std::shared_ptr<const PublicKeySet> keys_ ABSL_GUARDED_BY(keys_mu_);
  absl::Time last_fetch_ ABSL_GUARDED_BY(keys_mu_) = absl::InfinitePast();

  absl::Mutex cache_mu_;
  absl::flat_hash_map<std::string, Entry> cache_ ABSL_GUARDED_BY(cache_mu_);
};

// The bearer token of `metadata` ("authorization: Bearer <token>").
absl::StatusOr<std::string_view> BearerToken(const server::RequestMetadata& metadata);

}  // namespace cloudflux::authn
