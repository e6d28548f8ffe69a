#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cloudflux/authn/jwt.h"
#include "cloudflux/authn/permissions.h"
#include "cloudflux/auth/v1/auth.pb.h"
#include "cloudflux/classification/v1/classification.pb.h"
#include "cloudflux/diagnostics/v1/diagnostics.pb.h"
#include "cloudflux/migration/v1/migration.pb.h"
#include "cloudflux/prediction/v1/prediction.pb.h"
#include "cloudflux/storage/v1/storage.pb.h"

namespace cloudflux::authn {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

Claims BaseClaims() {
  Claims c;
  c.iss = "cloudflux-auth";
  c.aud = "cloudflux";
  c.sub = "principal-1";
  c.iat = kNow;
  c.nbf = kNow;
  c.exp = kNow + absl::Minutes(15);
  c.jti = "jti-1";
  c.roles = {"operator"};
  c.scope = "objects:read";
  return c;
}

VerifyOptions Options() { return {.issuer = "cloudflux-auth", .audience = "cloudflux"}; }

class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = *SigningKey::Generate("k1");
    ASSERT_TRUE(keys_.Add("k1", key_.public_bytes()).ok());
  }
  absl::Status Verify(const std::string& token, absl::Time now = kNow) {
    return VerifyJwt(token, keys_, Options(), now).status();
  }
  // Re-signs arbitrary header/claims JSON with the real key.
  std::string Forge(const std::string& header_json, const std::string& claims_json) {
    std::string input =
        absl::StrCat(Base64UrlEncode(header_json), ".", Base64UrlEncode(claims_json));
    return absl::StrCat(input, ".", Base64UrlEncode(key_.Sign(input)));
  }
  SigningKey key_;
  PublicKeySet keys_;
};

TEST(Base64Url, RoundTripAndStrictness) {
  for (const std::string& s : std::vector<std::string>{"", "f", "fo", "foo", "foob", std::string("\xff\xfe\x00\x01", 4)}) {
    auto decoded = Base64UrlDecode(Base64UrlEncode(s));
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, s);
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64UrlDecode("ab=c").ok());
  EXPECT_FALSE(Base64UrlDecode("a").ok());
  EXPECT_FALSE(Base64UrlDecode("a+b/").ok()) << "standard base64 alphabet is not base64url";
}

TEST_F(JwtTest, RoundTripKeepsEveryClaim) {
  std::string token = EncodeJwt(key_, BaseClaims());
  auto claims = VerifyJwt(token, keys_, Options(), kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->sub, "principal-1");
  EXPECT_EQ(claims->exp, kNow + absl::Minutes(15));
  EXPECT_EQ(claims->roles, std::vector<std::string>{"operator"});
  EXPECT_EQ(claims->jti, "jti-1");
  EXPECT_EQ(claims->scope, "objects:read");
  // NumericDate claims are JSON numbers, and the header names the key.
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_TRUE(absl::StrContains(*Base64UrlDecode(parts[1]), "\"exp\":1800000900"));
  EXPECT_EQ(*Base64UrlDecode(parts[0]), R"({"alg":"EdDSA","typ":"JWT","kid":"k1"})");
}

TEST_F(JwtTest, KeysSurviveARoundTripThroughTheirRawBytes) {
  auto again = SigningKey::FromPrivateBytes("k1", key_.private_bytes());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_bytes(), key_.public_bytes());
  EXPECT_TRUE(Verify(EncodeJwt(*again, BaseClaims())).ok());
  EXPECT_FALSE(SigningKey::FromPrivateBytes("k", "short").ok());
}

void ExpectRejected(const absl::Status& s, const std::string& reason) {
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), reason)) << s.message() << " lacks " << reason;
}

TEST_F(JwtTest, RejectsTamperingAndForeignKeys) {
  std::string token = EncodeJwt(key_, BaseClaims());
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  Claims admin = BaseClaims();
  admin.roles = {"admin"};
  std::vector<std::string> forged = absl::StrSplit(EncodeJwt(*SigningKey::Generate("k1"), admin), '.');
  // Claims from another key, signature from ours: bad signature.
  ExpectRejected(Verify(absl::StrCat(parts[0], ".", forged[1], ".", parts[2])), "bad token signature");
  // A whole token signed by an unknown key with a known kid.
  ExpectRejected(Verify(EncodeJwt(*SigningKey::Generate("k1"), admin)), "bad token signature");
  ExpectRejected(Verify(EncodeJwt(*SigningKey::Generate("k9"), admin)), "unknown signing key 'k9'");
  ExpectRejected(Verify(absl::StrCat(parts[0], ".", parts[1], ".")), "bad token signature");
}

TEST_F(JwtTest, RejectsOtherAlgorithmsIncludingNone) {
  std::string claims = R"({"iss":"cloudflux-auth","aud":"cloudflux","sub":"x","exp":1800000900})";
  ExpectRejected(Verify(Forge(R"({"alg":"none","kid":"k1"})", claims)), "algorithm 'none'");
  ExpectRejected(Verify(Forge(R"({"alg":"HS256","kid":"k1"})", claims)), "algorithm 'HS256'");
  ExpectRejected(Verify(Forge(R"({"kid":"k1"})", claims)), "algorithm ''");
  // The classic "alg":"none" with an empty signature.
  std::string none = absl::StrCat(Base64UrlEncode(R"({"alg":"none"})"), ".",
                                  Base64UrlEncode(claims), ".");
  ExpectRejected(Verify(none), "algorithm 'none'");
  ExpectRejected(Verify(Forge(R"({"alg":"EdDSA"})", claims)), "no key id");
}

TEST_F(JwtTest, RejectsWrongIssuerAudienceAndTimes) {
  Claims c = BaseClaims();
  c.iss = "evil";
  ExpectRejected(Verify(EncodeJwt(key_, c)), "wrong token issuer 'evil'");
  c = BaseClaims();
  c.aud = "other-system";
  ExpectRejected(Verify(EncodeJwt(key_, c)), "wrong token audience");
  std::string token = EncodeJwt(key_, BaseClaims());
  ExpectRejected(Verify(token, kNow + absl::Minutes(16)), "token expired");
  EXPECT_TRUE(Verify(token, kNow + absl::Minutes(15) + absl::Seconds(10)).ok()) << "30 s leeway";
  c = BaseClaims();
  c.nbf = kNow + absl::Minutes(5);
  ExpectRejected(Verify(EncodeJwt(key_, c)), "not valid yet");
  ExpectRejected(Verify(Forge(R"({"alg":"EdDSA","kid":"k1"})",
                              R"({"iss":"cloudflux-auth","aud":"cloudflux","sub":"x"})")),
                 "no expiry");
}

TEST_F(JwtTest, RejectsMalformedTokensWithoutCrashing) {
  ExpectRejected(Verify(""), "empty token");
  ExpectRejected(Verify("abc"), "expected header.claims.signature");
  ExpectRejected(Verify("a.b.c.d"), "expected header.claims.signature");
  ExpectRejected(Verify("!!!.e30.sig"), "header is not base64url");
  ExpectRejected(Verify(absl::StrCat(Base64UrlEncode("{not json"), ".e30.c2ln")), "header is not valid JSON");
  ExpectRejected(Verify(Forge(R"({"alg":"EdDSA","kid":"k1"})", "[1,2,3]")), "claims is not valid JSON");
  ExpectRejected(Verify(Forge(R"({"alg":"EdDSA","kid":"k1"})", R"({"exp":"soon"})")),
                 "claims is not valid JSON");
  ExpectRejected(Verify(std::string(10000, 'a')), "token too long");
  std::string token = EncodeJwt(key_, BaseClaims());
  ExpectRejected(Verify(token.substr(0, token.size() - 1) + "*"), "signature is not base64url");
}

TEST(Permissions, TableRules) {
  const PermissionTable& t = DefaultPermissions();
  const std::string create = "/cloudflux.auth.v1.AuthService/CreatePrincipal";
  EXPECT_TRUE(t.Check(create, {"admin"}).ok());
  EXPECT_EQ(t.Check(create, {"operator"}).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(t.Check(create, {"viewer"}).code(), absl::StatusCode::kPermissionDenied);
  const std::string info = "/cloudflux.diagnostics.v1.Diagnostics/GetServerInfo";
  EXPECT_TRUE(t.Check(info, {"viewer"}).ok());
  const std::string echo = "/cloudflux.diagnostics.v1.Diagnostics/Echo";
  EXPECT_EQ(t.Check(echo, {"viewer"}).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(t.Check(echo, {"viewer", "operator"}).ok());
  EXPECT_TRUE(t.IsPublic("/cloudflux.auth.v1.AuthService/IssueToken"));
  EXPECT_TRUE(t.Check("/cloudflux.auth.v1.AuthService/GetJwks", {}).ok());
  auto unlisted = t.Check("/cloudflux.x.v1.New/Thing", {"admin"});
  EXPECT_EQ(unlisted.code(), absl::StatusCode::kPermissionDenied) << "closed until listed";
  EXPECT_TRUE(IsKnownRole("viewer"));
  EXPECT_TRUE(IsKnownRole("service"));
  EXPECT_FALSE(IsKnownRole("root"));
}

// Every method of every CloudFlux API has its row: a method left out is
// refused to every caller.
TEST(Permissions, EveryApiMethodIsListed) {
  const PermissionTable& t = DefaultPermissions();
  const google::protobuf::FileDescriptor* files[] = {
      cloudflux::auth::v1::Principal::descriptor()->file(),
      cloudflux::storage::v1::PutObjectHeader::descriptor()->file(),
      cloudflux::classification::v1::PolicyRef::descriptor()->file(),
      cloudflux::prediction::v1::Interval::descriptor()->file(),
      cloudflux::migration::v1::SyncLocation::descriptor()->file(),
      cloudflux::diagnostics::v1::GetServerInfoRequest::descriptor()->file()};
  int methods = 0;
  for (const auto* file : files) {
    ASSERT_GT(file->service_count(), 0) << file->name();
    for (int i = 0; i < file->service_count(); ++i) {
      const auto* service = file->service(i);
      for (int m = 0; m < service->method_count(); ++m) {
        const std::string path = absl::StrCat("/", service->full_name(), "/", service->method(m)->name());
        EXPECT_TRUE(t.IsListed(path) || t.IsPublic(path)) << path << " has no row";
        ++methods;
      }
    }
  }
  EXPECT_GT(methods, 60);
}

TEST(Permissions, ReservedNamespacesAreChangedOnlyByServicesAndAdmins) {
  const std::vector<std::string> ops = {"operator", "viewer"}, service = {"operator", "service"}, admin = {"admin"};
  EXPECT_TRUE(IsReservedNamespace("cloudflux-models"));
  EXPECT_FALSE(IsReservedNamespace("cloudflux"));
  EXPECT_FALSE(IsReservedNamespace("photos"));
  EXPECT_EQ(CheckNamespaceWrite("cloudflux-models", &ops).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(CheckNamespaceWrite("cloudflux-models", &service).ok());
  EXPECT_TRUE(CheckNamespaceWrite("cloudflux-models", &admin).ok());
  EXPECT_TRUE(CheckNamespaceWrite("photos", &ops).ok());
  EXPECT_TRUE(CheckNamespaceWrite("cloudflux-models", nullptr).ok()) << "no authentication: no roles to check";
}

}  // namespace
}  // namespace cloudflux::authn
