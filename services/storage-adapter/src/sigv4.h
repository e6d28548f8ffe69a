#pragma once
// AWS Signature Version 4 (header form) for S3 and for GCS's XML API with
// HMAC keys. HMAC-SHA256 and SHA-256 come from OpenSSL.

#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace cloudflux::storage {

struct SigV4Key {
  std::string access_key_id;
  std::string secret_access_key;
  std::string region;   // "us-east-1"; GCS: "auto"
  std::string service;  // "s3"
};

struct SigV4Request {
  std::string method;
  std::string canonical_uri;    // already URI-encoded path, e.g. "/bucket/a%20b"
  std::string canonical_query;  // "" or sorted, encoded "a=1&b=2"
  // Headers to sign and send; must include "host". Names any case.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_sha256;  // hex; "UNSIGNED-PAYLOAD" is allowed
};

// Adds x-amz-date, x-amz-content-sha256 and Authorization to `request`.
void SignV4(SigV4Request& request, const SigV4Key& key, absl::Time now);

// The canonical query string of unencoded (name, value) pairs.
std::string CanonicalQuery(std::vector<std::pair<std::string, std::string>> params);

}  // namespace cloudflux::storage
