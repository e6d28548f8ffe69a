#pragma once
// CloudFlux access tokens: compact JWS with EdDSA (Ed25519, RFC 8037) through
// OpenSSL 3. Only "EdDSA" is accepted on verification: "none", HS*, RS* and
// anything else are refused before any key is looked at.

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cloudflux::authn {

std::string Base64UrlEncode(std::string_view data);
// Strict: unpadded base64url only.
absl::StatusOr<std::string> Base64UrlDecode(std::string_view text);

struct Claims {
  std::string iss;
  std::string aud;
  std::string sub;
  absl::Time iat;
  absl::Time nbf;  // absl::InfinitePast() when absent
  absl::Time exp;
  std::string jti;
  // The session (refresh-token family) the token was issued in; empty for
  // grants without one (client credentials, API keys).
  std::string sid;
  // The principal's token version at issue (see RevocationKeys::Subject).
  int64_t ver = 0;
  std::vector<std::string> roles;
  std::string scope;
  std::string client_id;
  std::string username;
};

// An Ed25519 key pair with its key id. Immutable; thread-safe.
class SigningKey {
 public:
  static absl::StatusOr<SigningKey> Generate(std::string kid);
  // From the 32-byte raw private key (RFC 8032 seed).
  static absl::StatusOr<SigningKey> FromPrivateBytes(std::string kid, std::string_view raw);

  const std::string& kid() const { return kid_; }
  std::string private_bytes() const;
  const std::string& public_bytes() const { return public_; }
  // Signs `data` (Ed25519 is deterministic).
  std::string Sign(std::string_view data) const;
  // base64url of this key's JWT header {"alg":"EdDSA","typ":"JWT","kid":...}.
  const std::string& encoded_header() const { return encoded_header_; }

 private:
  static SigningKey Wrap(std::string kid, void* evp_pkey);  // takes ownership
  std::string kid_;
  std::shared_ptr<void> pkey_;  // EVP_PKEY
  std::string public_;
  std::string encoded_header_;
};

// header.claims.signature with {"alg":"EdDSA","typ":"JWT","kid":...}.
std::string EncodeJwt(const SigningKey& key, const Claims& claims);

// Public keys by kid. Not thread-safe for writes; share it behind a
// shared_ptr<const PublicKeySet> and swap it whole.
class PublicKeySet {
 public:
  absl::Status Add(std::string kid, std::string_view raw_public_key);
  bool Contains(const std::string& kid) const { return keys_.count(kid) > 0; }
  size_t size() const { return keys_.size(); }
  // OK if `signature` is kid's Ed25519 signature of `data`.
  absl::Status Verify(const std::string& kid, std::string_view data,
                      std::string_view signature) const;

 private:
  std::map<std::string, std::shared_ptr<void>> keys_;  // EVP_PKEY
};

struct VerifyOptions {
  std::string issuer;
  std::string audience;
  absl::Duration leeway = absl::Seconds(30);
  size_t max_token_bytes = 8192;
};

// The token's header without verifying anything (for the kid).
struct UnverifiedHeader {
  std::string alg;
  std::string kid;
};
absl::StatusOr<UnverifiedHeader> PeekHeader(std::string_view token);

// Verifies signature, algorithm, kid, issuer, audience, exp and nbf. Every
// failure is UNAUTHENTICATED with the reason in the message ("token
// expired", "unknown signing key 'k1'", ...).
absl::StatusOr<Claims> VerifyJwt(std::string_view token, const PublicKeySet& keys,
                                 const VerifyOptions& options, absl::Time now);

}  // namespace cloudflux::authn
