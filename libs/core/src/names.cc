#include "cloudflux/core/names.h"

#include "absl/strings/str_cat.h"

namespace cloudflux::core {

bool IsValidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

namespace {

// Debian's abseil has its own string_view.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The first control character of UTF-8 `text` (C0, DEL or C1), if any.
bool HasControl(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) return true;
    // C1 controls U+0080..U+009F are encoded C2 80..C2 9F.
    if (c == 0xc2 && i + 1 < text.size()) {
      auto d = static_cast<unsigned char>(text[i + 1]);
      if (d >= 0x80 && d <= 0x9f) return true;
    }
  }
  return false;
}

absl::Status CheckText(std::string_view value, std::string_view field) {
  if (!IsValidUtf8(value)) return absl::InvalidArgumentError(absl::StrCat(A(field), " is not valid UTF-8"));
  if (HasControl(value)) {
    return absl::InvalidArgumentError(absl::StrCat(A(field), " contains a control character"));
  }
  return absl::OkStatus();
}

absl::Status CheckKeyShape(std::string_view key, std::string_view field) {
  if (key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(A(field), " is longer than ", kMaxKeyBytes, " bytes"));
  }
  if (!key.empty() && key.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(A(field), " must not start with '/'"));
  }
  if (absl::Status text = CheckText(key, field); !text.ok()) return text;
  size_t start = 0;
  while (start < key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    std::string_view segment = key.substr(start, end - start);
    if (segment == ".." || segment == ".") {
      return absl::InvalidArgumentError(absl::StrCat(A(field), " must not contain '.' or '..' segments"));
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateNamespace(std::string_view ns) {
  if (ns.empty()) return absl::InvalidArgumentError("namespace is required");
  bool ok = ns.size() <= 63;
  for (size_t i = 0; ok && i < ns.size(); ++i) {
    char c = ns[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    ok = alnum || (i > 0 && (c == '.' || c == '_' || c == '-'));
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        "namespace must be 1-63 characters of a-z, 0-9, '.', '_', '-' starting with a letter or "
        "digit");
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("key is required");
  return CheckKeyShape(key, "key");
}

absl::Status ValidatePrefix(std::string_view prefix, std::string_view field) {
  // Not a key's shape: "logs/." is the prefix of "logs/.hidden".
  return ValidateLabel(prefix, field, kMaxKeyBytes);
}

absl::Status ValidateLabel(std::string_view value, std::string_view field, size_t max_bytes) {
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(A(field), " is longer than ", max_bytes, " bytes"));
  }
  return CheckText(value, field);
}

}  // namespace cloudflux::core
