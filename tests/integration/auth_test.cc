// The auth service through its gRPC API, and authentication in another
// service binary, against real PostgreSQL, Redis and the dev broker.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "cloudflux/auth/v1/auth.grpc.pb.h"
#include "cloudflux/auth/v1/events.pb.h"
#include "cloudflux/authn/service_token.h"
#include "cloudflux/core/status.h"
#include "cloudflux/cache/redis.h"
#include "cloudflux/diagnostics/v1/diagnostics.grpc.pb.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/server/grpc_status.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
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
        (void)(*consumer)->Drain(absl::Milliseconds(100));
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

// libpq used to cut "name\0x" at the NUL: the lockout counter was keyed by
// the whole name while the password was checked for "name". Names outside
// the naming rule are refused before anything is looked up or counted.
TEST_F(AuthTest, ANulByteInANameNeitherBypassesTheLockoutNorReachesTheDatabase) {
  std::string admin = AdminToken();
  const std::string password = "nul byte target password";
  ASSERT_TRUE(Create(admin, "nul-target", v1::PRINCIPAL_KIND_USER, {"viewer"}, password).ok());
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(Login("nul-target", "wrong " + std::to_string(i)).ok());
  ASSERT_EQ(Login("nul-target", password).status().code(), absl::StatusCode::kResourceExhausted);
  for (const std::string& name : {std::string("nul-target\0x", 12), std::string("nul-target\0", 11),
                                  std::string("nul-target\n"), std::string("nul-target\x7f")}) {
    auto r = Login(name, password);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
  EXPECT_EQ(Login("nul-target", password).status().code(), absl::StatusCode::kResourceExhausted);

  auto account = Create(admin, "nul-client", v1::PRINCIPAL_KIND_SERVICE_ACCOUNT, {"viewer"});
  ASSERT_TRUE(account.ok()) << account.status();
  v1::IssueTokenRequest cc;
  cc.set_grant_type("client_credentials");
  cc.set_client_id(std::string("nul-client\0x", 12));
  cc.set_client_secret(account->client_secret());
  EXPECT_EQ(Issue(cc).status().code(), absl::StatusCode::kInvalidArgument);
  // Other string fields reach PostgreSQL refused too, never cut short.
  v1::CreatePrincipalRequest create;
  create.set_name(std::string("evil\0admin", 10));
  create.set_kind(v1::PRINCIPAL_KIND_USER);
  create.set_password("a long enough password");
  v1::CreatePrincipalResponse created;
  EXPECT_EQ(Auth()->CreatePrincipal(Ctx(admin).get(), create, &created).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// The counters are taken before the password is checked, atomically: of 50
// concurrent wrong guesses at most the limit (5) reach the hash.
TEST_F(AuthTest, ConcurrentGuessesAreCheckedAtMostTheLimit) {
  std::string admin = AdminToken();
  auto user = Create(admin, "race-target", v1::PRINCIPAL_KIND_USER, {"viewer"}, "race target password");
  ASSERT_TRUE(user.ok()) << user.status();
  std::atomic<int> checked{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&, i] {
      auto r = Login("race-target", "guess number " + std::to_string(i));
      if (r.status().code() == absl::StatusCode::kUnauthenticated) {
        ++checked;
      } else if (r.status().code() == absl::StatusCode::kResourceExhausted) {
        ++refused;
      } else {
        ++other;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(checked.load(), 5);
  EXPECT_GE(checked.load(), 1);
  EXPECT_EQ(checked + refused, 50) << other.load() << " other answers";
  v1::ListAuditEventsRequest audit;
  audit.set_principal_id(user->principal().id());
  audit.set_action("login.failed");
  v1::ListAuditEventsResponse rows;
  ASSERT_TRUE(Auth()->ListAuditEvents(Ctx(admin).get(), audit, &rows).ok());
  EXPECT_EQ(rows.events_size(), checked.load()) << "every checked guess, and only those, on record";
}

// Many concurrent grants of one client with the right secret are never
// refused by the brute-force limit (it counts failures; only guessable
// passwords reserve a place first), and wrong secrets still lock it.
TEST_F(AuthTest, ConcurrentRightSecretsAreNeverRefusedWrongOnesStillLock) {
  std::string admin = AdminToken();
  auto account = Create(admin, "busy-client", v1::PRINCIPAL_KIND_SERVICE_ACCOUNT, {"viewer"});
  ASSERT_TRUE(account.ok()) << account.status();
  v1::IssueTokenRequest cc;
  cc.set_grant_type("client_credentials");
  cc.set_client_id("busy-client");
  cc.set_client_secret(account->client_secret());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 40; ++i) {
    threads.emplace_back([&] {
      if (Issue(cc).ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 40);
  v1::IssueTokenRequest wrong = cc;
  wrong.set_client_secret(account->client_secret() + "x");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Issue(wrong).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Issue(cc).status().code(), absl::StatusCode::kResourceExhausted);
}

// Access tokens lose their power as soon as the principal is demoted or
// disabled, or their refresh-token family is revoked (reuse, RevokeToken):
// other services refuse them within their one-second recheck.
TEST_F(AuthTest, TokensLoseTheirPowerWhenThePrincipalOrTheSessionChanges) {
  std::string admin = AdminToken();
  const std::string password = "demote me password";
  auto user = Create(admin, "demote-me", v1::PRINCIPAL_KIND_USER, {"operator"}, password);
  ASSERT_TRUE(user.ok()) << user.status();
  diagnostics::v1::GetServerInfoResponse info;
  auto refused = [&](const std::string& token) {
    return WaitFor([&] { return CallOther(token, &info).error_code() == grpc::StatusCode::UNAUTHENTICATED; },
                   absl::Seconds(5));
  };

  auto before = Login("demote-me", password);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE(CallOther(before->access_token(), &info).ok());
  v1::SetRolesRequest demote;
  demote.set_id(user->principal().id());
  demote.add_roles("viewer");
  v1::Principal changed;
  ASSERT_TRUE(Auth()->SetRoles(Ctx(admin).get(), demote, &changed).ok());
  EXPECT_GT(changed.token_version(), user->principal().token_version());
  EXPECT_TRUE(refused(before->access_token())) << "a token with the old roles";
  auto after = Login("demote-me", password);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(CallOther(after->access_token(), &info).ok()) << "a token issued after the change works";

  v1::SetPrincipalDisabledRequest disable;
  disable.set_id(user->principal().id());
  disable.set_disabled(true);
  ASSERT_TRUE(Auth()->SetPrincipalDisabled(Ctx(admin).get(), disable, &changed).ok());
  EXPECT_TRUE(refused(after->access_token())) << "a disabled principal's token";
  disable.set_disabled(false);
  ASSERT_TRUE(Auth()->SetPrincipalDisabled(Ctx(admin).get(), disable, &changed).ok());

  // Refresh reuse: the family's access tokens go with it.
  auto first = Login("demote-me", password);
  ASSERT_TRUE(first.ok()) << first.status();
  v1::IssueTokenRequest refresh;
  refresh.set_grant_type("refresh_token");
  refresh.set_refresh_token(first->refresh_token());
  auto second = Issue(refresh);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(CallOther(second->access_token(), &info).ok());
  EXPECT_FALSE(Issue(refresh).ok()) << "reuse";
  EXPECT_TRUE(refused(first->access_token()));
  EXPECT_TRUE(refused(second->access_token()));

  // RevokeToken on a refresh token: its family's access tokens too.
  auto third = Login("demote-me", password);
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_TRUE(CallOther(third->access_token(), &info).ok());
  v1::RevokeTokenRequest revoke;
  revoke.set_token(third->refresh_token());
  v1::RevokeTokenResponse revoked;
  ASSERT_TRUE(Auth()->RevokeToken(Ctx().get(), revoke, &revoked).ok());
  EXPECT_TRUE(refused(third->access_token()));
  // Machine grants have no session and stay unaffected.
  auto again = Login("demote-me", password);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(CallOther(again->access_token(), &info).ok());
}

// A scope names roles the principal holds; it narrows the token, and a
// scope not held is refused (a viewer used to get 'admin' copied in).
TEST_F(AuthTest, ScopesNarrowTokensToHeldRolesAndAreNeverWidened) {
  std::string admin = AdminToken();
  const std::string password = "scope viewer password";
  ASSERT_TRUE(Create(admin, "scope-viewer", v1::PRINCIPAL_KIND_USER, {"viewer"}, password).ok());
  v1::IssueTokenRequest req;
  req.set_grant_type("password");
  req.set_username("scope-viewer");
  req.set_password(password);
  for (const char* scope : {"admin roles:admin", "admin", "operator viewer"}) {
    req.set_scope(scope);
    auto r = Issue(req);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << scope << ": " << r.status();
  }
  req.set_scope("viewer");
  auto narrow = Issue(req);
  ASSERT_TRUE(narrow.ok()) << narrow.status();
  EXPECT_EQ(narrow->scope(), "viewer");
  // An admin's token narrowed to viewer cannot do admin things.
  req.set_username("admin");
  req.set_password(kAdminPassword);
  auto admin_as_viewer = Issue(req);
  ASSERT_TRUE(admin_as_viewer.ok()) << admin_as_viewer.status();
  v1::ListPrincipalsResponse listed;
  EXPECT_EQ(Auth()->ListPrincipals(Ctx(admin_as_viewer->access_token()).get(), {}, &listed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Auth()->ListPrincipals(Ctx(admin).get(), {}, &listed).ok());
  // A refresh keeps the narrowed scope.
  v1::IssueTokenRequest refresh;
  refresh.set_grant_type("refresh_token");
  refresh.set_refresh_token(admin_as_viewer->refresh_token());
  auto refreshed = Issue(refresh);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  EXPECT_EQ(refreshed->scope(), "viewer");
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

// Redis is a cache of what PostgreSQL records. While it is down no token
// and no login is accepted that could not be checked; after it restarts
// empty, the auth service rebuilds it before anything is accepted again, and
// no revocation, lockout or failure count is forgotten.
TEST(AuthRedisOutage, NothingIsAcceptedUncheckedAndNothingIsForgotten) {
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  const int port = testing::PickFreePort();
  const std::string dir = ::testing::TempDir() + "/redis-outage-" + std::to_string(port);
  std::filesystem::create_directories(dir);
  auto start_redis = [&] {
    auto redis = ChildProcess::Start({"redis-server", "--bind", "127.0.0.1", "--port", std::to_string(port),
                                      "--save", "", "--appendonly", "no", "--dir", dir});
    EXPECT_TRUE(redis.ok()) << redis.status();
    auto probe = cache::RedisClient::Create({.address = "127.0.0.1:" + std::to_string(port)});
    EXPECT_TRUE(probe.ok() && WaitFor([&] { return (*probe)->Ping(absl::Milliseconds(200)).ok(); },
                                      absl::Seconds(10)));
    return redis.ok() ? std::move(*redis) : nullptr;
  };
  std::unique_ptr<ChildProcess> redis = start_redis();
  const std::map<std::string, std::string> redis_env = {
      {"CLOUDFLUX_REDIS_ADDRESS", "127.0.0.1:" + std::to_string(port)}};
  Service auth = StartService("auth", (*db)->url(), redis_env);
  ASSERT_TRUE(WaitForHealth(auth, HealthCheckResponse::SERVING)) << auth.process->Output();
  auto other_env = redis_env;
  other_env["CLOUDFLUX_INSECURE_NO_AUTH"] = "false";
  other_env["CLOUDFLUX_AUTH_ADDRESS"] = auth.target();
  Service other = StartService("classification", (*db)->url(), other_env);
  ASSERT_TRUE(WaitForHealth(other, HealthCheckResponse::SERVING)) << other.process->Output();

  auto stub = v1::AuthService::NewStub(server::MakeChannel(auth.target()));
  auto diag = diagnostics::v1::Diagnostics::NewStub(server::MakeChannel(other.target()));
  auto ctx = [](const std::string& token = "") {
    auto c = server::MakeClientContext(absl::Seconds(5));
    if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
    return c;
  };
  auto login = [&](const std::string& user, const std::string& password) -> absl::StatusOr<v1::IssueTokenResponse> {
    v1::IssueTokenRequest req;
    req.set_grant_type("password");
    req.set_username(user);
    req.set_password(password);
    v1::IssueTokenResponse resp;
    grpc::Status s = stub->IssueToken(ctx().get(), req, &resp);
    if (!s.ok()) return server::FromGrpcStatus(s);
    return resp;
  };
  auto call_other = [&](const std::string& token) {
    diagnostics::v1::GetServerInfoResponse info;
    return diag->GetServerInfo(ctx(token).get(), {}, &info).error_code();
  };
  auto admin = login("admin", kAdminPassword);
  ASSERT_TRUE(admin.ok()) << admin.status();
  for (const char* name : {"locked-user", "revoked-user", "counted-user"}) {
    v1::CreatePrincipalRequest req;
    req.set_name(name);
    req.set_kind(v1::PRINCIPAL_KIND_USER);
    req.add_roles("viewer");
    req.set_password("outage test password");
    v1::CreatePrincipalResponse resp;
    ASSERT_TRUE(stub->CreatePrincipal(ctx(admin->access_token()).get(), req, &resp).ok());
  }
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(login("locked-user", "wrong").ok());
  ASSERT_EQ(login("locked-user", "outage test password").status().code(),
            absl::StatusCode::kResourceExhausted);
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(login("counted-user", "wrong").ok());
  auto revoked = login("revoked-user", "outage test password");
  ASSERT_TRUE(revoked.ok());
  ASSERT_EQ(call_other(revoked->access_token()), grpc::StatusCode::OK);
  v1::RevokeTokenRequest revoke;
  revoke.set_token(revoked->access_token());
  v1::RevokeTokenResponse revoke_resp;
  ASSERT_TRUE(stub->RevokeToken(ctx().get(), revoke, &revoke_resp).ok());
  ASSERT_TRUE(WaitFor([&] { return call_other(revoked->access_token()) == grpc::StatusCode::UNAUTHENTICATED; },
                      absl::Seconds(5)));
  ASSERT_EQ(call_other(admin->access_token()), grpc::StatusCode::OK);

  // Redis goes away: nothing that needs it is accepted.
  redis->Signal(SIGKILL);
  redis->Wait(absl::Seconds(10));
  EXPECT_TRUE(WaitFor([&] { return call_other(admin->access_token()) == grpc::StatusCode::UNAVAILABLE; },
                      absl::Seconds(5)))
      << "a token that cannot be checked for revocation";
  EXPECT_NE(call_other(revoked->access_token()), grpc::StatusCode::OK);
  EXPECT_EQ(login("locked-user", "outage test password").status().code(), absl::StatusCode::kUnavailable);

  // Redis comes back empty: once rebuilt, everything is as it was.
  redis = start_redis();
  ASSERT_NE(redis, nullptr);
  EXPECT_TRUE(WaitFor([&] { return call_other(admin->access_token()) == grpc::StatusCode::OK; },
                      absl::Seconds(15)))
      << auth.process->Output();
  EXPECT_EQ(call_other(revoked->access_token()), grpc::StatusCode::UNAUTHENTICATED) << "revocation forgotten";
  EXPECT_EQ(login("locked-user", "outage test password").status().code(),
            absl::StatusCode::kResourceExhausted)
      << "lockout forgotten";
  // counted-user had 3 failures: 2 more lock it, not 5.
  for (int i = 0; i < 2; ++i) EXPECT_FALSE(login("counted-user", "wrong").ok());
  EXPECT_EQ(login("counted-user", "outage test password").status().code(),
            absl::StatusCode::kResourceExhausted)
      << "failure count forgotten";
  auto fresh = login("revoked-user", "outage test password");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(call_other(fresh->access_token()), grpc::StatusCode::OK);
  for (Service* s : {&other, &auth}) {
    s->process->Signal(SIGTERM);
    EXPECT_EQ(s->process->Wait(absl::Seconds(20)), 0) << s->process->Output();
  }
}

// Attempts that cannot be judged because PostgreSQL is down give their
// brute-force places back: an outage locks nobody out.
TEST(AuthPostgresOutage, AttemptsDuringAnOutageDoNotLockTheUserOut) {
  auto pg = testing::PostgresProcess::Create();
  ASSERT_TRUE(pg.ok()) << pg.status();
  Service auth = StartService("auth", (*pg)->url());
  ASSERT_TRUE(WaitForHealth(auth, HealthCheckResponse::SERVING)) << auth.process->Output();
  auto stub = v1::AuthService::NewStub(server::MakeChannel(auth.target()));
  auto login = [&](const std::string& user, const std::string& password) {
    v1::IssueTokenRequest req;
    req.set_grant_type("password");
    req.set_username(user);
    req.set_password(password);
    v1::IssueTokenResponse resp;
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    return stub->IssueToken(ctx.get(), req, &resp).error_code();
  };
  {
    v1::IssueTokenRequest req;
    req.set_grant_type("password");
    req.set_username("admin");
    req.set_password(kAdminPassword);
    v1::IssueTokenResponse admin;
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    ASSERT_TRUE(stub->IssueToken(ctx.get(), req, &admin).ok());
    v1::CreatePrincipalRequest create;
    create.set_name("outage-user");
    create.set_kind(v1::PRINCIPAL_KIND_USER);
    create.add_roles("viewer");
    create.set_password("outage user password");
    v1::CreatePrincipalResponse created;
    auto c = server::MakeClientContext(absl::Seconds(10));
    c->AddMetadata("authorization", "Bearer " + admin.access_token());
    ASSERT_TRUE(stub->CreatePrincipal(c.get(), create, &created).ok());
  }
  ASSERT_TRUE((*pg)->Stop().ok());
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(login("outage-user", "outage user password"), grpc::StatusCode::UNAVAILABLE) << i;
  }
  ASSERT_TRUE((*pg)->Start().ok());
  EXPECT_TRUE(WaitFor([&] { return login("outage-user", "outage user password") == grpc::StatusCode::OK; },
                      absl::Seconds(20)))
      << "locked out by attempts the outage made impossible to judge";
  auth.process->Signal(SIGTERM);
  EXPECT_EQ(auth.process->Wait(absl::Seconds(20)), 0);
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

// The services call each other as the service account auth keeps from the
// secret file: a ServiceToken (what ServiceApp::AuthorizeCall uses) gets a
// token another service accepts for operator methods; a changed file
// replaces the secret at the next start.
TEST(AuthServiceAccount, ServicesCallEachOtherWithTheSecretFromTheFile) {
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  std::string dir = ::testing::TempDir() + "/service-account-" + core::NewId();
  std::filesystem::create_directories(dir);
  const std::string secret_file = dir + "/service.secret";
  const std::string first(64, 'a'), second(64, 'b');
  std::ofstream(secret_file) << first << "\n";
  Service auth = StartService("auth", (*db)->url(), {{"CLOUDFLUX_BOOTSTRAP_SERVICE_SECRET_FILE", secret_file}});
  ASSERT_TRUE(WaitForHealth(auth, HealthCheckResponse::SERVING)) << auth.process->Output();
  Service other = StartService("classification", (*db)->url(),
                               {{"CLOUDFLUX_INSECURE_NO_AUTH", "false"}, {"CLOUDFLUX_AUTH_ADDRESS", auth.target()}});
  ASSERT_TRUE(WaitForHealth(other, HealthCheckResponse::SERVING)) << other.process->Output();

  auto call_as = [&](const std::string& secret) -> absl::Status {
    authn::ServiceToken token(auth.target(), {}, "cloudflux-services", secret);
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    CF_RETURN_IF_ERROR(token.Authorize(*ctx));
    diagnostics::v1::EchoRequest req;  // an operator method
    req.set_payload("x");
    diagnostics::v1::EchoResponse resp;
    return server::FromGrpcStatus(
        diagnostics::v1::Diagnostics::NewStub(server::MakeChannel(other.target()))->Echo(ctx.get(), req, &resp));
  };
  EXPECT_TRUE(call_as(first).ok());
  EXPECT_EQ(call_as(second).code(), absl::StatusCode::kUnauthenticated);

  // The file changes: after a restart the new secret works, the old one not.
  auth.process->Signal(SIGTERM);
  ASSERT_EQ(auth.process->Wait(absl::Seconds(20)), 0);
  std::ofstream(secret_file, std::ios::trunc) << second << "\n";
  auth = StartService("auth", (*db)->url(),
                      {{"CLOUDFLUX_BOOTSTRAP_SERVICE_SECRET_FILE", secret_file},
                       {"CLOUDFLUX_LISTEN_ADDRESS", auth.target()}});
  ASSERT_TRUE(WaitForHealth(auth, HealthCheckResponse::SERVING)) << auth.process->Output();
  EXPECT_TRUE(call_as(second).ok());
  EXPECT_EQ(call_as(first).code(), absl::StatusCode::kUnauthenticated);

  // A secret too short to be one: auth refuses to start.
  std::ofstream(secret_file, std::ios::trunc) << "short\n";
  Service refused = StartService("auth", (*db)->url(), {{"CLOUDFLUX_BOOTSTRAP_SERVICE_SECRET_FILE", secret_file}});
  EXPECT_NE(refused.process->Wait(absl::Seconds(20)), 0);
  EXPECT_TRUE(absl::StrContains(refused.process->Output(), "32 characters")) << refused.process->Output();
  for (Service* s : {&other, &auth}) {
    s->process->Signal(SIGTERM);
    EXPECT_EQ(s->process->Wait(absl::Seconds(20)), 0);
  }
}

// The reserved namespaces ("cloudflux-*", where the prediction service keeps
// its models) are changed only by the services' account (role service) or
// an admin: an operator may write elsewhere and read them, not change them.
// An account bootstrapped before the service role existed gets it.
TEST(AuthServiceAccount, OnlyServicesAndAdminsChangeTheReservedNamespaces) {
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  std::string dir = ::testing::TempDir() + "/reserved-" + core::NewId();
  std::filesystem::create_directories(dir);
  const std::string secret_file = dir + "/service.secret";
  const std::string secret(64, 's');
  std::ofstream(secret_file) << secret << "\n";
  Service auth = StartService("auth", (*db)->url(), {{"CLOUDFLUX_BOOTSTRAP_SERVICE_SECRET_FILE", secret_file}});
  ASSERT_TRUE(WaitForHealth(auth, HealthCheckResponse::SERVING)) << auth.process->Output();
  Service storage = StartService("storage-adapter", (*db)->url(),
                                 {{"CLOUDFLUX_INSECURE_NO_AUTH", "false"},
                                  {"CLOUDFLUX_AUTH_ADDRESS", auth.target()},
                                  {"CLOUDFLUX_DATA_DIR", dir + "/data"}});
  ASSERT_TRUE(WaitForHealth(storage, HealthCheckResponse::SERVING)) << storage.process->Output();
  auto stub = storage::v1::StorageService::NewStub(server::MakeChannel(storage.target()));
  authn::ServiceToken service(auth.target(), {}, "cloudflux-services", secret);
  auto as_service = [&](grpc::ClientContext& ctx) { ASSERT_TRUE(service.Authorize(ctx).ok()); };

  // An operator, made by the admin.
  auto auth_stub = v1::AuthService::NewStub(server::MakeChannel(auth.target()));
  auto login = [&](const std::string& user, const std::string& password) {
    v1::IssueTokenRequest req;
    req.set_grant_type("password");
    req.set_username(user);
    req.set_password(password);
    v1::IssueTokenResponse resp;
    grpc::Status s = auth_stub->IssueToken(server::MakeClientContext(absl::Seconds(10)).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.access_token();
  };
  const std::string admin = login("admin", kAdminPassword);
  {
    v1::CreatePrincipalRequest req;
    req.set_name("ops");
    req.set_kind(v1::PRINCIPAL_KIND_USER);
    req.add_roles("operator");
    req.set_password("an operator's long password");
    v1::CreatePrincipalResponse resp;
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    ctx->AddMetadata("authorization", "Bearer " + admin);
    grpc::Status s = auth_stub->CreatePrincipal(ctx.get(), req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const std::string ops = login("ops", "an operator's long password");
  auto bearer = [](const std::string& token) {
    return [token](grpc::ClientContext& ctx) { ctx.AddMetadata("authorization", "Bearer " + token); };
  };

  EXPECT_TRUE(PutThroughStorageAs(*stub, "cloudflux-models", "m/1.model", "model", as_service).ok());
  EXPECT_TRUE(PutThroughStorageAs(*stub, "cloudflux-models", "m/2.model", "model 2", bearer(admin)).ok());
  grpc::Status denied = PutThroughStorageAs(*stub, "cloudflux-models", "m/1.model", "forged", bearer(ops));
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED) << denied.error_message();
  EXPECT_TRUE(PutThroughStorageAs(*stub, "photos", "p", "a photo", bearer(ops)).ok()) << "other namespaces are open";

  auto call = [&](auto method, const auto& request, auto* response, const std::string& token) {
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    ctx->AddMetadata("authorization", "Bearer " + token);
    return ((*stub).*method)(ctx.get(), request, response);
  };
  storage::v1::DeleteObjectRequest del;
  del.set_namespace_("cloudflux-models");
  del.set_key("m/1.model");
  storage::v1::DeleteObjectResponse deleted;
  EXPECT_EQ(call(&storage::v1::StorageService::Stub::DeleteObject, del, &deleted, ops).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  storage::v1::SetTierRequest tier;
  tier.set_namespace_("cloudflux-models");
  tier.set_key("m/1.model");
  tier.set_tier(cloudflux::common::v1::STORAGE_TIER_COLD);
  storage::v1::ObjectInfo info;
  EXPECT_EQ(call(&storage::v1::StorageService::Stub::SetTier, tier, &info, ops).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  {
    storage::v1::CopyObjectRequest copy;  // a copy into the reserved namespace
    copy.set_source_namespace("photos");
    copy.set_source_key("p");
    copy.set_namespace_("cloudflux-models");
    copy.set_key("m/1.model");
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    ctx->AddMetadata("authorization", "Bearer " + ops);
    auto reader = stub->CopyObject(ctx.get(), copy);
    storage::v1::CopyObjectProgress p;
    while (reader->Read(&p)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // Nothing changed, and the operator may read it.
  storage::v1::HeadObjectRequest head;
  head.set_namespace_("cloudflux-models");
  head.set_key("m/1.model");
  ASSERT_TRUE(call(&storage::v1::StorageService::Stub::HeadObject, head, &info, ops).ok());
  EXPECT_EQ(info.sha256(), core::Sha256Hex(std::string("model")));
  EXPECT_EQ(info.version(), 1);
  EXPECT_EQ(info.tier(), cloudflux::common::v1::STORAGE_TIER_HOT);
  EXPECT_TRUE(call(&storage::v1::StorageService::Stub::DeleteObject, del, &deleted, admin).ok());

  // The service role is given back to an account bootstrapped without it.
  db::PoolOptions o;
  o.url = (*db)->url();
  o.max_connections = 1;
  auto pool = db::Pool::Create(o);
  ASSERT_TRUE(pool.ok());
  ASSERT_TRUE((*pool)->Exec("UPDATE auth.principals SET roles = '{operator}' WHERE name = 'cloudflux-services'").ok());
  auth.process->Signal(SIGTERM);
  ASSERT_EQ(auth.process->Wait(absl::Seconds(20)), 0);
  auth = StartService("auth", (*db)->url(),
                      {{"CLOUDFLUX_BOOTSTRAP_SERVICE_SECRET_FILE", secret_file},
                       {"CLOUDFLUX_LISTEN_ADDRESS", auth.target()}});
  ASSERT_TRUE(WaitForHealth(auth, HealthCheckResponse::SERVING)) << auth.process->Output();
  auto roles = (*pool)->Exec("SELECT array_to_string(roles, ',') FROM auth.principals WHERE name = 'cloudflux-services'");
  ASSERT_TRUE(roles.ok());
  EXPECT_EQ((*roles)[0].Text(0), "operator,service");
  for (Service* s : {&storage, &auth}) {
    s->process->Signal(SIGTERM);
    EXPECT_EQ(s->process->Wait(absl::Seconds(20)), 0);
  }
}

}  // namespace
}  // namespace cloudflux
