#include "auth_core.h"

#include <google/protobuf/util/time_util.h>

#include <regex>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cloudflux/auth/v1/events.pb.h"
#include "cloudflux/authn/permissions.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/server/paging.h"

namespace cloudflux::auth {

namespace v1 = cloudflux::auth::v1;
using google::protobuf::util::TimeUtil;

namespace {

constexpr char kPrincipalColumns[] =
    "id::text, name, kind, array_to_string(roles, ','), disabled, "
    "(extract(epoch from created_at) * 1000000)::bigint, token_version";
constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
constexpr size_t kMaxNameLength = 128;
constexpr size_t kMinPasswordLength = 12;
constexpr size_t kMaxPasswordLength = 1024;
constexpr size_t kMaxSecretLength = 512;
constexpr char kApiKeyPrefix[] = "cfk_";
constexpr char kRefreshPrefix[] = "cfr_";
// NOTIFY channel of schema/003_principal_notify.sql.
constexpr char kPrincipalChannel[] = "cloudflux_auth_principals";

google::protobuf::Timestamp MicrosToProto(int64_t micros) {
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

v1::Principal PrincipalFromRow(const db::Row& row) {
  v1::Principal p;
  p.set_id(row.Text(0));
  p.set_name(row.Text(1));
  p.set_kind(row.Text(2) == "user" ? v1::PRINCIPAL_KIND_USER : v1::PRINCIPAL_KIND_SERVICE_ACCOUNT);
  for (absl::string_view r : absl::StrSplit(row.Text(3), ',', absl::SkipEmpty())) {
    p.add_roles(std::string(r));
  }
  p.set_disabled(row.Bool(4));
  *p.mutable_created() = MicrosToProto(row.Int(5));
  p.set_token_version(row.Int(6));
  return p;
}

absl::Status ValidateName(const std::string& name) {
  static const std::regex kName(R"(^[A-Za-z0-9][A-Za-z0-9._@-]*$)");
  if (name.empty()) return absl::InvalidArgumentError("name is required");
  if (name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("name is longer than ", kMaxNameLength, " characters"));
  }
  if (!std::regex_match(name, kName)) {
    return absl::InvalidArgumentError(
        "name may contain letters, digits and . _ @ - and must start with a letter or digit");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RolesArray(const google::protobuf::RepeatedPtrField<std::string>& roles) {
  std::set<std::string> seen;
  for (const auto& r : roles) {
    if (!authn::IsKnownRole(r)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown role '", r.substr(0, 64), "'; roles are admin, operator, viewer, service"));
    }
    seen.insert(r);
  }
  return absl::StrCat("{", absl::StrJoin(seen, ","), "}");
}

absl::Status ValidateId(const std::string& id, const char* what) {
  if (!core::ParseUuid(id).has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be a UUID"));
  }
  return absl::OkStatus();
}

using Page = server::PageCursor;

// A page whose cursor must be a UUID (the id of the last item returned).
absl::StatusOr<Page> ParsePage(const cloudflux::common::v1::PageRequest& request) {
  CF_ASSIGN_OR_RETURN(Page page, server::ParsePage(request, kDefaultPageSize, kMaxPageSize));
  if (!page.after.empty() && !core::ParseUuid(page.after).has_value()) {
    return absl::InvalidArgumentError("invalid page_token");
  }
  return page;
}

// Fills next_page_token if the query returned one row more than the page.
template <class Fn>
void Paginate(const db::Result& rows, const Page& page,
              cloudflux::common::v1::PageResponse* out, Fn&& add) {
  size_t n = std::min(rows.size(), static_cast<size_t>(page.size));
  for (size_t i = 0; i < n; ++i) add(rows[i]);
  out->set_total_size(-1);
  if (rows.size() > static_cast<size_t>(page.size)) {
    out->set_next_page_token(server::PageToken(rows[n - 1].Text(0)));
  }
}

// The one row a statement touched, or NOT_FOUND naming `what` and `id`.
absl::StatusOr<db::Row> ExecOne(db::Transaction& tx, const std::string& sql,
                                const std::vector<db::Param>& params, const std::string& what,
                                const std::string& id) {
  CF_ASSIGN_OR_RETURN(db::Result rows, tx.Exec(sql, params));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat(what, " ", id, " not found"));
  return rows[0];
}

bool LooksLikeJwt(const std::string& token) {
  return std::count(token.begin(), token.end(), '.') == 2;
}

}  // namespace

AuthCore::AuthCore(db::Pool& pool, cache::RedisClient& redis, AuthOptions options,
                   const core::Clock& clock)
    : pool_(pool),
      redis_(redis),
      options_(std::move(options)),
      clock_(clock),
      revocations_(std::make_shared<authn::RedisRevocationList>(redis)),
      throttle_(pool, redis,
                {.max_failures_per_name = options_.max_failures_per_principal,
                 .max_failures_per_peer = options_.max_failures_per_peer,
                 .window = options_.failure_window}),
      revocation_store_(pool, redis, options_.access_ttl, [this] { return throttle_.Rebuild(); },
                        clock),
      audit_log_([this](std::span<const AuditBatch> batches) { return CommitAudit(batches); }),
      principals_(absl::Seconds(60), 100000, clock) {
  auto listener = db::Listener::Start(
      pool.options().url, kPrincipalChannel,
      {.on_notify = [this](const std::string& name) { principals_.Invalidate(name); },
       .on_state = [this](bool listening) { principals_.set_trusted(listening); }});
  if (listener.ok()) principal_changes_ = std::move(*listener);
  authn::AuthenticatorOptions verifier_options;
  verifier_options.verify = verify_options();
  // A token revoked here is forgotten at once (RevokeToken); one revoked
  // through another replica reads inactive within this delay.
  verifier_options.revocation_recheck = absl::Seconds(1);
  verifier_ = std::make_unique<authn::JwtAuthenticator>(
      verifier_options, MakeKeySource(), revocations_, authn::DefaultPermissions(), clock_);
}

authn::VerifyOptions AuthCore::verify_options() const {
  return {.issuer = options_.issuer, .audience = options_.audience};
}

// ----------------------------------------------------------------- audit

constexpr size_t kAuditColumns = 8;

absl::StatusOr<AuthCore::AuditBatch> AuthCore::PrepareAudit(const std::vector<AuditEntry>& entries,
                                                            const Caller& caller) const {
  int64_t now_micros = absl::ToUnixMicros(clock_.Now());
  std::string peer = caller.peer.substr(0, 256);
  AuditBatch out;
  out.rows.reserve(entries.size() * kAuditColumns);
  for (const AuditEntry& entry : entries) {
    v1::AuditEvent event;
    event.set_id(core::NewId());
    *event.mutable_time() = TimeUtil::MicrosecondsToTimestamp(now_micros);
    event.set_action(entry.action);
    event.set_principal_id(entry.principal_id);
    event.set_actor_id(caller.actor_id);
    event.set_peer(peer);
    event.set_success(entry.success);
    event.set_detail(entry.detail.substr(0, 1024));
    out.rows.insert(out.rows.end(),
                    {event.id(), std::to_string(now_micros), entry.action, entry.principal_id,
                     caller.actor_id, peer, entry.success ? "t" : "f", event.detail()});
    v1::AuditRecorded payload;
    *payload.mutable_event() = std::move(event);
    CF_ASSIGN_OR_RETURN(events::PreparedEvent prepared,
                        events::PrepareEvent(events::MakeEnvelope(
                            "cloudflux/auth", "audit/" + entry.action,
                            entry.principal_id.empty() ? entry.action : entry.principal_id,
                            payload, clock_)));
    out.events.push_back(std::move(prepared));
  }
  return out;
}

// One statement (a data-modifying WITH) writes the audit rows and their
// outbox events: one round trip, atomic on its own. Columns travel as arrays,
// so the statement text is the same for any number of rows.
std::string AuthCore::AuditStatement(std::span<const AuditBatch> batches,
                                     std::vector<db::Param>& params) const {
  std::vector<events::PreparedEvent> prepared;
  std::vector<std::vector<std::string>> columns(kAuditColumns);
  for (const AuditBatch& batch : batches) {
    for (size_t i = 0; i < batch.rows.size(); ++i) {
      columns[i % kAuditColumns].push_back(batch.rows[i].value_or(""));
    }
    prepared.insert(prepared.end(), batch.events.begin(), batch.events.end());
  }
  size_t n = params.size();
  for (const auto& column : columns) params.push_back(db::ArrayLiteral(column));
  std::string sql = absl::StrCat(
      "WITH audit AS (INSERT INTO auth.audit_events (id, time, action, principal_id, actor_id, "
      "peer, success, detail) SELECT i, to_timestamp(t::double precision / 1000000), a, p, ac, "
      "pe, s, d FROM unnest($", n + 1, "::uuid[], $", n + 2, "::bigint[], $", n + 3,
      "::text[], $", n + 4, "::text[], $", n + 5, "::text[], $", n + 6, "::text[], $", n + 7,
      "::bool[], $", n + 8, "::text[]) AS x(i, t, a, p, ac, pe, s, d)) ");
  absl::StrAppend(&sql, outbox_.InsertStatement(kAuditTopic, prepared, params));
  return sql;
}

absl::Status AuthCore::WriteAudit(db::Transaction& tx, std::span<const AuditBatch> batches) {
  std::vector<db::Param> params;
  std::string sql = AuditStatement(batches, params);
  return tx.Exec(sql, params).status();
}

absl::Status AuthCore::CommitAudit(std::span<const AuditBatch> batches) {
  std::vector<db::Param> params;
  std::string sql = AuditStatement(batches, params);
  return pool_.Exec(sql, params).status();
}

absl::Status AuthCore::AuditAll(db::Transaction& tx, const std::vector<AuditEntry>& entries,
                                const Caller& caller) {
  CF_ASSIGN_OR_RETURN(AuditBatch batch, PrepareAudit(entries, caller));
  return WriteAudit(tx, std::span<const AuditBatch>(&batch, 1));
}

absl::Status AuthCore::AuditAlone(const std::string& action, const std::string& principal_id,
                                  const Caller& caller, bool success, const std::string& detail) {
  return pool_.InTransaction([&](db::Transaction& tx) {
    return Audit(tx, action, principal_id, caller, success, detail);
  });
}

// ------------------------------------------------------------ brute force

absl::Status AuthCore::RecordFailure(const LoginThrottle::Attempt& attempt,
                                     const std::string& principal_id, const Caller& caller,
                                     const std::string& why) {
  // The failure's record (behind the counter) and its audit row together.
  absl::Status recorded = pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_RETURN_IF_ERROR(throttle_.Failed(tx, attempt));
    return Audit(tx, "login.failed", principal_id, caller, false, why);
  });
  if (!recorded.ok()) {
    core::LogWarn("a failed login was not recorded", {{"error", std::string(recorded.message())}});
  }
  return absl::UnauthenticatedError("invalid credentials");
}

absl::Status AuthCore::SyncRevocations() {
  absl::Status s = revocation_store_.Sync();
  if (!s.ok()) {
    core::LogWarn("revocation mirror not in sync", {{"error", std::string(s.message())}});
  }
  return s;
}

// ----------------------------------------------------------- signing keys

absl::Status AuthCore::CreateSigningKey(db::Transaction& tx, const Caller& caller,
                                        bool retire_current) {
  std::string kid = core::NewId();
  CF_ASSIGN_OR_RETURN(authn::SigningKey key, authn::SigningKey::Generate(kid));
  CF_ASSIGN_OR_RETURN(std::string sealed, Seal(options_.master_key, key.private_bytes(), kid));
  if (retire_current) {
    // Old keys keep verifying until every token they signed has expired.
    CF_RETURN_IF_ERROR(
        tx.Exec("UPDATE auth.signing_keys SET retired_at = now(), publish_until = now() + "
                "$1::interval WHERE retired_at IS NULL",
                {absl::StrCat(absl::ToInt64Seconds(options_.access_ttl + absl::Minutes(1)), " seconds")})
            .status());
  }
  CF_RETURN_IF_ERROR(tx.Exec("INSERT INTO auth.signing_keys (kid, private_sealed, public_key) "
                             "VALUES ($1, $2::bytea, $3::bytea)",
                             {kid, db::Bytea(sealed), db::Bytea(key.public_bytes())})
                         .status());
  return Audit(tx, "signing_key.created", "", caller, true, kid);
}

bool AuthCore::SignerFresh(absl::Time now) const {
  // Another replica may have rotated: look again at most once a second.
  return signer_.key != nullptr && now - signer_checked_ < kSignerRecheck;
}

std::optional<AuthCore::Signer> AuthCore::FreshSigner() {
  absl::MutexLock lock(&signer_mu_);
  if (SignerFresh(clock_.Now())) return signer_;
  return std::nullopt;
}

absl::StatusOr<AuthCore::Signer> AuthCore::CurrentSigner() {
  absl::MutexLock lock(&signer_mu_);
  absl::Time now = clock_.Now();
  if (SignerFresh(now)) return signer_;
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec("SELECT kid, private_sealed FROM auth.signing_keys WHERE "
                                 "retired_at IS NULL ORDER BY created_at DESC LIMIT 1"));
  if (rows.empty()) return absl::FailedPreconditionError("no signing key");
  signer_checked_ = now;
  if (signer_.kid != rows[0].Text(0)) {
    CF_ASSIGN_OR_RETURN(std::string raw, Open(options_.master_key, rows[0].Bytes(1), rows[0].Text(0)));
    CF_ASSIGN_OR_RETURN(authn::SigningKey key, authn::SigningKey::FromPrivateBytes(rows[0].Text(0), raw));
    signer_ = Signer{rows[0].Text(0), std::make_shared<const authn::SigningKey>(std::move(key))};
  }
  return signer_;
}

absl::StatusOr<std::shared_ptr<const authn::PublicKeySet>> AuthCore::PublishedKeys() {
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec("SELECT kid, public_key FROM auth.signing_keys WHERE "
                                 "publish_until IS NULL OR publish_until > now() ORDER BY created_at"));
  auto set = std::make_shared<authn::PublicKeySet>();
  for (const auto& row : rows) CF_RETURN_IF_ERROR(set->Add(row.Text(0), row.Bytes(1)));
  return std::shared_ptr<const authn::PublicKeySet>(std::move(set));
}

std::unique_ptr<authn::KeySource> AuthCore::MakeKeySource() {
  class DbKeySource final : public authn::KeySource {
   public:
    explicit DbKeySource(AuthCore* core) : core_(core) {}
    absl::StatusOr<std::shared_ptr<const authn::PublicKeySet>> Fetch() override {
      return core_->PublishedKeys();
    }

   private:
    AuthCore* core_;
  };
  return std::make_unique<DbKeySource>(this);
}

absl::StatusOr<v1::GetJwksResponse> AuthCore::GetJwks() {
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec("SELECT kid, public_key FROM auth.signing_keys WHERE "
                                 "publish_until IS NULL OR publish_until > now() ORDER BY created_at"));
  v1::GetJwksResponse out;
  for (const auto& row : rows) {
    auto* k = out.add_keys();
    k->set_kty("OKP");
    k->set_crv("Ed25519");
    k->set_x(authn::Base64UrlEncode(row.Bytes(1)));
    k->set_kid(row.Text(0));
    k->set_alg("EdDSA");
    k->set_use("sig");
  }
  return out;
}

absl::StatusOr<v1::RotateSigningKeyResponse> AuthCore::RotateSigningKey(const Caller& caller) {
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    // One rotation at a time across replicas.
    CF_RETURN_IF_ERROR(tx.Exec("LOCK TABLE auth.signing_keys IN EXCLUSIVE MODE").status());
    CF_RETURN_IF_ERROR(CreateSigningKey(tx, caller, /*retire_current=*/true));
    return Audit(tx, "signing_key.rotated", "", caller, true, "");
  }));
  {
    absl::MutexLock lock(&signer_mu_);
    signer_checked_ = absl::InfinitePast();
  }
  CF_ASSIGN_OR_RETURN(Signer signer, CurrentSigner());
  v1::RotateSigningKeyResponse out;
  out.set_kid(signer.kid);
  return out;
}

// -------------------------------------------------------------- bootstrap

absl::Status AuthCore::Bootstrap(const std::string& admin_name, const std::string& admin_password) {
  if (options_.master_key.size() != 32) {
    return absl::FailedPreconditionError("the master key must be 32 bytes");
  }
  Caller system{"", "bootstrap"};
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_RETURN_IF_ERROR(tx.Exec("LOCK TABLE auth.signing_keys IN EXCLUSIVE MODE").status());
    CF_ASSIGN_OR_RETURN(db::Result keys,
                        tx.Exec("SELECT count(*) FROM auth.signing_keys WHERE retired_at IS NULL"));
    if (keys[0].Int(0) == 0) CF_RETURN_IF_ERROR(CreateSigningKey(tx, system, false));
    return absl::OkStatus();
  }));
  // A key sealed under another master key is unusable: fail now, not per call.
  CF_RETURN_IF_ERROR(CurrentSigner().status());

  return pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_RETURN_IF_ERROR(tx.Exec("LOCK TABLE auth.principals IN EXCLUSIVE MODE").status());
    CF_ASSIGN_OR_RETURN(db::Result admins,
                        tx.Exec("SELECT count(*) FROM auth.principals WHERE 'admin' = ANY(roles) "
                                "AND NOT disabled"));
    if (admins[0].Int(0) > 0) return absl::OkStatus();
    if (admin_password.empty()) {
      return absl::FailedPreconditionError(
          "no admin exists and no bootstrap password was given: set "
          "--bootstrap_admin_password_file (CLOUDFLUX_BOOTSTRAP_ADMIN_PASSWORD_FILE)");
    }
    CF_RETURN_IF_ERROR(ValidateName(admin_name));
    if (admin_password.size() < kMinPasswordLength) {
      return absl::InvalidArgumentError(
          absl::StrCat("the bootstrap admin password must have at least ", kMinPasswordLength,
                       " characters"));
    }
    CF_ASSIGN_OR_RETURN(std::string hash, HashPassword(admin_password, options_.argon2));
    std::string id = core::NewId();
    CF_RETURN_IF_ERROR(tx.Exec("INSERT INTO auth.principals (id, name, kind, roles, password_hash) "
                               "VALUES ($1::uuid, $2, 'user', '{admin}', $3)",
                               {id, admin_name, hash})
                           .status());
    core::LogInfo("bootstrap admin created", {{"name", admin_name}, {"id", id}});
    return Audit(tx, "principal.created", id, system, true, "bootstrap admin");
  });
}

// ------------------------------------------------------------- principals

absl::StatusOr<v1::CreatePrincipalResponse> AuthCore::CreatePrincipal(
    const v1::CreatePrincipalRequest& request, const Caller& caller) {
  CF_RETURN_IF_ERROR(ValidateName(request.name()));
  CF_ASSIGN_OR_RETURN(std::string roles, RolesArray(request.roles()));
  v1::CreatePrincipalResponse out;
  std::string password_hash, secret_sha;
  std::string kind;
  switch (request.kind()) {
    case v1::PRINCIPAL_KIND_USER:
      kind = "user";
      if (request.password().size() < kMinPasswordLength ||
          request.password().size() > kMaxPasswordLength) {
        return absl::InvalidArgumentError(absl::StrCat("password must have ", kMinPasswordLength,
                                                       " to ", kMaxPasswordLength, " characters"));
      }
      {
        CF_ASSIGN_OR_RETURN(password_hash, HashPassword(request.password(), options_.argon2));
      }
      break;
    case v1::PRINCIPAL_KIND_SERVICE_ACCOUNT:
      kind = "service_account";
      if (!request.password().empty()) {
        return absl::InvalidArgumentError("service accounts get a generated client secret, not a password");
      }
      out.set_client_secret(RandomSecret(32));
      secret_sha = Sha256Hex(out.client_secret());
      break;
    default:
      return absl::InvalidArgumentError("kind must be PRINCIPAL_KIND_USER or PRINCIPAL_KIND_SERVICE_ACCOUNT");
  }
  std::string id = core::NewId();
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    auto inserted = tx.Exec(absl::StrCat("INSERT INTO auth.principals (id, name, kind, roles, "
                                         "password_hash, client_secret_sha256) VALUES ($1::uuid, $2, "
                                         "$3, $4::text[], $5, $6) RETURNING ",
                                         kPrincipalColumns),
                            {id, request.name(), kind, roles,
                             password_hash.empty() ? db::Param() : db::Param(password_hash),
                             secret_sha.empty() ? db::Param() : db::Param(secret_sha)});
    if (inserted.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat("a principal named '", request.name(), "' exists"));
    }
    CF_RETURN_IF_ERROR(inserted.status());
    *out.mutable_principal() = PrincipalFromRow((*inserted)[0]);
    return Audit(tx, "principal.created", id, caller, true,
                 absl::StrCat(kind, " roles=", roles));
  }));
  return out;
}

absl::Status AuthCore::EnsureServiceAccount(const std::string& name, const std::string& client_secret) {
  CF_RETURN_IF_ERROR(ValidateName(name));
  if (client_secret.size() < 32) {
    return absl::InvalidArgumentError("the service account's client secret must have at least 32 characters");
  }
  Caller system{"", "bootstrap"};
  std::string sha = Sha256Hex(client_secret);
  return pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_RETURN_IF_ERROR(tx.Exec("LOCK TABLE auth.principals IN EXCLUSIVE MODE").status());
    CF_ASSIGN_OR_RETURN(db::Result found,
                        tx.Exec("SELECT id::text, kind, coalesce(client_secret_sha256, '') FROM auth.principals "
                                "WHERE name = $1",
                                {name}));
    if (found.empty()) {
      std::string id = core::NewId();
      CF_RETURN_IF_ERROR(tx.Exec("INSERT INTO auth.principals (id, name, kind, roles, client_secret_sha256) "
                                 "VALUES ($1::uuid, $2, 'service_account', '{operator,service}', $3)",
                                 {id, name, sha})
                             .status());
      core::LogInfo("service account created", {{"name", name}, {"id", id}});
      return Audit(tx, "principal.created", id, system, true, "service_account roles={operator,service} (bootstrap)");
    }
    std::string id = found[0].Text(0);
    if (found[0].Text(1) != "service_account") {
      return absl::FailedPreconditionError(
          absl::StrCat("'", name, "' is a user, not a service account: choose another --bootstrap_service_account"));
    }
    // An account bootstrapped before the service role existed gets it.
    CF_ASSIGN_OR_RETURN(db::Result granted,
                        tx.Exec("UPDATE auth.principals SET roles = array_append(roles, 'service') WHERE id = "
                                "$1::uuid AND NOT 'service' = ANY(roles) RETURNING 1",
                                {id}));
    if (!granted.empty()) {
      CF_RETURN_IF_ERROR(Audit(tx, "principal.roles_changed", id, system, true, "service role added (bootstrap)"));
    }
    if (found[0].Text(2) == sha) return absl::OkStatus();
    CF_RETURN_IF_ERROR(tx.Exec("UPDATE auth.principals SET client_secret_sha256 = $2 WHERE id = $1::uuid",
                               {id, sha})
                           .status());
    core::LogInfo("service account secret replaced", {{"name", name}, {"id", id}});
    return Audit(tx, "principal.secret_replaced", id, system, true, "bootstrap");
  });
}

absl::StatusOr<v1::Principal> AuthCore::GetPrincipal(const std::string& id) {
  CF_RETURN_IF_ERROR(ValidateId(id, "id"));
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec(absl::StrCat("SELECT ", kPrincipalColumns,
                                              " FROM auth.principals WHERE id = $1::uuid"),
                                 {id}));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("principal ", id, " not found"));
  return PrincipalFromRow(rows[0]);
}

absl::StatusOr<v1::ListPrincipalsResponse> AuthCore::ListPrincipals(
    const v1::ListPrincipalsRequest& request) {
  CF_ASSIGN_OR_RETURN(Page page, ParsePage(request.page()));
  if (!request.role().empty() && !authn::IsKnownRole(request.role())) {
    return absl::InvalidArgumentError("unknown role filter");
  }
  if (request.name_prefix().size() > kMaxNameLength) {
    return absl::InvalidArgumentError("name_prefix is too long");
  }
  std::string kind = request.kind() == v1::PRINCIPAL_KIND_USER ? "user"
                     : request.kind() == v1::PRINCIPAL_KIND_SERVICE_ACCOUNT ? "service_account"
                                                                             : "";
  std::string prefix = request.name_prefix();
  for (char c : std::string("\\%_")) {
    size_t pos = 0;
    while ((pos = prefix.find(c, pos)) != std::string::npos) {
      prefix.insert(pos, "\\");
      pos += 2;
    }
  }
  CF_ASSIGN_OR_RETURN(
      db::Result rows,
      pool_.Exec(absl::StrCat("SELECT ", kPrincipalColumns,
                              " FROM auth.principals WHERE ($1 = '' OR id > $1::uuid) AND ($2 = '' "
                              "OR kind = $2) AND ($3 = '' OR $3 = ANY(roles)) AND name LIKE $4 "
                              "ORDER BY id LIMIT $5"),
                 {page.after.empty() ? "" : page.after, kind, request.role(), prefix + "%",
                  std::to_string(page.size + 1)}));
  v1::ListPrincipalsResponse out;
  Paginate(rows, page, out.mutable_page(),
           [&](const db::Row& row) { *out.add_principals() = PrincipalFromRow(row); });
  return out;
}

absl::StatusOr<v1::Principal> AuthCore::SetPrincipalDisabled(
    const v1::SetPrincipalDisabledRequest& request, const Caller& caller) {
  CF_RETURN_IF_ERROR(ValidateId(request.id(), "id"));
  v1::Principal out;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Row row,
                        ExecOne(tx,
                                absl::StrCat("UPDATE auth.principals SET disabled = $2, token_version = "
                                             "token_version + 1 WHERE id = $1::uuid RETURNING ",
                                             kPrincipalColumns),
                                {request.id(), request.disabled() ? "t" : "f"}, "principal",
                                request.id()));
    out = PrincipalFromRow(row);
    // Access tokens issued before the change lose their power with it.
    CF_RETURN_IF_ERROR(revocation_store_.Record(tx, RevocationStore::Kind::kSubject, out.id(),
                                                out.token_version()));
    if (request.disabled()) {
      // A disabled principal's refresh tokens die with it.
      CF_RETURN_IF_ERROR(tx.Exec("UPDATE auth.refresh_tokens SET revoked_at = now() WHERE "
                                 "principal_id = $1::uuid AND revoked_at IS NULL",
                                 {request.id()})
                             .status());
    }
    return Audit(tx, request.disabled() ? "principal.disabled" : "principal.enabled", request.id(),
                 caller, true, "");
  }));
  principals_.Invalidate(out.name());  // other replicas hear it through NOTIFY
  (void)SyncRevocations();  // else the next periodic sync carries it
  return out;
}

absl::StatusOr<v1::Principal> AuthCore::SetRoles(const v1::SetRolesRequest& request,
                                                 const Caller& caller) {
  CF_RETURN_IF_ERROR(ValidateId(request.id(), "id"));
  CF_ASSIGN_OR_RETURN(std::string roles, RolesArray(request.roles()));
  v1::Principal out;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Row row,
                        ExecOne(tx,
                                absl::StrCat("UPDATE auth.principals SET roles = $2::text[], "
                                             "token_version = token_version + 1 WHERE id = $1::uuid "
                                             "RETURNING ",
                                             kPrincipalColumns),
                                {request.id(), roles}, "principal", request.id()));
    out = PrincipalFromRow(row);
    CF_RETURN_IF_ERROR(revocation_store_.Record(tx, RevocationStore::Kind::kSubject, out.id(),
                                                out.token_version()));
    return Audit(tx, "principal.roles_changed", request.id(), caller, true, roles);
  }));
  principals_.Invalidate(out.name());  // other replicas hear it through NOTIFY
  (void)SyncRevocations();
  return out;
}

// --------------------------------------------------------------- API keys

namespace {
constexpr char kApiKeyColumns[] =
    "id::text, principal_id::text, name, prefix, (extract(epoch from created_at) * 1000000)::bigint, "
    "coalesce((extract(epoch from expires_at) * 1000000)::bigint, 0), revoked_at IS NOT NULL";

v1::ApiKey ApiKeyFromRow(const db::Row& row) {
  v1::ApiKey k;
  k.set_id(row.Text(0));
  k.set_principal_id(row.Text(1));
  k.set_name(row.Text(2));
  k.set_prefix(row.Text(3));
  *k.mutable_created() = MicrosToProto(row.Int(4));
  if (row.Int(5) != 0) *k.mutable_expires() = MicrosToProto(row.Int(5));
  k.set_revoked(row.Bool(6));
  return k;
}
}  // namespace

absl::StatusOr<v1::CreateApiKeyResponse> AuthCore::CreateApiKey(
    const v1::CreateApiKeyRequest& request, const Caller& caller) {
  CF_RETURN_IF_ERROR(ValidateId(request.principal_id(), "principal_id"));
  if (request.name().empty() || request.name().size() > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("name must have 1 to ", kMaxNameLength, " characters"));
  }
  if (request.ttl_seconds() < 0) return absl::InvalidArgumentError("ttl_seconds must not be negative");
  v1::CreateApiKeyResponse out;
  std::string secret = kApiKeyPrefix + RandomSecret(32);
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result owner,
                        tx.Exec("SELECT kind FROM auth.principals WHERE id = $1::uuid",
                                {request.principal_id()}));
    if (owner.empty()) {
      return absl::NotFoundError(absl::StrCat("principal ", request.principal_id(), " not found"));
    }
    if (owner[0].Text(0) != "service_account") {
      return absl::FailedPreconditionError("API keys are for service accounts only");
    }
    CF_ASSIGN_OR_RETURN(
        db::Result rows,
        tx.Exec(absl::StrCat("INSERT INTO auth.api_keys (id, principal_id, name, prefix, "
                             "secret_sha256, expires_at) VALUES ($1::uuid, $2::uuid, $3, $4, $5, "
                             "CASE WHEN $6::bigint > 0 THEN now() + $6::bigint * interval '1 second' "
                             "END) RETURNING ",
                             kApiKeyColumns),
                {core::NewId(), request.principal_id(), request.name(), secret.substr(0, 12),
                 Sha256Hex(secret), std::to_string(request.ttl_seconds())}));
    *out.mutable_api_key() = ApiKeyFromRow(rows[0]);
    return Audit(tx, "api_key.created", request.principal_id(), caller, true, out.api_key().id());
  }));
  out.set_secret(secret);
  return out;
}

absl::StatusOr<v1::ListApiKeysResponse> AuthCore::ListApiKeys(const v1::ListApiKeysRequest& request) {
  CF_RETURN_IF_ERROR(ValidateId(request.principal_id(), "principal_id"));
  CF_ASSIGN_OR_RETURN(Page page, ParsePage(request.page()));
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec(absl::StrCat("SELECT ", kApiKeyColumns,
                                              " FROM auth.api_keys WHERE principal_id = $1::uuid "
                                              "AND ($2 = '' OR id > $2::uuid) ORDER BY id LIMIT $3"),
                                 {request.principal_id(), page.after, std::to_string(page.size + 1)}));
  v1::ListApiKeysResponse out;
  Paginate(rows, page, out.mutable_page(),
           [&](const db::Row& row) { *out.add_api_keys() = ApiKeyFromRow(row); });
  return out;
}

absl::StatusOr<v1::ApiKey> AuthCore::RevokeApiKey(const v1::RevokeApiKeyRequest& request,
                                                  const Caller& caller) {
  CF_RETURN_IF_ERROR(ValidateId(request.id(), "id"));
  v1::ApiKey out;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Row row,
                        ExecOne(tx,
                                absl::StrCat("UPDATE auth.api_keys SET revoked_at = "
                                             "coalesce(revoked_at, now()) WHERE id = $1::uuid "
                                             "RETURNING ",
                                             kApiKeyColumns),
                                {request.id()}, "API key", request.id()));
    out = ApiKeyFromRow(row);
    return Audit(tx, "api_key.revoked", out.principal_id(), caller, true, out.id());
  }));
  return out;
}

// ----------------------------------------------------------------- tokens

namespace {
// Roles by power: each may do what the ones below it may (admin everything,
// operator what a viewer may and more). The service role is outside: only
// one who holds it may ask for it.
int RoleRank(absl::string_view role) {
  if (role == authn::kRoleAdmin) return 3;
  if (role == authn::kRoleOperator) return 2;
  if (role == authn::kRoleViewer) return 1;
  return 0;
}

// The roles a token for `principal` carries when `scope` is asked for: all
// of them for an empty scope, else the scope's roles (space-separated), each
// of which must be one the principal holds or one below it (RFC 6749's
// invalid_scope otherwise).
absl::StatusOr<std::vector<std::string>> ScopedRoles(const v1::Principal& principal,
                                                     const std::string& scope) {
  std::vector<std::string> held(principal.roles().begin(), principal.roles().end());
  if (scope.empty()) return held;
  int highest = 0;
  for (const std::string& role : held) highest = std::max(highest, RoleRank(role));
  std::vector<std::string> granted;
  for (absl::string_view wanted : absl::StrSplit(scope, ' ', absl::SkipEmpty())) {
    int rank = RoleRank(wanted);
    const bool holds = std::find(held.begin(), held.end(), wanted) != held.end();  // service is outside the ranks
    if (!holds && (rank == 0 || rank > highest)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid_scope: scope '", wanted.substr(0, 64),
          "' is not granted; a scope names roles the principal holds or roles below them (held: ",
          absl::StrJoin(held, " "), ")"));
    }
    if (std::find(granted.begin(), granted.end(), wanted) == granted.end()) {
      granted.emplace_back(wanted);
    }
  }
  return granted;
}
}  // namespace

absl::StatusOr<v1::IssueTokenResponse> AuthCore::MintAccess(const Signer& signer,
                                                            const v1::Principal& principal,
                                                            const std::string& scope,
                                                            const std::string& audience,
                                                            const std::string& sid, std::string* jti) {
  CF_ASSIGN_OR_RETURN(std::vector<std::string> roles, ScopedRoles(principal, scope));
  absl::Time now = clock_.Now();
  authn::Claims claims;
  claims.iss = options_.issuer;
  claims.aud = audience.empty() ? options_.audience : audience;
  claims.sub = principal.id();
  claims.iat = now;
  claims.nbf = now;
  claims.exp = now + options_.access_ttl;
  claims.jti = core::NewId();
  claims.sid = sid;
  claims.ver = principal.token_version();
  claims.roles = std::move(roles);
  claims.scope = scope.empty() ? "" : absl::StrJoin(claims.roles, " ");
  if (principal.kind() == v1::PRINCIPAL_KIND_SERVICE_ACCOUNT) {
    claims.client_id = principal.name();
  } else {
    claims.username = principal.name();
  }
  v1::IssueTokenResponse out;
  out.set_access_token(authn::EncodeJwt(*signer.key, claims));
  out.set_token_type("Bearer");
  out.set_expires_in(absl::ToInt64Seconds(options_.access_ttl));
  out.set_scope(claims.scope);
  *jti = claims.jti;
  return out;
}

absl::StatusOr<v1::IssueTokenResponse> AuthCore::Mint(db::Transaction& tx,
                                                      const v1::Principal& principal,
                                                      const std::string& grant,
                                                      const std::string& scope,
                                                      const std::string& audience,
                                                      bool with_refresh,
                                                      const std::string& family_id,
                                                      const Caller& caller,
                                                      std::vector<AuditEntry> audit_first) {
  std::string jti;
  CF_ASSIGN_OR_RETURN(Signer signer, CurrentSigner());
  // Access tokens of a refresh-token family carry it as their session, so
  // that revoking the family revokes them.
  const std::string family = !with_refresh ? "" : family_id.empty() ? core::NewId() : family_id;
  CF_ASSIGN_OR_RETURN(v1::IssueTokenResponse out,
                      MintAccess(signer, principal, scope, audience, family, &jti));
  if (with_refresh) {
    std::string refresh = kRefreshPrefix + RandomSecret(32);
    CF_RETURN_IF_ERROR(tx.Exec("INSERT INTO auth.refresh_tokens (id, family_id, principal_id, "
                               "token_sha256, scope, expires_at) VALUES ($1::uuid, $2::uuid, "
                               "$3::uuid, $4, $5, now() + $6::interval)",
                               {core::NewId(), family, principal.id(), Sha256Hex(refresh), scope,
                                absl::StrCat(absl::ToInt64Seconds(options_.refresh_ttl), " seconds")})
                           .status());
    out.set_refresh_token(refresh);
  }
  audit_first.push_back(TokenIssued(principal.id(), grant, jti));
  CF_RETURN_IF_ERROR(AuditAll(tx, audit_first, caller));
  return out;
}

absl::StatusOr<AuthCore::MintedWithAudit> AuthCore::MintWithAudit(
    const Signer& signer, const v1::Principal& principal, const std::string& grant,
    const std::string& scope, const std::string& audience, const Caller& caller,
    std::vector<AuditEntry> audit_first) {
  MintedWithAudit out;
  std::string jti;
  CF_ASSIGN_OR_RETURN(out.response, MintAccess(signer, principal, scope, audience, "", &jti));
  audit_first.push_back(TokenIssued(principal.id(), grant, jti));
  CF_ASSIGN_OR_RETURN(out.audit, PrepareAudit(audit_first, caller));
  return out;
}

absl::StatusOr<v1::IssueTokenResponse> AuthCore::MintGroupCommitted(
    const v1::Principal& principal, const std::string& grant, const std::string& scope,
    const std::string& audience, const Caller& caller, std::vector<AuditEntry> audit_first) {
  CF_ASSIGN_OR_RETURN(Signer signer, CurrentSigner());
  CF_ASSIGN_OR_RETURN(MintedWithAudit minted, MintWithAudit(signer, principal, grant, scope, audience,
                                                            caller, std::move(audit_first)));
  CF_RETURN_IF_ERROR(audit_log_.Commit(std::move(minted.audit)));
  return std::move(minted.response);
}

absl::StatusOr<std::optional<Credentials>> AuthCore::LoadCredentials(const std::string& name) {
  return principals_.Get(name, [&]() -> absl::StatusOr<std::optional<Credentials>> {
    CF_ASSIGN_OR_RETURN(
        db::Result rows,
        pool_.Exec(absl::StrCat("SELECT ", kPrincipalColumns,
                                ", coalesce(password_hash, ''), coalesce(client_secret_sha256, '') "
                                "FROM auth.principals WHERE name = $1"),
                   {name}));
    if (rows.empty()) return std::nullopt;
    return Credentials{PrincipalFromRow(rows[0]), rows[0].Text(7), rows[0].Text(8)};
  });
}

namespace {
absl::Status ValidateIssueRequest(const v1::IssueTokenRequest& request) {
  for (const std::string* field : {&request.username(), &request.password(), &request.client_id(),
                                   &request.client_secret(), &request.api_key(),
                                   &request.refresh_token(), &request.scope(), &request.audience()}) {
    if (field->size() > kMaxSecretLength && field != &request.password()) {
      return absl::InvalidArgumentError("a credential field is too long");
    }
  }
  if (request.password().size() > kMaxPasswordLength) {
    return absl::InvalidArgumentError("password is too long");
  }
  if (request.audience().size() > kMaxNameLength) return absl::InvalidArgumentError("audience is too long");
  return absl::OkStatus();
}

// The constant-time check of a service account's client secret.
bool ClientSecretMatches(const Credentials& found, const std::string& secret) {
  return found.principal.kind() == v1::PRINCIPAL_KIND_SERVICE_ACCOUNT &&
         ConstantTimeEquals(Sha256Hex(secret), found.client_secret_sha256);
}
}  // namespace

bool AuthCore::TryIssueTokenAsync(const v1::IssueTokenRequest& request, const Caller& caller,
                                  std::function<void(absl::StatusOr<v1::IssueTokenResponse>)> done) {
  // Only a client_credentials grant that will succeed with what is in memory:
  // anything else (a failure to record, a counter to reset, a read) is left
  // to IssueToken, before any effect here.
  if (request.grant_type() != "client_credentials" || request.client_id().empty() ||
      request.client_secret().empty() || !ValidateIssueRequest(request).ok()) {
    return false;
  }
  const std::string& name = request.client_id();
  // Only while memory shows no failure for the name and room for the peer
  // (and Redis's state complete): a success then reserves and frees nothing.
  if (throttle_.ClearInMemory(name, caller.peer) != std::optional<bool>(true)) return false;
  std::optional<Credentials> found = principals_.Peek(name);
  std::optional<Signer> signer = FreshSigner();
  if (!found.has_value() || !signer.has_value() || found->principal.disabled() ||
      !ClientSecretMatches(*found, request.client_secret())) {
    return false;
  }
  const std::string& grant = request.grant_type();
  auto minted = MintWithAudit(*signer, found->principal, grant, request.scope(), request.audience(),
                              caller, {LoginSucceeded(found->principal.id(), grant)});
  if (!minted.ok()) return false;
  audit_log_.CommitAsync(std::move(minted->audit),
                         [out = std::move(minted->response), done = std::move(done)](absl::Status s) mutable {
                           if (s.ok()) {
                             done(std::move(out));
                           } else {
                             done(s);
                           }
                         });
  return true;
}

absl::StatusOr<v1::IssueTokenResponse> AuthCore::IssueToken(const v1::IssueTokenRequest& request,
                                                            const Caller& caller) {
  CF_RETURN_IF_ERROR(ValidateIssueRequest(request));
  const std::string& grant = request.grant_type();
  v1::IssueTokenResponse out;

  // A principal by id, in a transaction.
  auto load = [&](db::Transaction& tx, const std::string& id) -> absl::StatusOr<std::optional<v1::Principal>> {
    CF_ASSIGN_OR_RETURN(db::Result rows,
                        tx.Exec(absl::StrCat("SELECT ", kPrincipalColumns,
                                             " FROM auth.principals WHERE id = $1::uuid"),
                                {id}));
    if (rows.empty()) return std::nullopt;
    return PrincipalFromRow(rows[0]);
  };

  if (grant == "password" || grant == "client_credentials") {
    bool password = grant == "password";
    const std::string& name = password ? request.username() : request.client_id();
    const std::string& secret = password ? request.password() : request.client_secret();
    if (name.empty() || secret.empty()) {
      return absl::InvalidArgumentError(password ? "password grant needs username and password"
                                                 : "client_credentials grant needs client_id and client_secret");
    }
    // No principal has a name outside the naming rule (a NUL, a control
    // character): refused before anything is looked up or counted.
    CF_RETURN_IF_ERROR(core::Annotate(ValidateName(name), password ? "username" : "client_id"));
    // A password is guessable and slow to check: a place is reserved first.
    // A client secret is neither: only its failures are counted.
    CF_ASSIGN_OR_RETURN(LoginThrottle::Attempt attempt,
                        password ? throttle_.Begin(name, caller.peer) : throttle_.Check(name, caller.peer));
    absl::StatusOr<std::optional<Credentials>> loaded = LoadCredentials(name);
    if (!loaded.ok()) {
      throttle_.Abandon(attempt);
      return loaded.status();
    }
    std::optional<Credentials> found = *std::move(loaded);
    bool ok = false;
    std::string principal_id;
    if (found.has_value()) {
      principal_id = found->principal.id();
      ok = password ? found->principal.kind() == v1::PRINCIPAL_KIND_USER &&
                          VerifyPassword(secret, found->password_hash)
                    : ClientSecretMatches(*found, secret);
    } else if (password) {
      // Same work for unknown users, so that timing does not reveal names.
      (void)VerifyPassword(secret, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$"
                                   "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g");
    }
    if (!ok) return RecordFailure(attempt, principal_id, caller, grant + ": bad credentials");
    if (found->principal.disabled()) {
      return RecordFailure(attempt, principal_id, caller, grant + ": principal disabled");
    }
    throttle_.Succeeded(attempt);
    std::vector<AuditEntry> audit = {LoginSucceeded(principal_id, grant)};
    if (password) {
      // A refresh token row joins the audit rows in one transaction.
      CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
        CF_ASSIGN_OR_RETURN(out, Mint(tx, found->principal, grant, request.scope(),
                                      request.audience(), /*with_refresh=*/true, "", caller,
                                      audit));
        return absl::OkStatus();
      }));
      return out;
    }
    // Nothing but audit rows to write: commit them with concurrent grants'.
    return MintGroupCommitted(found->principal, grant, request.scope(), request.audience(), caller,
                              std::move(audit));
  }

  if (grant == "api_key") {
    if (!absl::StartsWith(request.api_key(), kApiKeyPrefix)) {
      return absl::InvalidArgumentError("api_key grant needs an API key (cfk_...)");
    }
    std::string key_hash = Sha256Hex(request.api_key());
    CF_ASSIGN_OR_RETURN(LoginThrottle::Attempt attempt,
                        throttle_.Check("apikey:" + request.api_key().substr(0, 12), caller.peer));
    // One read: the key and its principal, both still valid.
    absl::StatusOr<db::Result> found =
        pool_.Exec(absl::StrCat("SELECT ", kPrincipalColumns,
                                " FROM auth.principals p WHERE NOT p.disabled AND p.id = (SELECT "
                                "principal_id FROM auth.api_keys WHERE secret_sha256 = $1 AND "
                                "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))"),
                   {key_hash});
    if (!found.ok()) {
      throttle_.Abandon(attempt);
      return found.status();
    }
    const db::Result& rows = *found;
    if (rows.empty()) {
      return RecordFailure(attempt, "", caller, "api_key: unknown, revoked or expired key");
    }
    throttle_.Succeeded(attempt);
    return MintGroupCommitted(PrincipalFromRow(rows[0]), grant, request.scope(),
                              request.audience(), caller);
  }

  if (grant == "refresh_token") {
    if (!absl::StartsWith(request.refresh_token(), kRefreshPrefix)) {
      return absl::InvalidArgumentError("refresh_token grant needs a refresh token (cfr_...)");
    }
    std::string hash = Sha256Hex(request.refresh_token());
    std::string reused_family, reused_principal;
    absl::Status result = pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
      CF_ASSIGN_OR_RETURN(
          db::Result rows,
          tx.Exec("SELECT id::text, family_id::text, principal_id::text, scope, used_at IS NOT NULL, "
                  "revoked_at IS NOT NULL, expires_at <= now() FROM auth.refresh_tokens WHERE "
                  "token_sha256 = $1 FOR UPDATE",
                  {hash}));
      if (rows.empty()) return absl::UnauthenticatedError("invalid refresh token");
      const db::Row& t = rows[0];
      if (t.Bool(4)) {
        // Reuse of a rotated token: someone holds a stolen copy. Revoke the
        // whole family (committed below, outside this transaction's rollback).
        reused_family = t.Text(1);
        reused_principal = t.Text(2);
        return absl::UnauthenticatedError("refresh token reuse detected; its token family is revoked");
      }
      if (t.Bool(5)) return absl::UnauthenticatedError("refresh token revoked");
      if (t.Bool(6)) return absl::UnauthenticatedError("refresh token expired");
      CF_RETURN_IF_ERROR(tx.Exec("UPDATE auth.refresh_tokens SET used_at = now() WHERE id = $1::uuid",
                                 {t.Text(0)})
                             .status());
      CF_ASSIGN_OR_RETURN(auto found, load(tx, t.Text(2)));
      if (!found.has_value() || found->disabled()) {
        return absl::UnauthenticatedError("principal disabled");
      }
      CF_ASSIGN_OR_RETURN(out, Mint(tx, *found, grant, t.Text(3), request.audience(), true,
                                    t.Text(1), caller));
      return absl::OkStatus();
    });
    if (!reused_family.empty()) {
      CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
        CF_RETURN_IF_ERROR(tx.Exec("UPDATE auth.refresh_tokens SET revoked_at = coalesce(revoked_at, "
                                   "now()) WHERE family_id = $1::uuid",
                                   {reused_family})
                               .status());
        // The access tokens the family issued go with it.
        CF_RETURN_IF_ERROR(
            revocation_store_.Record(tx, RevocationStore::Kind::kSession, reused_family));
        return Audit(tx, "token.refresh_reuse", reused_principal, caller, false,
                     "family " + reused_family + " revoked");
      }));
      (void)SyncRevocations();
    }
    CF_RETURN_IF_ERROR(result);
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported grant_type '", grant.substr(0, 64),
      "'; use password, client_credentials, api_key or refresh_token"));
}

absl::Status AuthCore::RevokeToken(const v1::RevokeTokenRequest& request, const Caller& caller) {
  if (request.token().empty()) return absl::InvalidArgumentError("token is required");
  if (request.token().size() > 8192) return absl::InvalidArgumentError("token is too long");
  if (LooksLikeJwt(request.token())) {
    CF_ASSIGN_OR_RETURN(auto keys, PublishedKeys());
    // Expired tokens need no revocation; forged or foreign ones are ignored
    // (RFC 7009: the response is the same).
    auto claims = authn::VerifyJwt(request.token(), *keys, verify_options(), clock_.Now());
    if (!claims.ok() || claims->jti.empty()) return absl::OkStatus();
    CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
      CF_RETURN_IF_ERROR(
          revocation_store_.Record(tx, RevocationStore::Kind::kToken, claims->jti, 0, claims->exp));
      return Audit(tx, "token.revoked", claims->sub, caller, true, "access jti=" + claims->jti);
    }));
    verifier_->Forget(request.token());
    // Recorded: services see it once mirrored, here or by the next sync.
    (void)SyncRevocations();
    return absl::OkStatus();
  }
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result rows,
                        tx.Exec("UPDATE auth.refresh_tokens SET revoked_at = coalesce(revoked_at, "
                                "now()) WHERE family_id = (SELECT family_id FROM auth.refresh_tokens "
                                "WHERE token_sha256 = $1) RETURNING principal_id::text, family_id::text",
                                {Sha256Hex(request.token())}));
    if (rows.empty()) return absl::OkStatus();
    CF_RETURN_IF_ERROR(
        revocation_store_.Record(tx, RevocationStore::Kind::kSession, rows[0].Text(1)));
    return Audit(tx, "token.revoked", rows[0].Text(0), caller, true, "refresh token family");
  }));
  (void)SyncRevocations();
  return absl::OkStatus();
}

namespace {
v1::IntrospectTokenResponse ActiveAccessToken(const authn::Claims& claims) {
  v1::IntrospectTokenResponse out;
  out.set_active(true);
  out.set_sub(claims.sub);
  out.set_scope(claims.scope);
  for (const auto& r : claims.roles) out.add_roles(r);
  out.set_exp(absl::ToUnixSeconds(claims.exp));
  out.set_iat(absl::ToUnixSeconds(claims.iat));
  out.set_client_id(claims.client_id);
  out.set_username(claims.username);
  out.set_token_type("access_token");
  out.set_jti(claims.jti);
  out.set_iss(claims.iss);
  out.set_aud(claims.aud);
  return out;
}
}  // namespace

std::optional<absl::StatusOr<v1::IntrospectTokenResponse>> AuthCore::IntrospectTokenCached(
    const v1::IntrospectTokenRequest& request) {
  if (request.token().empty() || request.token().size() > 8192 || !LooksLikeJwt(request.token())) {
    return std::nullopt;
  }
  auto claims = verifier_->VerifyTokenCached(request.token());
  if (!claims.has_value()) return std::nullopt;
  if (!claims->ok()) return v1::IntrospectTokenResponse();  // inactive
  return ActiveAccessToken(**claims);
}

absl::StatusOr<v1::IntrospectTokenResponse> AuthCore::IntrospectToken(
    const v1::IntrospectTokenRequest& request) {
  if (request.token().size() > 8192) return absl::InvalidArgumentError("token is too long");
  v1::IntrospectTokenResponse out;
  if (request.token().empty()) return out;  // inactive
  if (LooksLikeJwt(request.token())) {
    auto claims = verifier_->VerifyToken(request.token());
    if (!claims.ok()) {
      if (claims.status().code() == absl::StatusCode::kUnavailable) return claims.status();
      return out;  // inactive: bad, expired, revoked or foreign
    }
    return ActiveAccessToken(*claims);
  }
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec("SELECT p.id::text, p.name, p.kind, array_to_string(p.roles, ','), "
                                 "t.scope, extract(epoch from t.expires_at)::bigint, "
                                 "extract(epoch from t.created_at)::bigint FROM auth.refresh_tokens t "
                                 "JOIN auth.principals p ON p.id = t.principal_id WHERE "
                                 "t.token_sha256 = $1 AND t.used_at IS NULL AND t.revoked_at IS NULL "
                                 "AND t.expires_at > now() AND NOT p.disabled",
                                 {Sha256Hex(request.token())}));
  if (rows.empty()) return out;
  out.set_active(true);
  out.set_sub(rows[0].Text(0));
  if (rows[0].Text(2) == "user") {
    out.set_username(rows[0].Text(1));
  } else {
    out.set_client_id(rows[0].Text(1));
  }
  for (absl::string_view r : absl::StrSplit(rows[0].Text(3), ',', absl::SkipEmpty())) {
    out.add_roles(std::string(r));
  }
  out.set_scope(rows[0].Text(4));
  out.set_exp(rows[0].Int(5));
  out.set_iat(rows[0].Int(6));
  out.set_token_type("refresh_token");
  out.set_iss(options_.issuer);
  return out;
}

// ------------------------------------------------------------------ audit

absl::StatusOr<v1::ListAuditEventsResponse> AuthCore::ListAuditEvents(
    const v1::ListAuditEventsRequest& request) {
  CF_ASSIGN_OR_RETURN(Page page, ParsePage(request.page()));
  if (request.action().size() > kMaxNameLength || request.principal_id().size() > kMaxNameLength) {
    return absl::InvalidArgumentError("filter is too long");
  }
  auto micros = [](const google::protobuf::Timestamp& t, int64_t fallback) {
    return t.seconds() == 0 && t.nanos() == 0 ? fallback : TimeUtil::TimestampToMicroseconds(t);
  };
  int64_t since = micros(request.since(), 0);
  int64_t until = micros(request.until(), std::numeric_limits<int64_t>::max() / 2);
  if (since > until) return absl::InvalidArgumentError("since is after until");
  CF_ASSIGN_OR_RETURN(
      db::Result rows,
      pool_.Exec("SELECT id::text, (extract(epoch from time) * 1000000)::bigint, action, "
                 "principal_id, actor_id, peer, success, detail FROM auth.audit_events WHERE "
                 "($1 = '' OR id > $1::uuid) AND ($2 = '' OR principal_id = $2) AND ($3 = '' OR "
                 "action = $3) AND time >= to_timestamp($4::double precision / 1000000) AND "
                 "time < to_timestamp($5::double precision / 1000000) ORDER BY id LIMIT $6",
                 {page.after, request.principal_id(), request.action(), std::to_string(since),
                  std::to_string(std::min<int64_t>(until, 253402300799LL * 1000000)),
                  std::to_string(page.size + 1)}));
  v1::ListAuditEventsResponse out;
  Paginate(rows, page, out.mutable_page(), [&](const db::Row& row) {
    auto* e = out.add_events();
    e->set_id(row.Text(0));
    *e->mutable_time() = MicrosToProto(row.Int(1));
    e->set_action(row.Text(2));
    e->set_principal_id(row.Text(3));
    e->set_actor_id(row.Text(4));
    e->set_peer(row.Text(5));
    e->set_success(row.Bool(6));
    e->set_detail(row.Text(7));
  });
  return out;
}

}  // namespace cloudflux::auth
