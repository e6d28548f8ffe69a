#pragma once
// Reading the few XML answers the cloud REST APIs give (libxml2).

#include <optional>
#include <string>
#include <string_view>

namespace cloudflux::storage {

// Text of the first element named `local_name` (namespace ignored), or
// nullopt when the document has none or is not XML.
std::optional<std::string> XmlFirstText(std::string_view document, const char* local_name);

// Escapes text for an XML element body.
std::string XmlEscape(std::string_view text);

}  // namespace cloudflux::storage
