#include "cloudflux/core/uuid.h"

#include "absl/random/random.h"

#include <cstdio>
#include <stdexcept>

namespace cloudflux::core {
namespace {

// Ids need uniqueness, not secrecy: a per-thread generator seeded from the
// OS entropy pool (absl::BitGen) is enough and avoids OpenSSL's DRBG lock.
void FillRandom(uint8_t* out, size_t n) {
  thread_local absl::BitGen gen;
  for (size_t i = 0; i < n; i += 8) {
    uint64_t r = absl::Uniform<uint64_t>(gen);
    for (size_t j = 0; j < 8 && i + j < n; ++j) out[i + j] = static_cast<uint8_t>(r >> (8 * j));
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string UuidToString(const Uuid& u) {
  char buf[37];
  std::snprintf(buf, sizeof(buf),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
                u[15]);
  return std::string(buf, 36);
}

std::optional<Uuid> ParseUuid(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  Uuid out{};
  size_t byte = 0;
  for (size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    int hi = HexValue(text[i]);
    int lo = HexValue(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[byte++] = static_cast<uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return out;
}

Uuid UuidV7Generator::Next() {
  Uuid u{};
  FillRandom(u.data(), u.size());
  uint64_t ms = static_cast<uint64_t>(absl::ToUnixMillis(clock_.Now()));
  uint16_t counter;
  {
    std::lock_guard lock(mu_);
    if (ms > last_ms_) {
      last_ms_ = ms;
      // Start the counter at a random point in its lower half so that it has
      // room to grow within the millisecond.
      counter_ = static_cast<uint16_t>((u[6] << 8 | u[7]) & 0x07ff);
    } else {
      // Same (or earlier, if the clock stepped back) millisecond: keep the
      // last timestamp and bump the counter; on overflow borrow the next ms.
      ms = last_ms_;
      if (++counter_ > 0x0fff) {
        ms = ++last_ms_;
        counter_ = 0;
      }
    }
    counter = counter_;
  }
  for (int i = 0; i < 6; ++i) u[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
  u[6] = static_cast<uint8_t>(0x70 | ((counter >> 8) & 0x0f));
  u[7] = static_cast<uint8_t>(counter & 0xff);
  u[8] = static_cast<uint8_t>(0x80 | (u[8] & 0x3f));  // RFC 4122 variant
  return u;
}

std::string NewId() {
  // Per-thread generator: no lock shared between threads on the hot path.
  // Ids stay unique across threads through their 62 random bits.
  thread_local UuidV7Generator generator;
  return generator.NextString();
}

}  // namespace cloudflux::core
