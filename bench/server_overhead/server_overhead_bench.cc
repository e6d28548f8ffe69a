// Unary round-trip rate of a server built with ServerRunner (metrics, access
// log, default deadline, request ids, authentication hook all on) against a
// plain grpc++ callback server with the same Echo handler, over loopback, in
// the same run. Each server runs in its own child process; the load
// generator (gRPC callback client, --channels x --depth calls outstanding)
// runs in this process. Rounds alternate plain/runner and the medians are
// compared.
//
//   server_overhead_bench [--rounds=3] [--seconds=5] [--channels=4] [--depth=16]
//                         [--payload=64] [--access_log=all|errors|none] [--auth_hook=false]

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "bench/common/closed_loop.h"
#include "cloudflux/core/config.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/process.h"
#include "cloudflux/diagnostics/v1/diagnostics.grpc.pb.h"
#include "cloudflux/server/server_runner.h"
#include "cloudflux/server/shutdown.h"
#include "cloudflux/testing/testing.h"
#include "prometheus/registry.h"

ABSL_FLAG(int32_t, rounds, 3, "Rounds per server kind.");
ABSL_FLAG(int32_t, seconds, 5, "Measured seconds per round (after 1 s of warm-up).");
ABSL_FLAG(int32_t, channels, 4, "Client channels (connections).");
ABSL_FLAG(int32_t, depth, 16, "Outstanding calls per channel.");
ABSL_FLAG(int32_t, payload, 64, "Echo payload bytes.");
ABSL_FLAG(std::string, access_log, "all", "Runner access log: all, errors, none.");
ABSL_FLAG(bool, auth_hook, false, "Install a (trivial) authenticator on the runner server.");
ABSL_FLAG(std::string, serve, "", "Internal: run a server of this kind (plain|runner).");
ABSL_FLAG(int32_t, port, 0, "Internal: port for --serve.");
ABSL_FLAG(int32_t, load_port, 0, "Only generate load against 127.0.0.1:<port> (for profiling).");

namespace {

using cloudflux::diagnostics::v1::Diagnostics;
using cloudflux::diagnostics::v1::EchoRequest;
using cloudflux::diagnostics::v1::EchoResponse;

// The plain server's handler: the same work as Diagnostics.Echo with no delay.
class PlainEcho final : public Diagnostics::CallbackService {
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context, const EchoRequest* request,
                                 EchoResponse* response) override {
    auto* reactor = context->DefaultReactor();
    if (request->delay().seconds() != 0 || request->delay().nanos() != 0) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no delay here"));
      return reactor;
    }
    response->set_payload(request->payload());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// Admits calls carrying the benchmark's bearer token.
class StaticTokenAuthenticator final : public cloudflux::server::Authenticator {
 public:
  absl::StatusOr<cloudflux::server::Principal> Authenticate(
      std::string_view method, const cloudflux::server::RequestMetadata& metadata) override {
    auto it = metadata.find("authorization");
    if (it == metadata.end() || it->second != "Bearer bench") {
      return absl::UnauthenticatedError("missing token");
    }
    return cloudflux::server::Principal{"bench", {"admin"}, "t"};
  }
};

int Serve(const std::string& kind, int port) {
  cloudflux::server::BlockShutdownSignals();
  std::string address = absl::StrFormat("127.0.0.1:%d", port);
  // Both servers get the same process settings, so that only the runner's
  // own work is compared.
  cloudflux::core::TuneProcessForServing();
  if (kind == "plain") {
    PlainEcho service;
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address, grpc::InsecureServerCredentials());
    builder.RegisterService(&service);
    auto server = builder.BuildAndStart();
    if (!server) return 1;
    cloudflux::server::WaitForShutdownSignal();
    server->Shutdown();
    return 0;
  }
  cloudflux::core::InitLogging("bench");
  cloudflux::server::ServerOptions options;
  options.service_name = "bench";
  options.listen_address = address;
  std::string access = absl::GetFlag(FLAGS_access_log);
  options.access_log = access == "none"     ? cloudflux::server::AccessLog::kNone
                       : access == "errors" ? cloudflux::server::AccessLog::kErrors
                                            : cloudflux::server::AccessLog::kAll;
  cloudflux::server::ServerRunner runner(options, std::make_shared<prometheus::Registry>());
  if (absl::GetFlag(FLAGS_auth_hook)) runner.SetAuthenticator(std::make_shared<StaticTokenAuthenticator>());
  runner.AddDependency("none", [](absl::Duration) { return absl::OkStatus(); });
  return runner.Run().ok() ? 0 : 1;
}

pid_t SpawnServer(const char* self, const std::string& kind, int port) {
  pid_t pid = fork();
  if (pid == 0) {
    // The server's JSON access log goes to /dev/null: formatting and writing
    // it is still paid for.
    freopen("/dev/null", "w", stdout);
    std::string serve = "--serve=" + kind, p = absl::StrFormat("--port=%d", port);
    std::string access = "--access_log=" + absl::GetFlag(FLAGS_access_log);
    std::string auth = absl::GetFlag(FLAGS_auth_hook) ? "--auth_hook=true" : "--auth_hook=false";
    execl(self, self, serve.c_str(), p.c_str(), access.c_str(), auth.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

double MeasureRound(int port) {
  int channels = absl::GetFlag(FLAGS_channels);
  std::string target = absl::StrFormat("127.0.0.1:%d", port);
  std::vector<std::unique_ptr<Diagnostics::Stub>> stubs;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("cloudflux.bench.channel", c);  // distinct connections
    auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      std::cerr << "cannot connect to " << target << "\n";
      std::exit(1);
    }
    stubs.push_back(Diagnostics::NewStub(channel));
  }
  EchoRequest request;
  request.set_payload(std::string(absl::GetFlag(FLAGS_payload), 'x'));
  std::atomic<int> next{0};
  auto result = cloudflux::bench::RunClosedLoop(
      [&](std::function<void(const grpc::Status&)> done) {
        struct Call {
          grpc::ClientContext ctx;
          EchoResponse response;
        };
        auto* call = new Call();
        call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        call->ctx.AddMetadata("authorization", "Bearer bench");
        stubs[next.fetch_add(1) % stubs.size()]->async()->Echo(
            &call->ctx, &request, &call->response, [call, done](grpc::Status s) {
              delete call;
              done(s);
            });
      },
      channels * absl::GetFlag(FLAGS_depth), absl::GetFlag(FLAGS_seconds));
  if (result.errors > 0) {
    std::cerr << result.errors << " calls failed: " << result.first_error.error_message() << "\n";
    std::exit(1);
  }
  return result.calls_per_second;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  cloudflux::core::ParseFlags(argc, argv, "gRPC server overhead benchmark");
  if (!absl::GetFlag(FLAGS_serve).empty()) return Serve(absl::GetFlag(FLAGS_serve), absl::GetFlag(FLAGS_port));

  if (absl::GetFlag(FLAGS_load_port) != 0) {
    std::printf("%.0f calls/s\n", MeasureRound(absl::GetFlag(FLAGS_load_port)));
    return 0;
  }
  std::vector<double> plain, runner;
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    for (const std::string kind : {"plain", "runner"}) {
      int port = cloudflux::testing::PickFreePort();
      pid_t pid = SpawnServer(argv[0], kind, port);
      double rate = MeasureRound(port);
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
      (kind == "plain" ? plain : runner).push_back(rate);
      std::printf("round %d %-6s %10.0f calls/s\n", round + 1, kind.c_str(), rate);
      std::fflush(stdout);
    }
  }
  double p = Median(plain), r = Median(runner);
  std::printf("\nmedian plain grpc++ callback server : %10.0f calls/s\n", p);
  std::printf("median ServerRunner (all on)         : %10.0f calls/s\n", r);
  std::printf("ratio runner/plain                   : %10.3f\n", r / p);
  return 0;
}
