// Starts real service binaries and talks to them like a client would.
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/auth/v1/auth.grpc.pb.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/diagnostics/v1/diagnostics.grpc.pb.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/testing/testing.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "service_process.h"

namespace cloudflux {
namespace {

using testing::ChildProcess;
using testing::WaitFor;
using grpc::health::v1::HealthCheckResponse;

TEST(ServiceBinary, HealthFollowsPostgresAndSigtermDrainsInFlightCalls) {
  auto pg = testing::PostgresProcess::Create();
  ASSERT_TRUE(pg.ok()) << pg.status();
  Service svc = StartService("classification", (*pg)->url(),
                             {{"CLOUDFLUX_SHUTDOWN_DELAY", "300ms"},
                              {"CLOUDFLUX_SHUTDOWN_GRACE", "10s"}});
  ASSERT_TRUE(WaitForHealth(svc, HealthCheckResponse::SERVING)) << svc.process->Output();

  // Postgres goes away: NOT_SERVING; it comes back: SERVING again.
  ASSERT_TRUE((*pg)->Stop().ok());
  EXPECT_TRUE(WaitForHealth(svc, HealthCheckResponse::NOT_SERVING)) << svc.process->Output();
  EXPECT_TRUE(absl::StrContains(Metrics(svc), "cloudflux_dependency_up{dependency=\"postgres\"} 0"));
  ASSERT_TRUE((*pg)->Start().ok());
  EXPECT_TRUE(WaitForHealth(svc, HealthCheckResponse::SERVING)) << svc.process->Output();

  // A slow call is in flight when SIGTERM arrives: it finishes, then exit 0.
  auto stub = diagnostics::v1::Diagnostics::NewStub(server::MakeChannel(svc.target()));
  grpc::Status slow_status;
  diagnostics::v1::EchoResponse slow_response;
  std::atomic<bool> slow_done{false};
  std::thread slow([&] {
    diagnostics::v1::EchoRequest req;
    req.set_payload("slow");
    *req.mutable_delay() = google::protobuf::util::TimeUtil::MillisecondsToDuration(1500);
    auto ctx = server::MakeClientContext(absl::Seconds(20));
    slow_status = stub->Echo(ctx.get(), req, &slow_response);
    slow_done = true;
  });
  ASSERT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(Metrics(svc),
                                 "grpc_server_started_total{grpc_method=\"Echo\"");
      },
      absl::Seconds(10)));
  svc.process->Signal(SIGTERM);
  // While draining, health says NOT_SERVING (during --shutdown_delay).
  EXPECT_TRUE(WaitForHealth(svc, HealthCheckResponse::NOT_SERVING, absl::Seconds(2)));
  EXPECT_FALSE(slow_done.load());
  EXPECT_EQ(svc.process->Wait(absl::Seconds(20)), 0) << svc.process->Output();
  slow.join();
  EXPECT_TRUE(slow_status.ok()) << slow_status.error_message();
  EXPECT_EQ(slow_response.payload(), "slow");
  std::string log = svc.process->Output();
  EXPECT_TRUE(absl::StrContains(log, "\"msg\":\"rpc\",\"method\":\"/cloudflux.diagnostics.v1.Diagnostics/Echo\",\"code\":\"OK\""))
      << log;
  EXPECT_TRUE(absl::StrContains(log, "\"msg\":\"stopped\""));
}

// The auth service and another service with mutual TLS: clients need a
// certificate from the CA, the other service fetches the JWKS over mutual
// TLS and verifies a token issued over TLS; plaintext reaches neither.
TEST(ServiceBinary, ServicesServeAndCallEachOtherOverMutualTls) {
  const std::string dir = ::testing::TempDir() + "/service-tls-" + std::to_string(getpid());
  ASSERT_TRUE(testing::MakeTestCertificates(dir).ok());
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  std::map<std::string, std::string> tls = {{"CLOUDFLUX_TLS_CERT_FILE", dir + "/server.pem"},
                                            {"CLOUDFLUX_TLS_KEY_FILE", dir + "/server.key"},
                                            {"CLOUDFLUX_TLS_CA_FILE", dir + "/ca.pem"},
                                            {"CLOUDFLUX_TLS_REQUIRE_CLIENT_CERT", "true"}};
  server::ChannelOptions client;
  client.max_attempts = 1;
  client.tls.cert_file = dir + "/client.pem";
  client.tls.key_file = dir + "/client.key";
  client.tls.ca_file = dir + "/ca.pem";
  client.tls.server_name = "localhost";
  auto health = [&](const Service& s, const server::ChannelOptions& options) {
    auto stub = grpc::health::v1::Health::NewStub(server::MakeChannel(s.target(), options));
    auto ctx = server::MakeClientContext(absl::Milliseconds(500));
    HealthCheckResponse resp;
    return stub->Check(ctx.get(), {}, &resp).ok() && resp.status() == HealthCheckResponse::SERVING;
  };
  Service auth = StartService("auth", (*db)->url(), tls);
  ASSERT_TRUE(WaitFor([&] { return health(auth, client); }, absl::Seconds(30))) << auth.process->Output();
  auto other_env = tls;
  other_env["CLOUDFLUX_INSECURE_NO_AUTH"] = "false";
  other_env["CLOUDFLUX_AUTH_ADDRESS"] = "localhost:" + std::to_string(auth.port);
  Service other = StartService("classification", (*db)->url(), other_env);
  ASSERT_TRUE(WaitFor([&] { return health(other, client); }, absl::Seconds(30))) << other.process->Output();

  server::ChannelOptions plaintext;
  plaintext.max_attempts = 1;
  server::ChannelOptions no_client_cert = client;
  no_client_cert.tls.cert_file.clear();
  no_client_cert.tls.key_file.clear();
  server::ChannelOptions stranger = client;
  stranger.tls.cert_file = dir + "/stranger.pem";
  stranger.tls.key_file = dir + "/stranger.key";
  for (const Service* s : {&auth, &other}) {
    EXPECT_FALSE(health(*s, plaintext));
    EXPECT_FALSE(health(*s, no_client_cert));
    EXPECT_FALSE(health(*s, stranger));
  }

  auto auth_stub = auth::v1::AuthService::NewStub(server::MakeChannel(auth.target(), client));
  auth::v1::IssueTokenRequest req;
  req.set_grant_type("password");
  req.set_username("admin");
  req.set_password(testing::kTestAdminPassword);
  auth::v1::IssueTokenResponse token;
  auto ctx = server::MakeClientContext(absl::Seconds(10));
  ASSERT_TRUE(auth_stub->IssueToken(ctx.get(), req, &token).ok());
  auto diag = diagnostics::v1::Diagnostics::NewStub(server::MakeChannel(other.target(), client));
  auto call = server::MakeClientContext(absl::Seconds(10));
  call->AddMetadata("authorization", "Bearer " + token.access_token());
  diagnostics::v1::GetServerInfoResponse info;
  grpc::Status verified = diag->GetServerInfo(call.get(), {}, &info);
  EXPECT_TRUE(verified.ok()) << verified.error_message() << "\n" << other.process->Output();
  for (Service* s : {&other, &auth}) {
    s->process->Signal(SIGTERM);
    EXPECT_EQ(s->process->Wait(absl::Seconds(20)), 0);
  }
  // A certificate file that cannot be read stops a service at start.
  auto broken = tls;
  broken["CLOUDFLUX_TLS_KEY_FILE"] = dir + "/missing.key";
  Service refused = StartService("classification", (*db)->url(), broken);
  EXPECT_EQ(refused.process->Wait(absl::Seconds(20)), 1) << refused.process->Output();
  EXPECT_TRUE(absl::StrContains(refused.process->Output(), "missing.key")) << refused.process->Output();
}

TEST(ServiceBinary, MetricsShowCallsWithGoGrpcPrometheusLabels) {
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  Service svc = StartService("storage-adapter", (*db)->url());
  ASSERT_TRUE(WaitForHealth(svc, HealthCheckResponse::SERVING)) << svc.process->Output();
  auto stub = diagnostics::v1::Diagnostics::NewStub(server::MakeChannel(svc.target()));
  diagnostics::v1::GetServerInfoResponse info;
  auto ctx = server::MakeClientContext(absl::Seconds(5));
  ASSERT_TRUE(stub->GetServerInfo(ctx.get(), {}, &info).ok());
  EXPECT_EQ(info.service(), "storage-adapter");
  EXPECT_TRUE(info.serving());
  std::set<std::string> deps;
  for (const auto& d : info.dependencies()) {
    deps.insert(d.name());
    EXPECT_TRUE(d.healthy()) << d.name();
  }
  EXPECT_EQ(deps, (std::set<std::string>{"postgres", "kafka", "backends"}));
  std::string text = Metrics(svc);
  EXPECT_TRUE(absl::StrContains(
      text,
      "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"GetServerInfo\",grpc_service="
      "\"cloudflux.diagnostics.v1.Diagnostics\",grpc_type=\"unary\"} 1"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc_server_handling_seconds_bucket{grpc_method=\"GetServerInfo\""));
  EXPECT_TRUE(absl::StrContains(text, "process_resident_memory_bytes"));
  // The outbox relay's lease: this only replica publishes.
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(Metrics(svc), "cloudflux_outbox_lease_held{schema=\"storage\"} 1");
  }, absl::Seconds(10))) << Metrics(svc);
  svc.process->Signal(SIGTERM);
  EXPECT_EQ(svc.process->Wait(absl::Seconds(20)), 0);
}

TEST(ServiceBinary, ReflectionWorksForAnIndependentClient) {
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  Service svc = StartService("sandbox", (*db)->url());
  ASSERT_TRUE(WaitForHealth(svc, HealthCheckResponse::SERVING)) << svc.process->Output();
  std::string client = std::string(CLOUDFLUX_SOURCE_DIR) + "/tests/reflection/reflection_client.py";
  auto list = ChildProcess::Start({"/usr/bin/python3", client, svc.target(), "list"});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ((*list)->Wait(absl::Seconds(30)), 0) << (*list)->Output();
  std::string services = (*list)->Output();
  EXPECT_TRUE(absl::StrContains(services, "grpc.health.v1.Health"));
  EXPECT_TRUE(absl::StrContains(services, "grpc.reflection.v1alpha.ServerReflection"));
  EXPECT_TRUE(absl::StrContains(services, "cloudflux.diagnostics.v1.Diagnostics"));

  auto describe = ChildProcess::Start(
      {"/usr/bin/python3", client, svc.target(), "describe", "cloudflux.diagnostics.v1.Diagnostics"});
  ASSERT_TRUE(describe.ok());
  ASSERT_EQ((*describe)->Wait(absl::Seconds(30)), 0) << (*describe)->Output();
  EXPECT_TRUE(absl::StrContains((*describe)->Output(),
                                "rpc Echo(.cloudflux.diagnostics.v1.EchoRequest) returns "
                                "(.cloudflux.diagnostics.v1.EchoResponse)"));

  // cloudflux-call: JSON in, JSON out, for any method linked into it.
  const std::string call = testing::BinaryDir() + "/tools/call/cloudflux-call";
  auto run = [&](std::vector<std::string> argv) -> std::pair<int, std::string> {
    argv.insert(argv.begin(), call);
    auto p = ChildProcess::Start(argv);
    if (!p.ok()) return {-1, std::string(p.status().message())};
    int rc = (*p)->Wait(absl::Seconds(30));
    return {rc, (*p)->Output()};
  };
  auto [rc, out] = run({svc.target(), "cloudflux.diagnostics.v1.Diagnostics/Echo",
                        R"({"payload": "aGkAdGhlcmU=", "delay": "0.05s"})"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, R"("payload": "aGkAdGhlcmU=")")) << out;  // "hi\0there" back
  std::tie(rc, out) = run({svc.target(), "grpc.health.v1.Health/Check", "{}"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "SERVING")) << out;
  // A failed call: exit 1 and the status; bad input: exit 2 before calling.
  std::tie(rc, out) = run({svc.target(), "cloudflux.diagnostics.v1.Diagnostics/Echo",
                           R"({"delay": "5s"})", "--timeout=100ms"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_TRUE(absl::StrContains(out, "DEADLINE_EXCEEDED")) << out;
  EXPECT_EQ(run({svc.target(), "cloudflux.nothing.v1.X/Y", "{}"}).first, 2);
  EXPECT_EQ(run({svc.target(), "cloudflux.diagnostics.v1.Diagnostics/Echo", R"({"payload": 7})"}).first, 2);
  EXPECT_EQ(run({svc.target(), "cloudflux.diagnostics.v1.Diagnostics/Echo", "{} {}"}).first, 2);
  svc.process->Signal(SIGTERM);
  EXPECT_EQ(svc.process->Wait(absl::Seconds(20)), 0);
}

TEST(ServiceBinary, AllSevenStartTogetherOnOneDatabaseAndMigrateOnce) {
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  const std::vector<std::string> names = {"auth",      "storage-adapter", "classification",
                                          "prediction", "migration",       "sandbox",
                                          "neural-cluster"};
  std::vector<Service> services;
  // Two replicas of auth race on the same schema.
  for (const auto& n : names) services.push_back(StartService(n, (*db)->url()));
  services.push_back(StartService("auth", (*db)->url()));
  for (auto& s : services) {
    EXPECT_TRUE(WaitForHealth(s, HealthCheckResponse::SERVING)) << s.process->Output();
  }
  auto probe = ChildProcess::Start({testing::BinaryDir() + "/tools/health-probe/cloudflux-health-probe",
                                    services[0].target()});
  ASSERT_TRUE(probe.ok());
  EXPECT_EQ((*probe)->Wait(absl::Seconds(10)), 0);
  EXPECT_TRUE(absl::StrContains((*probe)->Output(), "SERVING"));
  for (auto& s : services) s.process->Signal(SIGTERM);
  for (auto& s : services) EXPECT_EQ(s.process->Wait(absl::Seconds(20)), 0) << s.process->Output();
}

TEST(ServiceBinary, BadConfigurationAndUnreachableDatabaseFailClearly) {
  auto bad = ChildProcess::Start(
      {testing::BinaryDir() + "/services/auth/cloudflux-auth"},
      {{"CLOUDFLUX_PG_POOL_SIZE", "0"}, {"CLOUDFLUX_LISTEN_ADDRESS", "nonsense"}});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ((*bad)->Wait(absl::Seconds(10)), 2);
  EXPECT_TRUE(absl::StrContains((*bad)->Output(), "--pg_pool_size (CLOUDFLUX_PG_POOL_SIZE)"))
      << (*bad)->Output();
  EXPECT_TRUE(absl::StrContains((*bad)->Output(), "--listen_address (CLOUDFLUX_LISTEN_ADDRESS)"));

  Service svc = StartService(
      "prediction", "host=127.0.0.1 port=" + std::to_string(testing::PickFreePort()) + " dbname=x",
      {{"CLOUDFLUX_STARTUP_TIMEOUT", "1s"}});
  EXPECT_EQ(svc.process->Wait(absl::Seconds(15)), 1);
  EXPECT_TRUE(absl::StrContains(svc.process->Output(), "PostgreSQL not reachable within 1s"))
      << svc.process->Output();
}

// Kafka client settings a real cluster needs (TLS, SASL) come from a file
// of librdkafka properties; a bad one stops the start with its name, and
// secrets never reach the log.
TEST(ServiceBinary, KafkaPropertiesComeFromAFileAndSecretsStayOutOfTheLog) {
  auto pg = testing::PostgresProcess::Create();
  ASSERT_TRUE(pg.ok()) << pg.status();
  // The prediction service started with `properties` as its file.
  auto start = [&](const std::string& properties) {
    const std::string path = ::testing::TempDir() + "/kafka-" + core::NewId() + ".properties";
    std::ofstream(path) << properties;
    return StartService("prediction", (*pg)->url(), {{"CLOUDFLUX_KAFKA_PROPERTIES_FILE", path}});
  };
  Service ok = start("# extra client settings\n\nsocket.keepalive.enable = true\nsasl.password=hunter2-secret\n");
  EXPECT_TRUE(WaitForHealth(ok, HealthCheckResponse::SERVING)) << ok.process->Output();
  ok.process->Signal(SIGTERM);
  EXPECT_EQ(ok.process->Wait(absl::Seconds(20)), 0);
  EXPECT_FALSE(absl::StrContains(ok.process->Output(), "hunter2")) << ok.process->Output();

  Service refused = start(
      "security.protocol=carrier-pigeon\nssl.key.password=hunter2-secret\nsasl.oauthbearer.bogus.secret=hunter3\n");
  EXPECT_EQ(refused.process->Wait(absl::Seconds(20)), 1);
  EXPECT_TRUE(absl::StrContains(refused.process->Output(), "sasl.oauthbearer.bogus.secret"))
      << refused.process->Output();
  EXPECT_FALSE(absl::StrContains(refused.process->Output(), "hunter")) << refused.process->Output();

  Service broken = start("socket.keepalive.enable=true\njust words\n");
  EXPECT_EQ(broken.process->Wait(absl::Seconds(20)), 1);
  EXPECT_TRUE(absl::StrContains(broken.process->Output(), "line 2: expected key=value"))
      << broken.process->Output();
}

}  // namespace
}  // namespace cloudflux
