#pragma once
// Hex encoding, SHA-256 and HMAC-SHA256 (OpenSSL), used for stored secret
// digests, migration checksums and cloud request signatures.

#include <cstdint>
#include <string>
#include <string_view>

namespace cloudflux::core {

std::string HexEncode(std::string_view bytes);
std::string Sha256Hex(std::string_view data);
// Raw 32-byte HMAC-SHA256 of `data` under `key` (cloud request signatures).
std::string HmacSha256(std::string_view key, std::string_view data);

// Incremental SHA-256 for streams. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  // Lowercase hex of everything updated so far; ends the stream.
  std::string HexDigest();
  // The running state after a multiple of 64 bytes (a block boundary), as
  // 40 portable bytes (the eight chaining words and the bit count), so that
  // a stream interrupted there can be continued by another process; ""
  // elsewhere.
  std::string SaveState() const;
  // Continues from a SaveState; false (and nothing changed) if `state` is
  // not one.
  bool RestoreState(std::string_view state);
  // Bytes updated so far.
  uint64_t bytes() const;

 private:
  void* ctx_;  // SHA256_CTX
};

}  // namespace cloudflux::core
