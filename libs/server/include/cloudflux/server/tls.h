#pragma once
// TLS for CloudFlux servers and the channels between services, with gRPC's
// own TLS credentials. Certificates and keys are read from files and watched
// (gRPC's file-watcher certificate provider): a certificate rotated on disk
// is served to, and trusted for, the next connection, without a restart.

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace cloudflux::server {

struct TlsOptions {
  // PEM files. A server needs cert_file and key_file; a client needs ca_file
  // (the CA its peers' certificates must chain to) and, for mutual TLS,
  // cert_file and key_file of its own.
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
  // Server: refuse clients without a certificate from ca_file (mutual TLS).
  bool require_client_cert = false;
  // Client: the name the server's certificate must carry, when it is not the
  // target's host (e.g. a Kubernetes service name reached through an IP).
  std::string server_name;
  // How often the files are checked for changes.
  absl::Duration refresh_interval = absl::Seconds(10);

  bool enabled() const { return !cert_file.empty() || !ca_file.empty(); }
  // refresh_interval in whole seconds, at least 1 (what gRPC's watcher takes).
  unsigned int refresh_seconds() const {
    return static_cast<unsigned int>(std::max<int64_t>(1, absl::ToInt64Seconds(refresh_interval)));
  }
};

// INVALID_ARGUMENT naming what is missing or unreadable: a server with TLS
// needs a certificate and its key (and a CA for mutual TLS); a client a CA,
// and both halves of its own certificate or neither.
absl::Status ValidateServerTls(const TlsOptions& tls);
absl::Status ValidateClientTls(const TlsOptions& tls);

}  // namespace cloudflux::server
