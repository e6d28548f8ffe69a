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

std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> Parse(std::string_view document) {
  return {document.empty() ? nullptr
                           : xmlReadMemory(document.data(), static_cast<int>(document.size()), nullptr,
                                           nullptr, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING),
          &xmlFreeDoc};
}

std::string Text(const xmlNode* node) {
  xmlChar* content = xmlNodeGetContent(node);
  std::string out = content != nullptr ? reinterpret_cast<const char*>(content) : "";
  xmlFree(content);
  return out;
}

void Collect(const xmlNode* node, const char* record, std::vector<const xmlNode*>* out) {
  for (; node != nullptr; node = node->next) {
    if (node->type != XML_ELEMENT_NODE) continue;
    if (std::strcmp(reinterpret_cast<const char*>(node->name), record) == 0) {
      out->push_back(node);
    } else {
      Collect(node->children, record, out);
    }
  }
}

}  // namespace

std::vector<std::map<std::string, std::string>> XmlRecords(std::string_view document, const char* record,
                                                           const std::vector<const char*>& fields) {
  std::vector<std::map<std::string, std::string>> out;
  auto doc = Parse(document);
  if (doc == nullptr) return out;
  std::vector<const xmlNode*> nodes;
  Collect(xmlDocGetRootElement(doc.get()), record, &nodes);
  for (const xmlNode* node : nodes) {
    auto& row = out.emplace_back();
    for (const char* field : fields) {
      const xmlNode* found = Find(node->children, field);
      row[field] = found != nullptr ? Text(found) : "";
    }
  }
  return out;
}

std::optional<std::string> XmlFirstText(std::string_view document, const char* local_name) {
  auto doc = Parse(document);
  if (doc == nullptr) return std::nullopt;
  const xmlNode* node = Find(xmlDocGetRootElement(doc.get()), local_name);
  if (node == nullptr) return std::nullopt;
  return Text(node);
}

std::string XmlEscape(std::string_view text) {
  std::string input(text);
  xmlChar* encoded = xmlEncodeSpecialChars(nullptr, reinterpret_cast<const xmlChar*>(input.c_str()));
  std::string out = encoded != nullptr ? reinterpret_cast<const char*>(encoded) : "";
  xmlFree(encoded);
  return out;
}

}  // namespace cloudflux::storage
