#pragma once
// Black-box test helpers: start a service binary on free loopback ports
// against the test servers, probe its health, scrape its metrics.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/testing/testing.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace cloudflux {


using grpc::health::v1::HealthCheckResponse;
using testing::ChildProcess;
using testing::WaitFor;

struct Service {
  std::unique_ptr<ChildProcess> process;
  int port = 0;
  int metrics_port = 0;
  std::string target() const { return "127.0.0.1:" + std::to_string(port); }
};

// Master key and bootstrap admin password files for the auth service.
inline std::map<std::string, std::string> AuthSecretsEnv() {
  std::string dir = ::testing::TempDir();
  std::string key = dir + "/cloudflux-master.key", password = dir + "/cloudflux-admin.password";
  FILE* f = fopen(key.c_str(), "w");
  fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", f);
  fclose(f);
  f = fopen(password.c_str(), "w");
  fputs("correct horse battery staple\n", f);
  fclose(f);
  return {{"CLOUDFLUX_MASTER_KEY_FILE", key}, {"CLOUDFLUX_BOOTSTRAP_ADMIN_PASSWORD_FILE", password}};
}

// Starts `name` against `pg_url` and the test broker/redis.
inline Service StartService(const std::string& name, const std::string& pg_url,
                     std::map<std::string, std::string> extra_env = {}) {
  Service s;
  s.port = testing::PickFreePort();
  s.metrics_port = testing::PickFreePort();
  std::map<std::string, std::string> env = {
      {"CLOUDFLUX_LISTEN_ADDRESS", "127.0.0.1:" + std::to_string(s.port)},
      {"CLOUDFLUX_METRICS_ADDRESS", "127.0.0.1:" + std::to_string(s.metrics_port)},
      {"CLOUDFLUX_PG_URL", pg_url},
      {"CLOUDFLUX_KAFKA_BROKERS", testing::TestKafkaBootstrap().value_or("")},
      {"CLOUDFLUX_REDIS_ADDRESS", testing::TestRedisAddress().value_or("")},
      {"CLOUDFLUX_HEALTH_CHECK_INTERVAL", "100ms"},
      {"CLOUDFLUX_STARTUP_TIMEOUT", "20s"},
      {"CLOUDFLUX_DATA_DIR",
       ::testing::TempDir() + "/data-" + name + "-" + std::to_string(s.port)},
  };
  if (name == "auth") {
    for (auto& [k, v] : AuthSecretsEnv()) env[k] = v;
  } else {
    env["CLOUDFLUX_INSECURE_NO_AUTH"] = "true";  // these tests are about the runner, not tokens
  }
  for (auto& [k, v] : extra_env) env[k] = v;
  auto child = ChildProcess::Start(
      {absl::StrCat(testing::BinaryDir(), "/services/", name, "/cloudflux-", name)}, env);
  EXPECT_TRUE(child.ok()) << child.status();
  s.process = std::move(*child);
  return s;
}

inline HealthCheckResponse::ServingStatus Health(const std::string& target) {
  server::ChannelOptions o;
  o.max_attempts = 1;
  o.max_reconnect_backoff = absl::Milliseconds(200);
  // A fresh channel per probe, like a kubelet probe: no reconnect backoff.
  auto stub = grpc::health::v1::Health::NewStub(server::MakeChannel(target, o));
  auto ctx = server::MakeClientContext(absl::Milliseconds(500));
  HealthCheckResponse resp;
  grpc::Status s = stub->Check(ctx.get(), {}, &resp);
  return s.ok() ? resp.status() : HealthCheckResponse::UNKNOWN;
}

inline bool WaitForHealth(const Service& s, HealthCheckResponse::ServingStatus want,
                   absl::Duration timeout = absl::Seconds(30)) {
  return WaitFor([&] { return Health(s.target()) == want; }, timeout, absl::Milliseconds(50));
}

inline std::string Metrics(const Service& s) {
  return testing::HttpGet(absl::StrCat("http://127.0.0.1:", s.metrics_port, "/metrics"))
      .value_or("");
}

}  // namespace cloudflux
