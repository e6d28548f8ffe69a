// cloudflux-auth: composition root of the auth service.
#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/escaping.h"
#include "auth_core.h"
#include "cloudflux/authn/authenticator.h"
#include "cloudflux/authn/permissions.h"
#include "cloudflux/core/config.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/periodic.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/service/service_app.h"
#include "grpc_service.h"

ABSL_FLAG(std::string, master_key_file, "",
          "File with the 32-byte master key (64 hex characters) that seals signing keys. Required.");
ABSL_FLAG(std::string, bootstrap_admin_name, "admin", "Name of the first admin, created at first start.");
ABSL_FLAG(std::string, bootstrap_admin_password_file, "",
          "File with the first admin's password; needed only while no admin exists.");
ABSL_DECLARE_FLAG(std::string, token_issuer);
ABSL_DECLARE_FLAG(std::string, token_audience);
ABSL_FLAG(std::string, bootstrap_service_account, "cloudflux-services",
          "Service account the other services call each other as (role operator), kept at start "
          "with the secret of --bootstrap_service_secret_file.");
ABSL_FLAG(std::string, bootstrap_service_secret_file, "",
          "File holding the client secret of --bootstrap_service_account (at least 32 characters); "
          "empty = no service account is kept.");
ABSL_FLAG(absl::Duration, access_token_ttl, absl::Minutes(15), "Lifetime of access tokens.");
ABSL_FLAG(int32_t, handler_threads, 16, "Threads that run request handlers (they block on I/O).");
ABSL_FLAG(int32_t, max_failed_logins_per_name, 5,
          "Failed grants allowed per principal name within --failed_login_window; further attempts "
          "are refused (RESOURCE_EXHAUSTED) before any credential is checked.");
ABSL_FLAG(int32_t, max_failed_logins_per_peer, 30,
          "Failed grants allowed per client address within --failed_login_window.");
ABSL_FLAG(absl::Duration, failed_login_window, absl::Minutes(15),
          "The window failed grants are counted in, from the first failure.");
ABSL_FLAG(absl::Duration, refresh_token_ttl, absl::Hours(24 * 30), "Lifetime of refresh tokens.");

namespace {

// Startup failures return from main: exiting with the service's threads (metrics, Redis,
// PostgreSQL pool) still running would tear down static state under them.
int Fail(const std::string& what, const absl::Status& status) {
  cloudflux::core::LogError(what, {{"error", std::string(status.message())}});
  return 1;
}

absl::StatusOr<std::string> ReadMasterKey() {
  std::string text;
  absl::Status s = cloudflux::core::ReadSecretFile(absl::GetFlag(FLAGS_master_key_file), &text);
  if (!s.ok()) return s;
  if (text.size() == 64) {
    std::string raw = absl::HexStringToBytes(text);
    if (absl::BytesToHexString(raw) == absl::AsciiStrToLower(text)) return raw;
  }
  return absl::InvalidArgumentError(
      "--master_key_file (CLOUDFLUX_MASTER_KEY_FILE) must hold 64 hex characters (32 bytes), "
      "e.g. from `openssl rand -hex 32`");
}

}  // namespace

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  auto app = cloudflux::service::ServiceApp::CreateOrExit(
      {.name = "auth",
       .schema = "auth",
       .default_port = 50051,
       .uses_redis = true,
       .authenticates_itself = true}, argc, argv);

  cloudflux::auth::AuthOptions options;
  options.issuer = absl::GetFlag(FLAGS_token_issuer);
  options.audience = absl::GetFlag(FLAGS_token_audience);
  options.access_ttl = absl::GetFlag(FLAGS_access_token_ttl);
  options.refresh_ttl = absl::GetFlag(FLAGS_refresh_token_ttl);
  options.max_failures_per_principal = absl::GetFlag(FLAGS_max_failed_logins_per_name);
  options.max_failures_per_peer = absl::GetFlag(FLAGS_max_failed_logins_per_peer);
  options.failure_window = absl::GetFlag(FLAGS_failed_login_window);
  if (options.max_failures_per_principal < 1 || options.max_failures_per_peer < 1 ||
      options.failure_window <= absl::ZeroDuration()) {
    cloudflux::core::LogError("--max_failed_logins_per_name, --max_failed_logins_per_peer "
                              "(CLOUDFLUX_MAX_FAILED_LOGINS_PER_*) must be at least 1 and "
                              "--failed_login_window positive");
    return 2;
  }
  absl::StatusOr<std::string> master_key = ReadMasterKey();
  if (!master_key.ok()) return Fail("cannot use the master key", master_key.status());
  options.master_key = std::move(*master_key);
  cloudflux::auth::AuthCore core(app->pool(), *app->redis(), options);

  std::string admin_password;
  absl::Status s = cloudflux::core::ReadSecretFile(
      absl::GetFlag(FLAGS_bootstrap_admin_password_file), &admin_password);
  if (!s.ok()) return Fail("cannot read the bootstrap admin password", s);
  s = core.Bootstrap(absl::GetFlag(FLAGS_bootstrap_admin_name), admin_password);
  if (!s.ok()) return Fail("cannot start", s);
  std::string service_secret;
  s = cloudflux::core::ReadSecretFile(absl::GetFlag(FLAGS_bootstrap_service_secret_file), &service_secret);
  if (!s.ok()) return Fail("cannot read the service account's secret", s);
  if (!service_secret.empty()) {
    s = core.EnsureServiceAccount(absl::GetFlag(FLAGS_bootstrap_service_account), service_secret);
    if (!s.ok()) return Fail("cannot keep the service account", s);
  }
  // The Redis mirror of revocations (and, after Redis lost its data, the
  // brute-force counters) follows PostgreSQL within a second; until a Redis
  // that restarted empty is rebuilt, no service accepts a token.
  (void)core.SyncRevocations();
  int ticks = 0;
  cloudflux::core::PeriodicTask revocation_sync(absl::Seconds(1), [&core, &ticks] {
    (void)core.SyncRevocations();
    if (++ticks % 600 == 0) core.Prune();
  });

  cloudflux::authn::AuthenticatorOptions auth_options;
  auth_options.verify = core.verify_options();
  app->runner().SetAuthenticator(std::make_shared<cloudflux::authn::JwtAuthenticator>(
      auth_options, core.MakeKeySource(), core.revocations(),
      cloudflux::authn::DefaultPermissions()));
  cloudflux::server::BlockingExecutor executor(absl::GetFlag(FLAGS_handler_threads));
  cloudflux::auth::AuthGrpcService service(core, executor);
  app->runner().RegisterService(&service, cloudflux::auth::v1::AuthService::service_full_name());
  return app->Run();
}
