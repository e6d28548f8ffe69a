#include "cloudflux/server/channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_format.h"

namespace cloudflux::server {

std::string RetryServiceConfig(const ChannelOptions& options) {
  if (options.max_attempts <= 1) return "{}";
  return absl::StrFormat(
      R"({"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":%d,)"
      R"("initialBackoff":"%.3fs","maxBackoff":"%.3fs","backoffMultiplier":2,)"
      R"("retryableStatusCodes":["UNAVAILABLE"]}}]})",
      std::min(options.max_attempts, 5), absl::ToDoubleSeconds(options.initial_backoff),
      absl::ToDoubleSeconds(options.max_backoff));
}

namespace {

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const TlsOptions& tls,
                                                             grpc::ChannelArguments& args) {
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  const unsigned int refresh = tls.refresh_seconds();
  auto provider =
      tls.cert_file.empty()
          ? std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(tls.ca_file, refresh)
          : std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
                tls.key_file, tls.cert_file, tls.ca_file, refresh);
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  if (!tls.cert_file.empty()) options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  if (!tls.server_name.empty()) args.SetSslTargetNameOverride(tls.server_name);
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  args.SetMaxSendMessageSize(options.max_send_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.initial_reconnect_backoff)));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.initial_reconnect_backoff)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.max_reconnect_backoff)));
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, options.max_attempts > 1 ? 1 : 0);
  if (options.http2_stream_window_bytes > 0) {
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, options.http2_stream_window_bytes);
  }
  args.SetServiceConfigJSON(RetryServiceConfig(options));
  return grpc::CreateCustomChannel(target, ChannelCredentials(options.tls, args), args);
}

std::unique_ptr<grpc::ClientContext> MakeClientContext(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

}  // namespace cloudflux::server
