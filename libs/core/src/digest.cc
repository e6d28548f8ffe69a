// SHA256_CTX (deprecated in OpenSSL 3, still supported) is used for the
// streaming hash because its state, unlike an EVP context's, can be saved.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "cloudflux/core/digest.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

namespace cloudflux::core {

std::string HexEncode(std::string_view bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

namespace {
SHA256_CTX* Ctx(void* p) { return static_cast<SHA256_CTX*>(p); }
constexpr size_t kStateBytes = 8 * 4 + 8;
}  // namespace

Sha256::Sha256() : ctx_(new SHA256_CTX) { SHA256_Init(Ctx(ctx_)); }

Sha256::~Sha256() { delete Ctx(ctx_); }

void Sha256::Update(std::string_view data) { SHA256_Update(Ctx(ctx_), data.data(), data.size()); }

std::string Sha256::HexDigest() {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256_Final(digest, Ctx(ctx_));
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

uint64_t Sha256::bytes() const {
  const SHA256_CTX* c = Ctx(ctx_);
  return ((uint64_t{c->Nh} << 32) | c->Nl) / 8;
}

std::string Sha256::SaveState() const {
  const SHA256_CTX* c = Ctx(ctx_);
  if (c->num != 0) return "";
  std::string out;
  out.reserve(kStateBytes);
  auto put32 = [&out](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
  };
  for (int i = 0; i < 8; ++i) put32(c->h[i]);
  put32(c->Nh);
  put32(c->Nl);
  return out;
}

bool Sha256::RestoreState(std::string_view state) {
  if (state.size() != kStateBytes) return false;
  auto get32 = [&state](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(state[at + i]);
    return v;
  };
  SHA256_CTX restored;
  SHA256_Init(&restored);
  for (int i = 0; i < 8; ++i) restored.h[i] = get32(4 * i);
  restored.Nh = get32(32);
  restored.Nl = get32(36);
  if (restored.Nl % 512 != 0) return false;  // not at a block boundary
  *Ctx(ctx_) = restored;
  return true;
}

}  // namespace cloudflux::core
