// The auth service through its gRPC API, and authentication in another
// service binary, against real PostgreSQL, Redis and the dev broker.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>

#include "absl/strings/match.h"
#include "cloudflux/auth/v1/auth.grpc.pb.h"
#include "cloudflux/auth/v1/events.pb.h"
#include "cloudflux/diagnostics/v1/diagnostics.grpc.pb.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/server/grpc_status.h"
#include "service_process.h"

namespace cloudflux {
namespace {

namespace v1 = cloudflux::auth::v1;
constexpr const char* kAdminPassword = testing::kTestAdminPassword;

class AuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto db = testing::ScratchDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db).release();
    auth_ = new Service(StartService("auth", db_->url()));
    ASSERT_TRUE(WaitForHealth(*auth_, HealthCheckResponse::SERVING)) << auth_->process->Output();
    other_ = new Service(StartService("classification", db_->url(),
                                      {{"CLOUDFLUX_INSECURE_NO_AUTH", "false"},
                                       {"CLOUDFLUX_AUTH_ADDRESS", auth_->target()}}));
    ASSERT_TRUE(WaitForHealth(*other_, HealthCheckResponse::SERVING)) << other_->process->Output();
  }
  static void TearDownTestSuite() {
    for (Service* s : {other_, auth_}) {
      if (s == nullptr) continue;
      s->process->Signal(SIGTERM);
      EXPECT_EQ(s->process->Wait(absl::Seconds(20)), 0) << s->process->Output();
      delete s;
    }
    delete db_;
  }

  std::unique_ptr<v1::AuthService::Stub> Auth() {
    return v1::AuthService::NewStub(server::MakeChannel(auth_->target()));
  }
  std::unique_ptr<diagnostics::v1::Diagnostics::Stub> Other() {
    return diagnostics::v1::Diagnostics::NewStub(server::MakeChannel(other_->target()));
  }
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = "") {
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }
  absl::StatusOr<v1::IssueTokenResponse> Issue(v1::IssueTokenRequest req) {
    v1::IssueTokenResponse resp;
    grpc::Status s = Auth()->IssueToken(Ctx().get(), req, &resp);
    if (!s.ok()) return server::FromGrpcStatus(s);
    return resp;
  }
  absl::StatusOr<v1::IssueTokenResponse> Login(const std::string& user, const std::string& password) {
    v1::IssueTokenRequest req;
    req.set_grant_type("password");
    req.set_username(user);
    req.set_password(password);
    return Issue(req);
  }
  std::string AdminToken() {
    auto t = Login("admin", kAdminPassword);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? t->access_token() : "";
  }
  grpc::Status CallOther(const std::string& token, diagnostics::v1::GetServerInfoResponse* out) {
    return Other()->GetServerInfo(Ctx(token).get(), {}, out);
  }
  absl::StatusOr<v1::CreatePrincipalResponse> Create(const std::string& admin, const std::string& name,
                                                     v1::PrincipalKind kind,
                                                     std::vector<std::string> roles,
                                                     const std::string& password = "") {
    v1::CreatePrincipalRequest req;
    req.set_name(name);
    req.set_kind(kind);
    for (auto& r : roles) req.add_roles(r);
    req.set_password(password);
    v1::CreatePrincipalResponse resp;
    grpc::Status s = Auth()->CreatePrincipal(Ctx(admin).get(), req, &resp);
    if (!s.ok()) return server::FromGrpcStatus(s);
    return resp;
  }

  // Runs `fn` with a pool on the services' database (for changes made
  // behind their back).
  absl::Status WithDatabase(const std::function<absl::Status(db::Pool&)>& fn) {
    db::PoolOptions o;
    o.url = db_->url();
    o.max_connections = 1;
    auto pool = db::Pool::Create(o);
    if (!pool.ok()) return pool.status();
    return fn(**pool);
  }

  static testing::ScratchDatabase* db_;
  static Service* auth_;
  static Service* other_;
};

testing::ScratchDatabase* AuthTest::db_ = nullptr;
Service* AuthTest::auth_ = nullptr;
Service* AuthTest::other_ = nullptr;

TEST_F(AuthTest, LifecycleFromBootstrapAdminToRevocationInAnotherService) {
  std::string admin = AdminToken();
  ASSERT_FALSE(admin.empty());

  diagnostics::v1::GetServerInfoResponse info;
  grpc::Status anonymous = CallOther("", &info);
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(anonymous.error_message(), "missing bearer token");
  ASSERT_TRUE(CallOther(admin, &info).ok());

  auto account = Create(admin, "billing-exporter", v1::PRINCIPAL_KIND_SERVICE_ACCOUNT, {"viewer"});
  ASSERT_TRUE(account.ok()) << account.status();
  ASSERT_GE(account->client_secret().size(), 43u) << "a 256-bit secret";

  v1::IssueTokenRequest cc;
  cc.set_grant_type("client_credentials");
  cc.set_client_id("billing-exporter");
  cc.set_client_secret(account->client_secret());
  auto token = Issue(cc);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->token_type(), "Bearer");
  EXPECT_EQ(token->expires_in(), 900);
  EXPECT_TRUE(token->refresh_token().empty());

  // The other service verifies the token locally and applies the roles.
  ASSERT_TRUE(CallOther(token->access_token(), &info).ok());
  EXPECT_EQ(info.caller_subject(), account->principal().id());
  diagnostics::v1::EchoResponse echo;
  grpc::Status denied = Other()->Echo(Ctx(token->access_token()).get(), {}, &echo);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  v1::IntrospectTokenRequest introspect;
  introspect.set_token(token->access_token());
  v1::IntrospectTokenResponse active;
  ASSERT_TRUE(Auth()->IntrospectToken(Ctx(admin).get(), introspect, &active).ok());
  EXPECT_TRUE(active.active());
  EXPECT_EQ(active.client_id(), "billing-exporter");
  EXPECT_EQ(active.token_type(), "access_token");

  v1::RevokeTokenRequest revoke;
  revoke.set_token(token->access_token());
  v1::RevokeTokenResponse revoked;
  ASSERT_TRUE(Auth()->RevokeToken(Ctx().get(), revoke, &revoked).ok());
  EXPECT_TRUE(WaitFor(
      [&] { return CallOther(token->access_token(), &info).error_code() == grpc::StatusCode::UNAUTHENTICATED; },
      absl::Seconds(10)))
      << "a revoked token must be refused by other services";
  v1::IntrospectTokenResponse inactive;
  ASSERT_TRUE(Auth()->IntrospectToken(Ctx(admin).get(), introspect, &inactive).ok());
  EXPECT_FALSE(inactive.active());

  // Grants check cached credentials: disabling the account takes effect on
  // the very next grant, and enabling it again too.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Issue(cc).ok());
  v1::SetPrincipalDisabledRequest disable;
  disable.set_id(account->principal().id());
  disable.set_disabled(true);
  v1::Principal changed;
  ASSERT_TRUE(Auth()->SetPrincipalDisabled(Ctx(admin).get(), disable, &changed).ok());
  EXPECT_EQ(Issue(cc).status().code(), absl::StatusCode::kUnauthenticated);
  disable.set_disabled(false);
  ASSERT_TRUE(Auth()->SetPrincipalDisabled(Ctx(admin).get(), disable, &changed).ok());
  EXPECT_TRUE(Issue(cc).ok());
  // A change made behind the service's back (another replica, an operator's
  // SQL) reaches it through NOTIFY.
  ASSERT_TRUE(WithDatabase([&](db::Pool& pool) {
    return pool.Exec("UPDATE auth.principals SET disabled = true WHERE name = 'billing-exporter'")
        .status();
  }).ok());
  EXPECT_TRUE(WaitFor([&] { return Issue(cc).status().code() == absl::StatusCode::kUnauthenticated; },
                      absl::Seconds(5)));
  ASSERT_TRUE(WithDatabase([&](db::Pool& pool) {
    return pool.Exec("UPDATE auth.principals SET disabled = false WHERE name = 'billing-exporter'")
        .status();
  }).ok());

  // Audit rows, and the same events on Kafka through the outbox.
  v1::ListAuditEventsRequest audit;
  audit.set_principal_id(account->principal().id());
  v1::ListAuditEventsResponse rows;
  ASSERT_TRUE(Auth()->ListAuditEvents(Ctx(admin).get(), audit, &rows).ok());
  std::set<std::string> actions;
  for (const auto& e : rows.events()) actions.insert(e.action());
  for (const char* a : {"principal.created", "login.succeeded", "token.issued", "token.revoked"}) {
    EXPECT_TRUE(actions.count(a)) << a;
  }
  events::ConsumerOptions co;
  co.kafka.brokers = *testing::TestKafkaBootstrap();
  co.group_id = "auth-test-" + core::NewId();
  co.topics = {"cloudflux.auth.audit"};
  co.session_timeout = absl::Seconds(3);  // the dev broker's rebalances wait ~this long
  std::set<std::string> published;
  auto consumer = events::Consumer::Create(co, [&](const events::ConsumedMessage& m) {
    auto envelope = events::ParseEnvelope(m);
    if (!envelope.ok()) return envelope.status();
    v1::AuditRecorded recorded;
    envelope->payload().UnpackTo(&recorded);
    if (recorded.event().principal_id() == account->principal().id()) {
      published.insert(recorded.event().action());
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(consumer.ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        (void)(*consumer)->PollOnce(absl::Milliseconds(100));
        return published.count("token.revoked") > 0;
      },
      absl::Seconds(30), absl::ZeroDuration()));
}

TEST_F(AuthTest, RepeatedFailedLoginsAreLockedOutAndTheRightPasswordDoesNotHelp) {
  std::string admin = AdminToken();
  ASSERT_TRUE(Create(admin, "mallory-target", v1::PRINCIPAL_KIND_USER, {"viewer"},
                     "a long enough password").ok());
  for (int i = 0; i < 5; ++i) {
    auto r = Login("mallory-target", "wrong password " + std::to_string(i));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(r.status().message(), "invalid credentials");
  }
  auto locked = Login("mallory-target", "a long enough password");
  EXPECT_EQ(locked.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(locked.status().message(), "retry in")) << locked.status();
  // Unknown users get the same answer as wrong passwords.
  EXPECT_EQ(Login("nobody-here", "whatever password").status().message(), "invalid credentials");
  v1::ListAuditEventsRequest audit;
  audit.set_action("login.failed");
  v1::ListAuditEventsResponse rows;
  ASSERT_TRUE(Auth()->ListAuditEvents(Ctx(admin).get(), audit, &rows).ok());
  EXPECT_GE(rows.events_size(), 5);
}

// Successful machine grants are answered from memory (credentials, failure
// counters, signing key) and finish from the group commit of their audit
// rows; failures and lockouts must still see every change at once.
TEST_F(AuthTest, MachineGrantsFromMemoryAreAuditedAndStillLockOut) {
  std::string admin = AdminToken();
  auto account = Create(admin, "fast-client", v1::PRINCIPAL_KIND_SERVICE_ACCOUNT, {"viewer"});
  ASSERT_TRUE(account.ok()) << account.status();
  v1::IssueTokenRequest cc;
  cc.set_grant_type("client_credentials");
  cc.set_client_id("fast-client");
  cc.set_client_secret(account->client_secret());
  constexpr int kGrants = 20;
  for (int i = 0; i < kGrants; ++i) ASSERT_TRUE(Issue(cc).ok()) << i;
  v1::IssueTokenRequest wrong = cc;
  wrong.set_client_secret(account->client_secret() + "x");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Issue(wrong).status().code(), absl::StatusCode::kUnauthenticated) << i;
  }
  auto locked = Issue(cc);
  EXPECT_EQ(locked.status().code(), absl::StatusCode::kResourceExhausted) << locked.status();

  v1::ListAuditEventsRequest audit;
  audit.set_principal_id(account->principal().id());
  audit.mutable_page()->set_page_size(100);
  v1::ListAuditEventsResponse rows;
  ASSERT_TRUE(Auth()->ListAuditEvents(Ctx(admin).get(), audit, &rows).ok());
  std::map<std::string, int> actions;
  for (const auto& e : rows.events()) actions[e.action()]++;
  EXPECT_EQ(actions["login.succeeded"], kGrants);
  EXPECT_EQ(actions["token.issued"], kGrants);
  EXPECT_EQ(actions["login.failed"], 5);
}

TEST_F(AuthTest, RefreshTokensRotateAndReuseRevokesTheFamily) {
  auto first = Login("admin", kAdminPassword);
  ASSERT_TRUE(first.ok());
  ASSERT_FALSE(first->refresh_token().empty());
  v1::IssueTokenRequest refresh;
  refresh.set_grant_type("refresh_token");
  refresh.set_refresh_token(first->refresh_token());
  auto second = Issue(refresh);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->refresh_token(), first->refresh_token());

  // The first refresh token is replayed: reuse detected, family revoked.
  auto replay = Issue(refresh);
  EXPECT_EQ(replay.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(replay.status().message(), "reuse detected"));
  refresh.set_refresh_token(second->refresh_token());
  EXPECT_EQ(Issue(refresh).status().code(), absl::StatusCode::kUnauthenticated)
      << "the legitimate holder's newer token dies with the family";
}

TEST_F(AuthTest, KeyRotationKeepsOldTokensValidUntilTheyExpire) {
  std::string admin = AdminToken();
  std::string old_token = AdminToken();
  v1::RotateSigningKeyResponse rotated;
  ASSERT_TRUE(Auth()->RotateSigningKey(Ctx(admin).get(), {}, &rotated).ok());
  v1::GetJwksResponse jwks;
  ASSERT_TRUE(Auth()->GetJwks(Ctx().get(), {}, &jwks).ok());
  EXPECT_GE(jwks.keys_size(), 2);
  EXPECT_EQ(jwks.keys(jwks.keys_size() - 1).kid(), rotated.kid());
  diagnostics::v1::GetServerInfoResponse info;
  EXPECT_TRUE(CallOther(old_token, &info).ok()) << "old key still published";
  std::string new_token = AdminToken();
  // The other service learns the new kid on first sight (rate-limited refetch).
  EXPECT_TRUE(WaitFor([&] { return CallOther(new_token, &info).ok(); }, absl::Seconds(10)));
}

TEST_F(AuthTest, MalformedRequestsAreInvalidAndChangeNothing) {
  std::string admin = AdminToken();
  v1::ListPrincipalsRequest list;
  list.mutable_page()->set_page_size(1000);
  v1::ListPrincipalsResponse before, after;
  ASSERT_TRUE(Auth()->ListPrincipals(Ctx(admin).get(), list, &before).ok());

  EXPECT_EQ(Create(admin, "", v1::PRINCIPAL_KIND_USER, {}, "password12345").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Create(admin, std::string(10000, 'a'), v1::PRINCIPAL_KIND_USER, {}, "password12345")
                .status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Create(admin, "bob", v1::PRINCIPAL_KIND_USER, {"root"}, "password12345").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Create(admin, "bob", v1::PRINCIPAL_KIND_USER, {}, "short").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Create(admin, "bob", v1::PRINCIPAL_KIND_UNSPECIFIED, {}, "password12345").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Create(admin, "../bob", v1::PRINCIPAL_KIND_USER, {}, "password12345").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Create(admin, "admin", v1::PRINCIPAL_KIND_USER, {}, "password12345").status().code(),
            absl::StatusCode::kAlreadyExists);
  v1::IssueTokenRequest magic;
  magic.set_grant_type("magic");
  EXPECT_EQ(Issue(magic).status().code(), absl::StatusCode::kInvalidArgument);
  v1::IssueTokenRequest empty;
  empty.set_grant_type("password");
  EXPECT_EQ(Issue(empty).status().code(), absl::StatusCode::kInvalidArgument);
  v1::GetPrincipalRequest get;
  get.set_id("not-a-uuid");
  v1::Principal p;
  EXPECT_EQ(Auth()->GetPrincipal(Ctx(admin).get(), get, &p).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  get.set_id(core::NewId());
  EXPECT_EQ(Auth()->GetPrincipal(Ctx(admin).get(), get, &p).error_code(), grpc::StatusCode::NOT_FOUND);
  list.mutable_page()->set_page_token("garbage");
  EXPECT_EQ(Auth()->ListPrincipals(Ctx(admin).get(), list, &after).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  list.mutable_page()->clear_page_token();
  ASSERT_TRUE(Auth()->ListPrincipals(Ctx(admin).get(), list, &after).ok());
  EXPECT_EQ(after.principals_size(), before.principals_size());

  // Identity administration is for admins only.
  auto viewer = Create(admin, "just-a-viewer", v1::PRINCIPAL_KIND_USER, {"viewer"}, "password12345");
  ASSERT_TRUE(viewer.ok());
  auto viewer_token = Login("just-a-viewer", "password12345");
  ASSERT_TRUE(viewer_token.ok());
  EXPECT_EQ(Create(viewer_token->access_token(), "sneaky", v1::PRINCIPAL_KIND_USER, {"admin"},
                   "password12345").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(AuthTest, ApiKeysRolesDisablingAndPaging) {
  std::string admin = AdminToken();
  auto account = Create(admin, "batch-job", v1::PRINCIPAL_KIND_SERVICE_ACCOUNT, {"viewer"});
  ASSERT_TRUE(account.ok()) << account.status();
  const std::string id = account->principal().id();

  v1::CreateApiKeyRequest create_key;
  create_key.set_principal_id(id);
  create_key.set_name("nightly");
  v1::CreateApiKeyResponse key;
  ASSERT_TRUE(Auth()->CreateApiKey(Ctx(admin).get(), create_key, &key).ok());
  ASSERT_TRUE(absl::StartsWith(key.secret(), "cfk_"));
  v1::IssueTokenRequest by_key;
  by_key.set_grant_type("api_key");
  by_key.set_api_key(key.secret());
  auto token = Issue(by_key);
  ASSERT_TRUE(token.ok()) << token.status();

  v1::ListApiKeysRequest list_keys;
  list_keys.set_principal_id(id);
  v1::ListApiKeysResponse keys;
  ASSERT_TRUE(Auth()->ListApiKeys(Ctx(admin).get(), list_keys, &keys).ok());
  ASSERT_EQ(keys.api_keys_size(), 1);
  EXPECT_EQ(keys.api_keys(0).prefix(), key.secret().substr(0, 12));
  EXPECT_EQ(keys.DebugString().find(key.secret()), std::string::npos) << "never the secret";

  v1::RevokeApiKeyRequest revoke_key;
  revoke_key.set_id(key.api_key().id());
  v1::ApiKey revoked;
  ASSERT_TRUE(Auth()->RevokeApiKey(Ctx(admin).get(), revoke_key, &revoked).ok());
  EXPECT_TRUE(revoked.revoked());
  EXPECT_EQ(Issue(by_key).status().code(), absl::StatusCode::kUnauthenticated);
  // Users cannot have API keys.
  auto user = Create(admin, "carol", v1::PRINCIPAL_KIND_USER, {"viewer"}, "password12345");
  ASSERT_TRUE(user.ok());
  create_key.set_principal_id(user->principal().id());
  EXPECT_EQ(Auth()->CreateApiKey(Ctx(admin).get(), create_key, &key).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // New roles show up in new tokens.
  v1::SetRolesRequest roles;
  roles.set_id(user->principal().id());
  roles.add_roles("operator");
  v1::Principal updated;
  ASSERT_TRUE(Auth()->SetRoles(Ctx(admin).get(), roles, &updated).ok());
  auto carol = Login("carol", "password12345");
  ASSERT_TRUE(carol.ok());
  diagnostics::v1::EchoResponse echo;
  EXPECT_TRUE(Other()->Echo(Ctx(carol->access_token()).get(), {}, &echo).ok()) << "operator may Echo";

  // A disabled principal cannot log in.
  v1::SetPrincipalDisabledRequest disable;
  disable.set_id(user->principal().id());
  disable.set_disabled(true);
  ASSERT_TRUE(Auth()->SetPrincipalDisabled(Ctx(admin).get(), disable, &updated).ok());
  EXPECT_TRUE(updated.disabled());
  EXPECT_EQ(Login("carol", "password12345").status().code(), absl::StatusCode::kUnauthenticated);
  v1::IssueTokenRequest refresh;
  refresh.set_grant_type("refresh_token");
  refresh.set_refresh_token(carol->refresh_token());
  EXPECT_EQ(Issue(refresh).status().code(), absl::StatusCode::kUnauthenticated);

  // Paging visits every principal exactly once.
  v1::ListPrincipalsRequest list;
  list.mutable_page()->set_page_size(1);
  std::set<std::string> seen;
  int pages = 0;
  do {
    v1::ListPrincipalsResponse page;
    ASSERT_TRUE(Auth()->ListPrincipals(Ctx(admin).get(), list, &page).ok());
    for (const auto& p : page.principals()) EXPECT_TRUE(seen.insert(p.id()).second);
    list.mutable_page()->set_page_token(page.page().next_page_token());
    ++pages;
  } while (!list.page().page_token().empty() && pages < 100);
  EXPECT_GE(seen.size(), 3u);
  EXPECT_EQ(static_cast<int>(seen.size()), pages) << "one principal per page, no empty last page";
}

TEST(AuthStartup, RefusesToStartWithoutSecrets) {
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok());
  Service no_password = StartService("auth", (*db)->url(),
                                     {{"CLOUDFLUX_BOOTSTRAP_ADMIN_PASSWORD_FILE", ""}});
  EXPECT_EQ(no_password.process->Wait(absl::Seconds(20)), 1);
  EXPECT_TRUE(absl::StrContains(no_password.process->Output(), "no admin exists"))
      << no_password.process->Output();
  Service no_key = StartService("auth", (*db)->url(), {{"CLOUDFLUX_MASTER_KEY_FILE", ""}});
  EXPECT_EQ(no_key.process->Wait(absl::Seconds(20)), 1);
  EXPECT_TRUE(absl::StrContains(no_key.process->Output(), "64 hex"));
}

}  // namespace
}  // namespace cloudflux
