#pragma once
// Client channels to other CloudFlux services (and anything gRPC): keepalive,
// message-size limits, and a retry policy for transient failures, all set
// explicitly; plus a ClientContext factory that always sets a deadline.

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "cloudflux/server/tls.h"

namespace cloudflux::server {

struct ChannelOptions {
  int max_receive_message_bytes = 16 << 20;
  int max_send_message_bytes = 16 << 20;
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Retries of UNAVAILABLE with exponential backoff (gRPC's retry policy);
  // 1 disables retries.
  int max_attempts = 4;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  // Reconnection backoff after a failed connect (gRPC's default grows to
  // 120 s, too slow to notice a restarted peer).
  absl::Duration initial_reconnect_backoff = absl::Milliseconds(200);
  absl::Duration max_reconnect_backoff = absl::Seconds(10);
  // HTTP/2 receive window per stream, fixed, as on the server side
  // (ServerOptions::http2_stream_window_bytes). gRPC's default grows the
  // window with bandwidth-delay probing and reads whatever the peer sends
  // into memory, so a client that consumes a large download more slowly than
  // it arrives buffers hundreds of MiB. 4 MiB lets a few 1 MiB messages be
  // in flight, so the sender does not wait for a window update per message.
  // 0 = gRPC's adaptive windows.
  int http2_stream_window_bytes = 4 << 20;
  // TLS to the server (verified against tls.ca_file; with a client
  // certificate for mutual TLS) when enabled; plaintext otherwise.
  TlsOptions tls;
};

// The service config JSON that carries the retry policy.
std::string RetryServiceConfig(const ChannelOptions& options);

// A channel to `target` ("host:port", "dns:///svc:50051", ...), plaintext
// or TLS as options.tls says.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const ChannelOptions& options = {});

// A ClientContext whose deadline is now + timeout.
std::unique_ptr<grpc::ClientContext> MakeClientContext(absl::Duration timeout);

}  // namespace cloudflux::server
