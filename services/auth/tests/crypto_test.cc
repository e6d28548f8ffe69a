#include "crypto.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace cloudflux::auth {
namespace {

TEST(Passwords, Argon2idWithOwaspParameters) {
  auto hash = HashPassword("correct horse battery staple");
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(absl::StartsWith(*hash, "$argon2id$v=19$m=19456,t=2,p=1$")) << *hash;
  EXPECT_TRUE(VerifyPassword("correct horse battery staple", *hash));
  EXPECT_FALSE(VerifyPassword("correct horse battery stapl", *hash));
  EXPECT_FALSE(VerifyPassword("", *hash));
  EXPECT_FALSE(VerifyPassword("x", "not a hash"));
  auto again = HashPassword("correct horse battery staple");
  EXPECT_NE(*again, *hash) << "fresh salt each time";
}

TEST(Secrets, RandomDigestsAndComparison) {
  std::string a = RandomSecret(32), b = RandomSecret(32);
  EXPECT_EQ(a.size(), 43u);  // 256 bits, base64url without padding
  EXPECT_NE(a, b);
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(ConstantTimeEquals("same", "same"));
  EXPECT_FALSE(ConstantTimeEquals("same", "sane"));
  EXPECT_FALSE(ConstantTimeEquals("same", "same+"));
}

TEST(Sealing, AesGcmDetectsTamperingWrongKeysAndWrongContext) {
  std::string key(32, 'k'), other(32, 'o');
  auto sealed = Seal(key, "private key bytes", "kid-1");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(*Open(key, *sealed, "kid-1"), "private key bytes");
  EXPECT_EQ(Open(other, *sealed, "kid-1").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Open(key, *sealed, "kid-2").status().code(), absl::StatusCode::kDataLoss)
      << "a sealed key cannot be moved to another kid";
  std::string flipped = *sealed;
  flipped[14] ^= 1;
  EXPECT_EQ(Open(key, flipped, "kid-1").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Open(key, "short", "kid-1").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Seal("short key", "x", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(*Seal(key, "same", "a"), *Seal(key, "same", "a")) << "fresh nonce each time";
}

}  // namespace
}  // namespace cloudflux::auth
