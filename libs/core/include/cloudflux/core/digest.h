#pragma once
// Hex encoding and SHA-256 (OpenSSL), used for stored secret digests and
// migration checksums.

#include <string>
#include <string_view>

namespace cloudflux::core {

std::string HexEncode(std::string_view bytes);
std::string Sha256Hex(std::string_view data);

}  // namespace cloudflux::core
