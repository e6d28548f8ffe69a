// client_credentials grants/s and IntrospectToken/s of the real auth binary
// over loopback, with concurrent callers. Needs the test servers: run it as
//   scripts/dev bench build/release/bench/auth/auth_grant_bench [--seconds=10] [--concurrency=32]
// Peer: Ory Hydra's published figures on 2 CPUs (513 client-credential
// grants/s, 5,109 introspections/s; see ../../shared/REFERENCE.md).
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "bench/common/closed_loop.h"
#include "cloudflux/auth/v1/auth.grpc.pb.h"
#include "cloudflux/core/config.h"
#include "cloudflux/db/db.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/testing/testing.h"

ABSL_FLAG(int32_t, seconds, 10, "Measured seconds per phase.");
ABSL_FLAG(int32_t, concurrency, 32, "Calls in flight.");
ABSL_FLAG(int32_t, channels, 4, "Client connections.");

namespace {

namespace v1 = cloudflux::auth::v1;
constexpr double kHydraGrants = 513, kHydraIntrospections = 5109;

void Die(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  cloudflux::core::ParseFlags(argc, argv, "auth grants/s and introspections/s");
  auto db = cloudflux::testing::ScratchDatabase::Create();
  if (!db.ok()) Die(std::string(db.status().message()));
  auto child = cloudflux::testing::StartServiceBinary(
      "auth", (*db)->url(), {{"CLOUDFLUX_PG_POOL_SIZE", "16"}, {"CLOUDFLUX_ACCESS_LOG", "errors"}});
  if (!child.ok()) Die("cannot start auth");
  std::string target = child->target();

  std::vector<std::unique_ptr<v1::AuthService::Stub>> stubs;
  for (int i = 0; i < absl::GetFlag(FLAGS_channels); ++i) {
    grpc::ChannelArguments args;
    args.SetInt("cloudflux.bench.channel", i);
    auto ch = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30))) {
      Die("auth did not come up:\n" + child->process->Output());
    }
    stubs.push_back(v1::AuthService::NewStub(ch));
  }
  auto ctx = [](const std::string& token = "") {
    auto c = cloudflux::server::MakeClientContext(absl::Seconds(30));
    if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
    return c;
  };
  // Admin login, a service account, and a token to introspect.
  v1::IssueTokenRequest login;
  login.set_grant_type("password");
  login.set_username("admin");
  login.set_password(cloudflux::testing::kTestAdminPassword);
  v1::IssueTokenResponse admin;
  grpc::Status s;
  for (int i = 0; i < 100; ++i) {
    s = stubs[0]->IssueToken(ctx().get(), login, &admin);
    if (s.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!s.ok()) Die("admin login: " + s.error_message() + "\n" + child->process->Output());
  v1::CreatePrincipalRequest create;
  create.set_name("bench-client");
  create.set_kind(v1::PRINCIPAL_KIND_SERVICE_ACCOUNT);
  create.add_roles("viewer");
  v1::CreatePrincipalResponse account;
  s = stubs[0]->CreatePrincipal(ctx(admin.access_token()).get(), create, &account);
  if (!s.ok()) Die("create: " + s.error_message());

  v1::IssueTokenRequest grant;
  grant.set_grant_type("client_credentials");
  grant.set_client_id("bench-client");
  grant.set_client_secret(account.client_secret());
  std::atomic<int> next{0};
  std::atomic<int64_t> granted{0};
  auto grants = cloudflux::bench::RunClosedLoop(
      [&](std::function<void(const grpc::Status&)> done) {
        struct Call {
          std::unique_ptr<grpc::ClientContext> ctx;
          v1::IssueTokenResponse resp;
        };
        auto* call = new Call{ctx(), {}};
        auto& stub = stubs[next.fetch_add(1) % stubs.size()];
        stub->async()->IssueToken(call->ctx.get(), &grant, &call->resp,
                                  [call, done, &granted](grpc::Status st) {
                                    delete call;
                                    if (st.ok()) granted.fetch_add(1);
                                    done(st);
                                  });
      },
      absl::GetFlag(FLAGS_concurrency), absl::GetFlag(FLAGS_seconds));
  if (grants.errors > 0) Die("grant errors: " + grants.first_error.error_message());
  // Every token handed out has its audit rows committed.
  auto pool = cloudflux::db::Pool::Create({.url = (*db)->url(), .max_connections = 1});
  if (!pool.ok()) Die(std::string(pool.status().message()));
  auto audited = (*pool)->Exec(
      "SELECT count(*) FILTER (WHERE action = 'token.issued'), count(*) FILTER (WHERE action = "
      "'login.succeeded') FROM auth.audit_events WHERE principal_id = $1",
      {account.principal().id()});
  if (!audited.ok()) Die(std::string(audited.status().message()));
  if ((*audited)[0].Int(0) != granted.load() || (*audited)[0].Int(1) != granted.load()) {
    Die(absl::StrCat(granted.load(), " grants but ", (*audited)[0].Int(0), " token.issued and ",
                     (*audited)[0].Int(1), " login.succeeded audit rows"));
  }

  v1::IssueTokenResponse sample;
  s = stubs[0]->IssueToken(ctx().get(), grant, &sample);
  if (!s.ok()) Die("sample token: " + s.error_message());
  v1::IntrospectTokenRequest introspect;
  introspect.set_token(sample.access_token());
  auto introspections = cloudflux::bench::RunClosedLoop(
      [&](std::function<void(const grpc::Status&)> done) {
        struct Call {
          std::unique_ptr<grpc::ClientContext> ctx;
          v1::IntrospectTokenResponse resp;
        };
        auto* call = new Call{ctx(admin.access_token()), {}};
        auto& stub = stubs[next.fetch_add(1) % stubs.size()];
        stub->async()->IntrospectToken(call->ctx.get(), &introspect, &call->resp,
                                       [call, done](grpc::Status st) {
                                         bool active = call->resp.active();
                                         delete call;
                                         done(st.ok() && !active
                                                  ? grpc::Status(grpc::StatusCode::INTERNAL, "inactive")
                                                  : st);
                                       });
      },
      absl::GetFlag(FLAGS_concurrency), absl::GetFlag(FLAGS_seconds));
  if (introspections.errors > 0) Die("introspect errors: " + introspections.first_error.error_message());

  std::printf("client_credentials grants : %8.0f /s  (Hydra, 2 CPUs: %.0f /s; ratio %.2f; target 5000)\n",
              grants.calls_per_second, kHydraGrants, grants.calls_per_second / kHydraGrants);
  std::printf("IntrospectToken           : %8.0f /s  (Hydra, 2 CPUs: %.0f /s; ratio %.2f; target 20000)\n",
              introspections.calls_per_second, kHydraIntrospections,
              introspections.calls_per_second / kHydraIntrospections);
  child->process->Signal(SIGTERM);
  child->process->Wait(absl::Seconds(30));
  return 0;
}
