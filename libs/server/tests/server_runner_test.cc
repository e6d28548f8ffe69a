#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "cloudflux/diagnostics/v1/diagnostics.grpc.pb.h"
#include "cloudflux/metrics/metrics.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/server/grpc_status.h"
#include "cloudflux/server/server_runner.h"
#include "cloudflux/testing/testing.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace cloudflux::server {
namespace {

using cloudflux::diagnostics::v1::Diagnostics;
using cloudflux::diagnostics::v1::EchoRequest;
using cloudflux::diagnostics::v1::EchoResponse;
using cloudflux::diagnostics::v1::GetServerInfoRequest;
using cloudflux::diagnostics::v1::GetServerInfoResponse;
using google::protobuf::util::TimeUtil;

ServerOptions TestOptions() {
  ServerOptions o;
  o.service_name = "test";
  o.listen_address = "127.0.0.1:0";
  o.health_check_interval = absl::Milliseconds(20);
  o.shutdown_grace = absl::Seconds(5);
  o.access_log = AccessLog::kErrors;
  return o;
}

class RunnerTest : public ::testing::Test {
 protected:
  void StartRunner(ServerOptions options = TestOptions()) {
    runner_ = std::make_unique<ServerRunner>(options, registry_);
    for (auto& f : setup_) f(*runner_);
    ASSERT_TRUE(runner_->Start().ok());
    channel_ = MakeChannel("127.0.0.1:" + std::to_string(runner_->port()));
    diag_ = Diagnostics::NewStub(channel_);
  }

  grpc::Status Echo(const std::string& payload, absl::Duration delay, EchoResponse* out,
                    absl::Duration timeout = absl::Seconds(5),
                    const std::string& authorization = "") {
    EchoRequest req;
    req.set_payload(payload);
    *req.mutable_delay() = TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(delay));
    grpc::ClientContext ctx;
    if (timeout != absl::InfiniteDuration()) {
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    }
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    return diag_->Echo(&ctx, req, out);
  }

  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::vector<std::function<void(ServerRunner&)>> setup_;
  std::unique_ptr<ServerRunner> runner_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Diagnostics::Stub> diag_;
};

TEST_F(RunnerTest, EchoRoundTripAndInvalidDelay) {
  StartRunner();
  EchoResponse resp;
  ASSERT_TRUE(Echo("hello", absl::ZeroDuration(), &resp).ok());
  EXPECT_EQ(resp.payload(), "hello");
  grpc::Status bad = Echo("x", absl::Hours(1), &resp);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(bad.error_message(), "delay must be between"));
}

TEST_F(RunnerTest, HealthFollowsDependencies) {
  std::atomic<bool> db_up{true};
  setup_.push_back([&](ServerRunner& r) {
    r.AddDependency("postgres", [&](absl::Duration) {
      return db_up ? absl::OkStatus() : absl::UnavailableError("connection refused");
    });
  });
  StartRunner();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  auto status_of = [&](const std::string& service) {
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    grpc::Status s = health->Check(&ctx, req, &resp);
    return s.ok() ? resp.status() : grpc::health::v1::HealthCheckResponse::UNKNOWN;
  };
  EXPECT_EQ(status_of(""), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(status_of("cloudflux.diagnostics.v1.Diagnostics"),
            grpc::health::v1::HealthCheckResponse::SERVING);

  db_up = false;
  EXPECT_TRUE(testing::WaitFor(
      [&] { return status_of("") == grpc::health::v1::HealthCheckResponse::NOT_SERVING; },
      absl::Seconds(5)));
  EXPECT_FALSE(runner_->serving());
  GetServerInfoResponse info;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(diag_->GetServerInfo(&ctx, GetServerInfoRequest(), &info).ok());
  }
  ASSERT_EQ(info.dependencies_size(), 1);
  EXPECT_FALSE(info.dependencies(0).healthy());
  EXPECT_EQ(info.dependencies(0).last_error(), "connection refused");
  EXPECT_NE(metrics::Serialize(*registry_).find("cloudflux_dependency_up{dependency=\"postgres\"} 0"),
            std::string::npos);

  db_up = true;
  EXPECT_TRUE(testing::WaitFor(
      [&] { return status_of("") == grpc::health::v1::HealthCheckResponse::SERVING; },
      absl::Seconds(5)));
}

TEST_F(RunnerTest, MetricsUseGoGrpcPrometheusLabels) {
  StartRunner();
  EchoResponse resp;
  ASSERT_TRUE(Echo("a", absl::ZeroDuration(), &resp).ok());
  ASSERT_FALSE(Echo("a", absl::Hours(2), &resp).ok());
  std::string text = metrics::Serialize(*registry_);
  EXPECT_TRUE(absl::StrContains(
      text,
      "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Echo\",grpc_service=\"cloudflux."
      "diagnostics.v1.Diagnostics\",grpc_type=\"unary\"} 1"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc_code=\"InvalidArgument\",grpc_method=\"Echo\""));
  EXPECT_TRUE(absl::StrContains(
      text,
      "grpc_server_handling_seconds_count{grpc_method=\"Echo\",grpc_service=\"cloudflux."
      "diagnostics.v1.Diagnostics\",grpc_type=\"unary\"} 2"));
  EXPECT_TRUE(absl::StrContains(text, "grpc_server_started_total{grpc_method=\"Echo\""));
}

TEST_F(RunnerTest, CallsWithoutDeadlineGetTheDefaultOne) {
  ServerOptions options = TestOptions();
  options.default_deadline = absl::Milliseconds(200);
  StartRunner(options);
  EchoResponse resp;
  absl::Time start = absl::Now();
  grpc::Status s = Echo("x", absl::Seconds(10), &resp, absl::InfiniteDuration());
  EXPECT_FALSE(s.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // A client deadline shorter than the delay is honoured too.
  start = absl::Now();
  s = Echo("x", absl::Seconds(10), &resp, absl::Milliseconds(100));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return absl::StrContains(metrics::Serialize(*registry_),
                                 "grpc_code=\"Canceled\",grpc_method=\"Echo\"");
      },
      absl::Seconds(5)));
}

TEST_F(RunnerTest, GracefulShutdownLetsInFlightCallsFinish) {
  StartRunner();
  std::atomic<bool> done{false};
  grpc::Status slow_status;
  std::thread slow([&] {
    EchoResponse resp;
    slow_status = Echo("slow", absl::Milliseconds(700), &resp);
    done = true;
  });
  // Wait until the slow call is in flight on the server.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return absl::StrContains(metrics::Serialize(*registry_),
                                 "grpc_server_started_total{grpc_method=\"Echo\"");
      },
      absl::Seconds(5)));
  runner_->Shutdown();  // blocks until the call has drained
  EXPECT_TRUE(done.load());
  slow.join();
  EXPECT_TRUE(slow_status.ok()) << slow_status.error_message();
  EchoResponse resp;
  EXPECT_FALSE(Echo("after", absl::ZeroDuration(), &resp, absl::Milliseconds(300)).ok());
}

// Admits "Bearer good" as alice/viewer, refuses everything else.
class TokenAuthenticator : public Authenticator {
 public:
  absl::StatusOr<Principal> Authenticate(std::string_view method,
                                         const RequestMetadata& metadata) override {
    methods_seen.fetch_add(1);
    auto it = metadata.find("authorization");
    if (it == metadata.end()) return absl::UnauthenticatedError("missing bearer token");
    if (it->second != "Bearer good") return absl::UnauthenticatedError("invalid token");
    if (method == "/cloudflux.diagnostics.v1.Diagnostics/Echo") {
      return absl::PermissionDeniedError("viewer may not call Echo");
    }
    return Principal{"alice", {"viewer"}, "jti-1"};
  }
  std::atomic<int> methods_seen{0};
};

TEST_F(RunnerTest, AuthenticatorGatesEveryMethodButHealthAndReflection) {
  auto auth = std::make_shared<TokenAuthenticator>();
  setup_.push_back([&](ServerRunner& r) { r.SetAuthenticator(auth); });
  StartRunner();

  GetServerInfoResponse info;
  {
    grpc::ClientContext ctx;
    grpc::Status s = diag_->GetServerInfo(&ctx, GetServerInfoRequest(), &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(s.error_message(), "missing bearer token");
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer good");
    ctx.AddMetadata("x-request-id", "req-42");
    ASSERT_TRUE(diag_->GetServerInfo(&ctx, GetServerInfoRequest(), &info).ok());
    EXPECT_EQ(info.caller_subject(), "alice");
    ASSERT_EQ(info.caller_roles_size(), 1);
    EXPECT_EQ(info.caller_roles(0), "viewer");
    EXPECT_EQ(info.request_id(), "req-42");
    auto echoed = ctx.GetServerInitialMetadata().find("x-request-id");
    ASSERT_NE(echoed, ctx.GetServerInitialMetadata().end());
    EXPECT_EQ(std::string(echoed->second.data(), echoed->second.size()), "req-42");
  }
  EchoResponse resp;
  EXPECT_EQ(Echo("x", absl::ZeroDuration(), &resp, absl::Seconds(5), "Bearer good").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  int seen_before_health = auth->methods_seen.load();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckResponse hr;
  grpc::ClientContext ctx;
  EXPECT_TRUE(health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &hr).ok());
  EXPECT_EQ(auth->methods_seen.load(), seen_before_health) << "health must bypass the hook";

  std::string text = metrics::Serialize(*registry_);
  EXPECT_TRUE(absl::StrContains(text, "grpc_code=\"Unauthenticated\",grpc_method=\"GetServerInfo\""))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc_code=\"PermissionDenied\",grpc_method=\"Echo\""));
}

TEST_F(RunnerTest, NothingLeaksBetweenCallsOnOneConnection) {
  auto auth = std::make_shared<TokenAuthenticator>();
  setup_.push_back([&](ServerRunner& r) { r.SetAuthenticator(auth); });
  StartRunner();
  for (int i = 0; i < 3; ++i) {
    GetServerInfoResponse info;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer good");
    ctx.AddMetadata("x-request-id", "req-" + std::to_string(i));
    ASSERT_TRUE(diag_->GetServerInfo(&ctx, GetServerInfoRequest(), &info).ok());
    EXPECT_EQ(info.request_id(), "req-" + std::to_string(i));
    EXPECT_EQ(info.caller_roles_size(), 1);
  }
}

TEST_F(RunnerTest, MintsRequestIdsWhenTheClientSendsNone) {
  StartRunner();
  GetServerInfoResponse info;
  grpc::ClientContext ctx;
  ASSERT_TRUE(diag_->GetServerInfo(&ctx, GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.request_id().size(), 36u);
  EXPECT_EQ(info.service(), "test");
  EXPECT_TRUE(info.serving());
}

TEST_F(RunnerTest, OversizedMessagesAreRefused) {
  ServerOptions options = TestOptions();
  options.max_receive_message_bytes = 1024;
  StartRunner(options);
  EchoResponse resp;
  grpc::Status s = Echo(std::string(4096, 'x'), absl::ZeroDuration(), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Echo(std::string(512, 'x'), absl::ZeroDuration(), &resp).ok());
}

TEST_F(RunnerTest, BindFailureIsAnError) {
  StartRunner();
  ServerOptions options = TestOptions();
  options.listen_address = "127.0.0.1:" + std::to_string(runner_->port());
  ServerRunner second(options, nullptr);
  absl::Status s = second.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
}

TEST(Channel, RetryConfigAndContextDeadline) {
  ChannelOptions options;
  std::string json = RetryServiceConfig(options);
  EXPECT_TRUE(absl::StrContains(json, "\"maxAttempts\":4"));
  EXPECT_TRUE(absl::StrContains(json, "UNAVAILABLE"));
  options.max_attempts = 1;
  EXPECT_EQ(RetryServiceConfig(options), "{}");
  auto ctx = MakeClientContext(absl::Seconds(3));
  EXPECT_LT(ctx->deadline(), absl::ToChronoTime(absl::Now() + absl::Seconds(4)));
}

TEST(GrpcStatus, CodesRoundTrip) {
  grpc::Status g = ToGrpcStatus(absl::NotFoundError("no such job"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), "no such job");
  EXPECT_EQ(FromGrpcStatus(g).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace cloudflux::server
