#pragma once
// What every service accepts as a name, an object key or a line of text at
// its API edge. One place, so that a namespace valid in the storage adapter
// is valid in classification, and so that no service stores a name with a
// NUL, a control character or bytes that are not UTF-8.

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace cloudflux::core {

inline constexpr size_t kMaxKeyBytes = 1024;

// True when `text` is well-formed UTF-8 (no overlongs, no surrogates, at
// most U+10FFFF).
bool IsValidUtf8(std::string_view text);

// A namespace: 1-63 characters of a-z, 0-9, '.', '_', '-', starting with a
// letter or digit.
absl::Status ValidateNamespace(std::string_view ns);

// An object key: 1-1024 bytes of UTF-8 without control characters (C0, DEL,
// C1), not starting with '/', without '.' or '..' segments.
absl::Status ValidateKey(std::string_view key);

// A key prefix for listings and policies: at most 1024 bytes of UTF-8
// without control characters, may be empty; `field` names it in messages.
absl::Status ValidatePrefix(std::string_view prefix, std::string_view field = "prefix");

// A single-line label (a display name, a description, a reason): UTF-8,
// no control characters, at most `max_bytes`. Empty is allowed.
absl::Status ValidateLabel(std::string_view value, std::string_view field, size_t max_bytes);

}  // namespace cloudflux::core
