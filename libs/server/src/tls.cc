#include "cloudflux/server/tls.h"

#include <fstream>

#include "absl/strings/str_cat.h"

namespace cloudflux::server {
namespace {

absl::Status Readable(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in.good()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read the TLS ", what, " file '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateServerTls(const TlsOptions& tls) {
  if (!tls.enabled()) return absl::OkStatus();
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate file and its key file");
  }
  if (tls.require_client_cert && tls.ca_file.empty()) {
    return absl::InvalidArgumentError("mutual TLS needs a CA file to verify client certificates");
  }
  if (absl::Status s = Readable(tls.cert_file, "certificate"); !s.ok()) return s;
  if (absl::Status s = Readable(tls.key_file, "key"); !s.ok()) return s;
  if (!tls.ca_file.empty()) return Readable(tls.ca_file, "CA");
  return absl::OkStatus();
}

absl::Status ValidateClientTls(const TlsOptions& tls) {
  if (!tls.enabled()) return absl::OkStatus();
  if (tls.ca_file.empty()) {
    return absl::InvalidArgumentError("a TLS client needs a CA file to verify servers");
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("a client certificate needs its key file, and the other way round");
  }
  if (absl::Status s = Readable(tls.ca_file, "CA"); !s.ok()) return s;
  if (!tls.cert_file.empty()) {
    if (absl::Status s = Readable(tls.cert_file, "certificate"); !s.ok()) return s;
    return Readable(tls.key_file, "key");
  }
  return absl::OkStatus();
}

}  // namespace cloudflux::server
