#pragma once
// Cryptographic building blocks of the auth service, all from libargon2 and
// OpenSSL: password hashing, random secrets, digests, constant-time
// comparison and authenticated encryption of signing keys at rest.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cloudflux/core/digest.h"

namespace cloudflux::auth {

using core::Sha256Hex;

// OWASP: argon2id with at least 19 MiB, t=2, p=1.
struct Argon2Params {
  uint32_t memory_kib = 19 * 1024;
  uint32_t iterations = 2;
  uint32_t parallelism = 1;
};

// PHC-encoded argon2id hash ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash")
// with a fresh 16-byte salt.
absl::StatusOr<std::string> HashPassword(std::string_view password, const Argon2Params& params = {});
// Constant-time verification against an encoded hash.
bool VerifyPassword(std::string_view password, const std::string& encoded);

// `bytes` random bytes from the OS CSPRNG, base64url-encoded.
std::string RandomSecret(size_t bytes = 32);
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// AES-256-GCM: nonce(12) || ciphertext || tag(16). `key` is 32 bytes;
// `associated` binds the ciphertext to its context (e.g. the kid).
absl::StatusOr<std::string> Seal(std::string_view key, std::string_view plaintext,
                                 std::string_view associated);
absl::StatusOr<std::string> Open(std::string_view key, std::string_view sealed,
                                 std::string_view associated);

}  // namespace cloudflux::auth
