#pragma once
// AuthCore: the auth service's logic, apart from gRPC wiring. Owns
// principals, credentials, signing keys, refresh tokens, revocations, failed
// logins and the audit log in the `auth` schema; Redis holds the mirror of
// revocations and the brute-force counters (RevocationStore, LoginThrottle).
// Thread-safe.

#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cloudflux/auth/v1/auth.pb.h"
#include "cloudflux/authn/authenticator.h"
#include "cloudflux/authn/jwt.h"
#include "cloudflux/cache/redis.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"
#include "cloudflux/db/group_commit.h"
#include "cloudflux/events/outbox.h"
#include "crypto.h"
#include "login_throttle.h"
#include "principal_cache.h"
#include "revocations.h"

namespace cloudflux::auth {

inline constexpr char kAuditTopic[] = "cloudflux.auth.audit";

struct AuthOptions {
  std::string issuer = "cloudflux-auth";
  std::string audience = "cloudflux";
  absl::Duration access_ttl = absl::Minutes(15);
  absl::Duration refresh_ttl = absl::Hours(24 * 30);
  // Failed logins allowed per principal name, and per peer, within the
  // window before further attempts are refused with RESOURCE_EXHAUSTED.
  int max_failures_per_principal = 5;
  int max_failures_per_peer = 30;
  absl::Duration failure_window = absl::Minutes(15);
  Argon2Params argon2;
  std::string master_key;  // 32 bytes, seals signing keys
};

// Who is asking, for the audit log.
struct Caller {
  std::string actor_id;  // principal id of the caller, if authenticated
  std::string peer;      // network peer
};

class AuthCore {
 public:
  AuthCore(db::Pool& pool, cache::RedisClient& redis, AuthOptions options,
           const core::Clock& clock = core::SystemClock::Get());

  // At start: ensures a signing key exists and, when no principal exists,
  // creates the first admin from `admin_password`; with neither an admin nor
  // a password it is FAILED_PRECONDITION (no default credentials).
  absl::Status Bootstrap(const std::string& admin_name, const std::string& admin_password);
  // At start: the service account the other services call each other as
  // (role operator), with `client_secret` (at least 32 characters) as its
  // secret: created if absent, its secret replaced if it differs. An account
  // an admin disabled stays disabled.
  absl::Status EnsureServiceAccount(const std::string& name, const std::string& client_secret);

  absl::StatusOr<cloudflux::auth::v1::CreatePrincipalResponse> CreatePrincipal(
      const cloudflux::auth::v1::CreatePrincipalRequest& request, const Caller& caller);
  absl::StatusOr<cloudflux::auth::v1::Principal> GetPrincipal(const std::string& id);
  absl::StatusOr<cloudflux::auth::v1::ListPrincipalsResponse> ListPrincipals(
      const cloudflux::auth::v1::ListPrincipalsRequest& request);
  absl::StatusOr<cloudflux::auth::v1::Principal> SetPrincipalDisabled(
      const cloudflux::auth::v1::SetPrincipalDisabledRequest& request, const Caller& caller);
  absl::StatusOr<cloudflux::auth::v1::Principal> SetRoles(
      const cloudflux::auth::v1::SetRolesRequest& request, const Caller& caller);

  absl::StatusOr<cloudflux::auth::v1::CreateApiKeyResponse> CreateApiKey(
      const cloudflux::auth::v1::CreateApiKeyRequest& request, const Caller& caller);
  absl::StatusOr<cloudflux::auth::v1::ListApiKeysResponse> ListApiKeys(
      const cloudflux::auth::v1::ListApiKeysRequest& request);
  absl::StatusOr<cloudflux::auth::v1::ApiKey> RevokeApiKey(
      const cloudflux::auth::v1::RevokeApiKeyRequest& request, const Caller& caller);

  absl::StatusOr<cloudflux::auth::v1::IssueTokenResponse> IssueToken(
      const cloudflux::auth::v1::IssueTokenRequest& request, const Caller& caller);
  // A client_credentials grant that succeeds with what is in memory (the
  // credentials, the brute-force counters and the signing key), without
  // blocking: its audit rows are queued for the next group commit and `done`
  // is called once they are committed. Returns false, having done nothing,
  // for any other request: IssueToken handles it.
  bool TryIssueTokenAsync(
      const cloudflux::auth::v1::IssueTokenRequest& request, const Caller& caller,
      std::function<void(absl::StatusOr<cloudflux::auth::v1::IssueTokenResponse>)> done);
  absl::Status RevokeToken(const cloudflux::auth::v1::RevokeTokenRequest& request,
                           const Caller& caller);
  absl::StatusOr<cloudflux::auth::v1::IntrospectTokenResponse> IntrospectToken(
      const cloudflux::auth::v1::IntrospectTokenRequest& request);
  // IntrospectToken's answer when it needs no I/O (an access token verified
  // and revocation-checked within the last second); nullopt otherwise.
  std::optional<absl::StatusOr<cloudflux::auth::v1::IntrospectTokenResponse>>
  IntrospectTokenCached(const cloudflux::auth::v1::IntrospectTokenRequest& request);
  absl::StatusOr<cloudflux::auth::v1::GetJwksResponse> GetJwks();
  absl::StatusOr<cloudflux::auth::v1::RotateSigningKeyResponse> RotateSigningKey(
      const Caller& caller);
  absl::StatusOr<cloudflux::auth::v1::ListAuditEventsResponse> ListAuditEvents(
      const cloudflux::auth::v1::ListAuditEventsRequest& request);

  // Public keys straight from the database (the auth service's own
  // authenticator uses this instead of calling itself).
  std::unique_ptr<authn::KeySource> MakeKeySource();
  std::shared_ptr<authn::RevocationList> revocations() { return revocations_; }
  // Brings the Redis revocation mirror (and, after a Redis restart, the
  // brute-force counters) up to date from PostgreSQL; main runs it every
  // second, changes made here run it at once.
  absl::Status SyncRevocations();
  // Drops revocations and failed logins that no longer matter.
  void Prune() {
    (void)revocation_store_.Prune();
    (void)throttle_.Prune();
  }
  authn::VerifyOptions verify_options() const;

 private:
  struct Signer {
    std::string kid;
    std::shared_ptr<const authn::SigningKey> key;
  };
  static constexpr absl::Duration kSignerRecheck = absl::Seconds(1);
  absl::StatusOr<Signer> CurrentSigner();
  // The signer if it was checked within kSignerRecheck (no database read).
  std::optional<Signer> FreshSigner();
  bool SignerFresh(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(signer_mu_);
  absl::StatusOr<std::shared_ptr<const authn::PublicKeySet>> PublishedKeys();
  absl::Status CreateSigningKey(db::Transaction& tx, const Caller& caller, bool retire_current);
  struct AuditEntry {
    std::string action;
    std::string principal_id;
    bool success = true;
    std::string detail;
  };
  // Audit rows (kAuditColumns parameters each) and their events, built
  // outside any transaction.
  struct AuditBatch {
    std::vector<db::Param> rows;
    std::vector<events::PreparedEvent> events;
  };
  absl::StatusOr<AuditBatch> PrepareAudit(const std::vector<AuditEntry>& entries,
                                          const Caller& caller) const;
  // Several batches in one statement: in the caller's transaction, or
  // committed on its own.
  std::string AuditStatement(std::span<const AuditBatch> batches,
                             std::vector<db::Param>& params) const;
  absl::Status WriteAudit(db::Transaction& tx, std::span<const AuditBatch> batches);
  absl::Status CommitAudit(std::span<const AuditBatch> batches);
  absl::Status AuditAll(db::Transaction& tx, const std::vector<AuditEntry>& entries,
                        const Caller& caller);
  absl::Status Audit(db::Transaction& tx, const std::string& action,
                     const std::string& principal_id, const Caller& caller, bool success,
                     const std::string& detail) {
    return AuditAll(tx, {{action, principal_id, success, detail}}, caller);
  }
  absl::Status AuditAlone(const std::string& action, const std::string& principal_id,
                          const Caller& caller, bool success, const std::string& detail);
  // Records a failed attempt (its counter places stay taken) with its audit
  // row; returns the UNAUTHENTICATED answer for the caller.
  absl::Status RecordFailure(const LoginThrottle::Attempt& attempt, const std::string& principal_id,
                             const Caller& caller, const std::string& why);
  // A signed access token for `principal` (its roles narrowed to `scope`,
  // INVALID_ARGUMENT for a scope it does not hold), issued in session `sid`
  // (a refresh-token family; empty for none); `jti` receives its id.
  absl::StatusOr<cloudflux::auth::v1::IssueTokenResponse> MintAccess(
      const Signer& signer, const cloudflux::auth::v1::Principal& principal,
      const std::string& scope, const std::string& audience, const std::string& sid,
      std::string* jti);
  // A token for a grant that writes nothing but audit rows, and those rows
  // (`audit_first`, then "token.issued"), not yet committed.
  struct MintedWithAudit {
    cloudflux::auth::v1::IssueTokenResponse response;
    AuditBatch audit;
  };
  absl::StatusOr<MintedWithAudit> MintWithAudit(const Signer& signer,
                                                const cloudflux::auth::v1::Principal& principal,
                                                const std::string& grant, const std::string& scope,
                                                const std::string& audience, const Caller& caller,
                                                std::vector<AuditEntry> audit_first);
  // MintAccess for grants that write nothing but audit rows: `audit_first`
  // and "token.issued" are committed together with concurrent grants'.
  absl::StatusOr<cloudflux::auth::v1::IssueTokenResponse> MintGroupCommitted(
      const cloudflux::auth::v1::Principal& principal, const std::string& grant,
      const std::string& scope, const std::string& audience, const Caller& caller,
      std::vector<AuditEntry> audit_first = {});
  static AuditEntry LoginSucceeded(const std::string& principal_id, const std::string& grant) {
    return {"login.succeeded", principal_id, true, grant};
  }
  static AuditEntry TokenIssued(const std::string& principal_id, const std::string& grant,
                                const std::string& jti) {
    return {"token.issued", principal_id, true, "grant=" + grant + " jti=" + jti};
  }
  // The credentials a grant checks, from the cache or the database.
  absl::StatusOr<std::optional<Credentials>> LoadCredentials(const std::string& name);
  absl::StatusOr<cloudflux::auth::v1::IssueTokenResponse> Mint(
      db::Transaction& tx, const cloudflux::auth::v1::Principal& principal,
      const std::string& grant, const std::string& scope, const std::string& audience,
      bool with_refresh, const std::string& family_id, const Caller& caller,
      std::vector<AuditEntry> audit_first = {});

  db::Pool& pool_;
  cache::RedisClient& redis_;
  AuthOptions options_;
  const core::Clock& clock_;
  events::Outbox outbox_{"auth"};
  std::shared_ptr<authn::RevocationList> revocations_;
  LoginThrottle throttle_;
  RevocationStore revocation_store_;
  // Verifies tokens for IntrospectToken: signatures checked once per token,
  // revocation checked on every call.
  std::unique_ptr<authn::JwtAuthenticator> verifier_;

  // Grants that write nothing but audit rows commit them together.
  db::GroupCommit<AuditBatch> audit_log_;
  PrincipalCache principals_;
  std::unique_ptr<db::Listener> principal_changes_;

  absl::Mutex signer_mu_;
  Signer signer_ ABSL_GUARDED_BY(signer_mu_);
  absl::Time signer_checked_ ABSL_GUARDED_BY(signer_mu_) = absl::InfinitePast();
};

}  // namespace cloudflux::auth
