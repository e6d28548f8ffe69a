#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include <vector>

#include "cloudflux/core/uuid.h"
#include "internal.h"

namespace cloudflux::server::internal {
namespace {

std::string_view SliceView(const grpc_slice& s) {
  return std::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(s)),
                          GRPC_SLICE_LENGTH(s));
}

// C-core callback; `state` is the heap-held shared_ptr<AuthHookConfig>.
// `context` belongs to the connection, not the call: nothing is written to it.
void Process(void* state, grpc_auth_context* context, const grpc_metadata* md, size_t num_md,
             grpc_process_auth_metadata_done_cb cb, void* user_data) {
  auto& config = **static_cast<std::shared_ptr<AuthHookConfig>*>(state);
  RequestMetadata metadata;
  std::string_view method;
  std::string_view request_id;
  if (config.authenticator == nullptr) {
    cb(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
    return;
  }
  for (size_t i = 0; i < num_md; ++i) {
    std::string_view key = SliceView(md[i].key);
    std::string_view value = SliceView(md[i].value);
    if (key == ":path") {
      method = value;
    } else if (key == kRequestIdHeader) {
      request_id = value;
    }
    metadata.emplace(key, value);
  }
  if (config.authenticator != nullptr && !IsAlwaysOpenMethod(method)) {
    absl::StatusOr<Principal> principal = config.authenticator->Authenticate(method, metadata);
    if (!principal.ok()) {
      std::string minted;
      if (request_id.empty() || request_id.size() > kMaxRequestIdLength) {
        minted = core::NewId();
        request_id = minted;
      }
      if (config.on_rejected) config.on_rejected(method, request_id, principal.status());
      std::string message(principal.status().message());
      cb(user_data, nullptr, 0, nullptr, 0,
         static_cast<grpc_status_code>(principal.status().code()), message.c_str());
      return;
    }
  }
  cb(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
}

// The C core's TLS server credentials over a file-watcher provider.
grpc_server_credentials* TlsServerCredentials(const TlsOptions& tls) {
  grpc_tls_certificate_provider* provider = grpc_tls_certificate_provider_file_watcher_create(
      tls.key_file.c_str(), tls.cert_file.c_str(), tls.ca_file.empty() ? nullptr : tls.ca_file.c_str(),
      tls.refresh_seconds());
  grpc_tls_credentials_options* options = grpc_tls_credentials_options_create();
  grpc_tls_credentials_options_set_certificate_provider(options, provider);
  grpc_tls_certificate_provider_release(provider);  // the options hold it
  grpc_tls_credentials_options_watch_identity_key_cert_pairs(options);
  if (!tls.ca_file.empty()) grpc_tls_credentials_options_watch_root_certs(options);
  grpc_tls_credentials_options_set_cert_request_type(
      options, tls.require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                       : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  return grpc_tls_server_credentials_create(options);  // takes the options
}

class HookedCredentials final : public grpc::ServerCredentials {
 public:
  HookedCredentials(std::shared_ptr<AuthHookConfig> config, TlsOptions tls)
      : config_(std::move(config)), tls_(std::move(tls)) {}

  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {}

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    grpc_server_credentials* creds =
        tls_.enabled() ? TlsServerCredentials(tls_) : grpc_insecure_server_credentials_create();
    grpc_auth_metadata_processor processor;
    processor.process = &Process;
    processor.destroy = [](void* state) {
      delete static_cast<std::shared_ptr<AuthHookConfig>*>(state);
    };
    processor.state = new std::shared_ptr<AuthHookConfig>(config_);
    grpc_server_credentials_set_auth_metadata_processor(creds, processor);
    int port = grpc_server_add_http2_port(server, addr.c_str(), creds);
    grpc_server_credentials_release(creds);
    return port;
  }

  std::shared_ptr<AuthHookConfig> config_;
  TlsOptions tls_;
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> MakeHookedCredentials(std::shared_ptr<AuthHookConfig> config,
                                                               const TlsOptions& tls) {
  return std::make_shared<HookedCredentials>(std::move(config), tls);
}

}  // namespace cloudflux::server::internal
