#include "xml.h"

#include <libxml/parser.h>
#include <libxml/entities.h>
#include <libxml/tree.h>

#include <cstring>
#include <memory>

namespace cloudflux::storage {
namespace {

const xmlNode* Find(const xmlNode* node, const char* name) {
  for (; node != nullptr; node = node->next) {
    if (node->type == XML_ELEMENT_NODE &&
        std::strcmp(reinterpret_cast<const char*>(node->name), name) == 0) {
      return node;
    }
    if (const xmlNode* found = Find(node->children, name)) return found;
  }
  return nullptr;
}

}  // namespace

std::optional<std::string> XmlFirstText(std::string_view document, const char* local_name) {
  if (document.empty()) return std::nullopt;
  std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> doc(
      xmlReadMemory(document.data(), static_cast<int>(document.size()), nullptr, nullptr,
                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING),
      &xmlFreeDoc);
  if (doc == nullptr) return std::nullopt;
  const xmlNode* node = Find(xmlDocGetRootElement(doc.get()), local_name);
  if (node == nullptr) return std::nullopt;
  xmlChar* content = xmlNodeGetContent(node);
  std::string out = content != nullptr ? reinterpret_cast<const char*>(content) : "";
  xmlFree(content);
  return out;
}

std::string XmlEscape(std::string_view text) {
  std::string input(text);
  xmlChar* encoded = xmlEncodeSpecialChars(nullptr, reinterpret_cast<const xmlChar*>(input.c_str()));
  std::string out = encoded != nullptr ? reinterpret_cast<const char*>(encoded) : "";
  xmlFree(encoded);
  return out;
}

}  // namespace cloudflux::storage
