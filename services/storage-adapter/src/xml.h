#pragma once
// Reading the few XML answers the cloud REST APIs give (libxml2).

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cloudflux::storage {

// Text of the first element named `local_name` (namespace ignored), or
// nullopt when the document has none or is not XML.
std::optional<std::string> XmlFirstText(std::string_view document, const char* local_name);

// For each element named `record` (in document order), the text of its
// first descendant named each of `fields` ("" when it has none). Empty when
// the document is not XML.
std::vector<std::map<std::string, std::string>> XmlRecords(std::string_view document, const char* record,
                                                           const std::vector<const char*>& fields);

// Escapes text for an XML element body.
std::string XmlEscape(std::string_view text);

}  // namespace cloudflux::storage
