#include <gtest/gtest.h>

#include <atomic>
#include <set>

#include "cloudflux/authn/authenticator.h"
#include "cloudflux/cache/redis.h"
#include "cloudflux/testing/testing.h"

namespace cloudflux::authn {
namespace {

// In-memory key source and revocation list: the real ones (gRPC JWKS, Redis)
// are exercised by the auth service's integration tests.
class MemoryKeySource : public KeySource {
 public:
  absl::StatusOr<std::shared_ptr<const PublicKeySet>> Fetch() override {
    ++fetches;
    auto set = std::make_shared<PublicKeySet>();
    for (const auto& k : keys) {
      if (!set->Add(k.kid(), k.public_bytes()).ok()) return absl::InternalError("bad key");
    }
    return std::shared_ptr<const PublicKeySet>(set);
  }
  std::vector<SigningKey> keys;
  std::atomic<int> fetches{0};
};

class MemoryRevocations : public RevocationList {
 public:
  absl::StatusOr<bool> IsRevoked(const Claims& claims) override {
    ++checks;
    return revoked.count(claims.jti) > 0;
  }
  absl::Status Revoke(const std::string& jti, absl::Time) {
    revoked.insert(jti);
    return absl::OkStatus();
  }
  std::set<std::string> revoked;
  int checks = 0;
};

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto source = std::make_unique<MemoryKeySource>();
    source->keys.push_back(*SigningKey::Generate("k1"));
    source_ = source.get();
    revocations_ = std::make_shared<MemoryRevocations>();
    AuthenticatorOptions options;
    options.verify = {.issuer = "iss", .audience = "aud"};
    auth_ = std::make_unique<JwtAuthenticator>(options, std::move(source), revocations_,
                                               DefaultPermissions(), clock_);
  }
  std::string Token(const std::vector<std::string>& roles, const std::string& jti,
                    int key_index = 0) {
    Claims c;
    c.iss = "iss";
    c.aud = "aud";
    c.sub = "p1";
    c.iat = clock_.Now();
    c.nbf = clock_.Now();
    c.exp = clock_.Now() + absl::Minutes(15);
    c.jti = jti;
    c.roles = roles;
    return EncodeJwt(source_->keys.at(key_index), c);
  }
  absl::StatusOr<server::Principal> Call(const std::string& method, const std::string& header) {
    server::RequestMetadata md;
    if (!header.empty()) md.emplace("authorization", header);
    return auth_->Authenticate(method, md);
  }

  core::ManualClock clock_;
  MemoryKeySource* source_;
  std::shared_ptr<MemoryRevocations> revocations_;
  std::unique_ptr<JwtAuthenticator> auth_;
  const std::string kInfo = "/cloudflux.diagnostics.v1.Diagnostics/GetServerInfo";
  const std::string kCreate = "/cloudflux.auth.v1.AuthService/CreatePrincipal";
};

TEST_F(AuthenticatorTest, AdmitsWithPrincipalAndChecksRoles) {
  std::string token = Token({"viewer"}, "j1");
  auto p = Call(kInfo, "Bearer " + token);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "p1");
  EXPECT_EQ(p->token_id, "j1");
  EXPECT_EQ(Call(kCreate, "Bearer " + token).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(Call(kInfo, "bearer   " + token).ok()) << "scheme is case-insensitive";
}

TEST_F(AuthenticatorTest, MissingOrMalformedCredentialsAreUnauthenticated) {
  EXPECT_EQ(Call(kInfo, "").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Call(kInfo, "Basic dXNlcjpwdw==").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Call(kInfo, "Bearer ").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Call(kInfo, "Bearer garbage").status().code(), absl::StatusCode::kUnauthenticated);
  // Public methods need nothing.
  EXPECT_TRUE(Call("/cloudflux.auth.v1.AuthService/IssueToken", "").ok());
}

TEST_F(AuthenticatorTest, CachesVerifiedTokensAndRechecksRevocation) {
  std::string token = "Bearer " + Token({"viewer"}, "j2");
  ASSERT_TRUE(Call(kInfo, token).ok());
  int checks = revocations_->checks;
  ASSERT_TRUE(Call(kInfo, token).ok());
  EXPECT_EQ(revocations_->checks, checks) << "second call served from the cache";
  ASSERT_TRUE(revocations_->Revoke("j2", absl::InfiniteFuture()).ok());
  clock_.Advance(absl::Seconds(2));  // past revocation_recheck
  auto refused = Call(kInfo, token);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(refused.status().message(), "token revoked");
}

TEST_F(AuthenticatorTest, ExpiredCachedTokensAreRefused) {
  std::string token = "Bearer " + Token({"viewer"}, "j3");
  ASSERT_TRUE(Call(kInfo, token).ok());
  clock_.Advance(absl::Minutes(16));
  EXPECT_EQ(Call(kInfo, token).status().message(), "token expired");
}

TEST_F(AuthenticatorTest, UnknownKidRefetchesAtMostOncePerInterval) {
  ASSERT_TRUE(Call(kInfo, "Bearer " + Token({"viewer"}, "a")).ok());
  EXPECT_EQ(source_->fetches.load(), 1);
  // Rotation: a new key appears at the source.
  source_->keys.push_back(*SigningKey::Generate("k2"));
  std::string rotated = "Bearer " + Token({"viewer"}, "b", 1);
  // Within the refetch interval the new kid is unknown...
  EXPECT_EQ(Call(kInfo, rotated).status().code(), absl::StatusCode::kUnauthenticated);
  clock_.Advance(absl::Seconds(2));
  // ...after it, one refetch picks it up.
  EXPECT_TRUE(Call(kInfo, rotated).ok());
  EXPECT_EQ(source_->fetches.load(), 2);
  // Made-up kids do not cause a fetch storm.
  for (int i = 0; i < 50; ++i) {
    Claims c;
    (void)Call(kInfo, "Bearer " + EncodeJwt(*SigningKey::Generate("bogus" + std::to_string(i)), c));
  }
  EXPECT_EQ(source_->fetches.load(), 2);
}

// The Redis mirror as every service reads it: a token is revoked by its id,
// by its session or by its subject's token version; without the
// completeness marker (a Redis that restarted empty) nothing can be told.
TEST(RedisRevocationListTest, ReadsTokenSessionAndSubjectAndRefusesAnIncompleteMirror) {
  auto address = testing::TestRedisAddress();
  if (!address.ok()) GTEST_SKIP() << address.status();
  // A database of its own: removing the marker must not disturb the
  // services other tests run against the same Redis.
  cache::RedisOptions options;
  options.address = *address;
  options.database = 14;
  auto redis = cache::RedisClient::Create(options);
  ASSERT_TRUE(redis.ok()) << redis.status();
  RedisRevocationList list(**redis);
  Claims claims;
  claims.sub = "sub-" + std::to_string(getpid());
  claims.jti = "jti-" + claims.sub;
  claims.sid = "sid-" + claims.sub;
  claims.ver = 3;
  ASSERT_TRUE((*redis)->Set(RevocationKeys::kComplete, "1").ok());
  EXPECT_FALSE(*list.IsRevoked(claims));
  ASSERT_TRUE((*redis)->Set(RevocationKeys::Subject(claims.sub), "3").ok());
  EXPECT_FALSE(*list.IsRevoked(claims)) << "issued under the current version";
  ASSERT_TRUE((*redis)->Set(RevocationKeys::Subject(claims.sub), "4").ok());
  EXPECT_TRUE(*list.IsRevoked(claims)) << "issued before the subject changed";
  ASSERT_TRUE((*redis)->Delete(RevocationKeys::Subject(claims.sub)).ok());
  ASSERT_TRUE((*redis)->Set(RevocationKeys::Session(claims.sid), "1").ok());
  EXPECT_TRUE(*list.IsRevoked(claims));
  ASSERT_TRUE((*redis)->Delete(RevocationKeys::Session(claims.sid)).ok());
  ASSERT_TRUE((*redis)->Set(RevocationKeys::Token(claims.jti), "1").ok());
  EXPECT_TRUE(*list.IsRevoked(claims));
  ASSERT_TRUE((*redis)->Delete(RevocationKeys::Token(claims.jti)).ok());
  EXPECT_FALSE(*list.IsRevoked(claims));
  // The marker gone: UNAVAILABLE, never "not revoked". (Other tests' auth
  // services put it back within a second.)
  ASSERT_TRUE((*redis)->Delete(RevocationKeys::kComplete).ok());
  EXPECT_EQ(list.IsRevoked(claims).status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE((*redis)->Set(RevocationKeys::kComplete, "1").ok());
}

}  // namespace
}  // namespace cloudflux::authn
