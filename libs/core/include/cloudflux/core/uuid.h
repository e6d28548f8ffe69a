#pragma once
// UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then randomness; ids sort by
// creation time, which keeps B-tree inserts local in PostgreSQL.

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "cloudflux/core/clock.h"

namespace cloudflux::core {

using Uuid = std::array<uint8_t, 16>;

// Canonical 8-4-4-4-12 lowercase hex form.
std::string UuidToString(const Uuid& uuid);
// Parses the canonical form (case-insensitive); nullopt if malformed.
std::optional<Uuid> ParseUuid(std::string_view text);

// Generates UUIDv7s that are strictly increasing within this generator, even
// for many ids in the same millisecond (a 12-bit sub-millisecond counter,
// RFC 9562 method 1, then the remaining 62 bits random). Thread-safe.
class UuidV7Generator {
 public:
  explicit UuidV7Generator(const Clock& clock = SystemClock::Get()) : clock_(clock) {}
  Uuid Next();
  std::string NextString() { return UuidToString(Next()); }

 private:
  const Clock& clock_;
  std::mutex mu_;
  uint64_t last_ms_ = 0;
  uint16_t counter_ = 0;
};

// Process-wide convenience for ids that need no injected clock.
std::string NewId();

}  // namespace cloudflux::core
