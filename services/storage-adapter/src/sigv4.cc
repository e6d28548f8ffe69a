#include "sigv4.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cloudflux/core/digest.h"
#include "http.h"

namespace cloudflux::storage {

std::string CanonicalQuery(std::vector<std::pair<std::string, std::string>> params) {
  for (auto& [k, v] : params) {
    k = UriEncode(k, false);
    v = UriEncode(v, false);
  }
  std::sort(params.begin(), params.end());
  std::vector<std::string> parts;
  for (const auto& [k, v] : params) parts.push_back(absl::StrCat(k, "=", v));
  return absl::StrJoin(parts, "&");
}

void SignV4(SigV4Request& request, const SigV4Key& key, absl::Time now) {
  std::string amz_date = absl::FormatTime("%Y%m%dT%H%M%SZ", now, absl::UTCTimeZone());
  std::string date = amz_date.substr(0, 8);
  request.headers.emplace_back("x-amz-date", amz_date);
  request.headers.emplace_back("x-amz-content-sha256", request.payload_sha256);

  std::vector<std::pair<std::string, std::string>> canonical;
  for (const auto& [name, value] : request.headers) {
    canonical.emplace_back(absl::AsciiStrToLower(name),
                           std::string(absl::StripAsciiWhitespace(value)));
  }
  std::sort(canonical.begin(), canonical.end());
  std::string canonical_headers, signed_headers;
  for (const auto& [name, value] : canonical) {
    absl::StrAppend(&canonical_headers, name, ":", value, "\n");
    absl::StrAppend(&signed_headers, signed_headers.empty() ? "" : ";", name);
  }
  std::string canonical_request =
      absl::StrCat(request.method, "\n", request.canonical_uri, "\n", request.canonical_query,
                   "\n", canonical_headers, "\n", signed_headers, "\n", request.payload_sha256);
  std::string scope = absl::StrCat(date, "/", key.region, "/", key.service, "/aws4_request");
  std::string string_to_sign = absl::StrCat("AWS4-HMAC-SHA256\n", amz_date, "\n", scope, "\n",
                                            core::Sha256Hex(canonical_request));
  std::string k = core::HmacSha256("AWS4" + key.secret_access_key, date);
  k = core::HmacSha256(k, key.region);
  k = core::HmacSha256(k, key.service);
  k = core::HmacSha256(k, "aws4_request");
  std::string signature = core::HexEncode(core::HmacSha256(k, string_to_sign));
  request.headers.emplace_back(
      "Authorization", absl::StrCat("AWS4-HMAC-SHA256 Credential=", key.access_key_id, "/", scope,
                                    ", SignedHeaders=", signed_headers, ", Signature=", signature));
}

}  // namespace cloudflux::storage
