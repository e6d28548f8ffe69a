#include "cloudflux/server/server_runner.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/gauge.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/process.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/server/shutdown.h"
#include "diagnostics_service.h"
#include "internal.h"

namespace cloudflux::server {

class ServerRunner::Impl {
 public:
  struct Dependency {
    std::string name;
    DependencyCheck check;
    DependencyStatus status;
    prometheus::Gauge* up = nullptr;
  };

  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<internal::GrpcMetrics> metrics;
  std::vector<std::pair<grpc::Service*, std::string>> services;
  std::shared_ptr<Authenticator> authenticator;
  std::unique_ptr<internal::DiagnosticsService> diagnostics;
  std::unique_ptr<grpc::Server> server;
  internal::InFlight in_flight;

  mutable std::mutex mu;  // guards deps' status, stop, shut_down
  std::condition_variable cv;
  std::vector<Dependency> deps;
  bool stop = false;
  bool shut_down = false;
  bool last_serving = false;
  bool first_update = true;
  std::thread monitor;
};

ServerRunner::ServerRunner(ServerOptions options, std::shared_ptr<prometheus::Registry> registry)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  impl_->registry = std::move(registry);
  if (impl_->registry != nullptr) {
    impl_->metrics = std::make_unique<internal::GrpcMetrics>(*impl_->registry);
    prometheus::BuildGauge()
        .Name("cloudflux_build_info")
        .Help("Service name and version of this binary; always 1.")
        .Register(*impl_->registry)
        .Add({{"service", options_.service_name}, {"version", options_.version}})
        .Set(1);
  }
}

ServerRunner::~ServerRunner() { Shutdown(); }

void ServerRunner::RegisterService(grpc::Service* service, std::string full_name) {
  impl_->services.emplace_back(service, std::move(full_name));
}

void ServerRunner::AddDependency(std::string name, DependencyCheck check, bool required) {
  Impl::Dependency dep;
  dep.status.name = name;
  dep.status.required = required;
  dep.name = std::move(name);
  dep.check = std::move(check);
  if (impl_->registry != nullptr) {
    dep.up = &prometheus::BuildGauge()
                  .Name("cloudflux_dependency_up")
                  .Help("1 while the dependency's health check passes, 0 otherwise.")
                  .Register(*impl_->registry)
                  .Add({{"dependency", dep.name}});
  }
  impl_->deps.push_back(std::move(dep));
}

void ServerRunner::SetAuthenticator(std::shared_ptr<Authenticator> authenticator) {
  impl_->authenticator = std::move(authenticator);
}

std::vector<DependencyStatus> ServerRunner::dependencies() const {
  std::lock_guard lock(impl_->mu);
  std::vector<DependencyStatus> out;
  for (const auto& d : impl_->deps) out.push_back(d.status);
  return out;
}

void ServerRunner::CheckDependencies() {
  // Checks run without the lock so a slow one does not block readers.
  std::vector<std::pair<std::string, DependencyCheck>> checks;
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& d : impl_->deps) checks.emplace_back(d.name, d.check);
  }
  std::vector<absl::Status> results;
  for (auto& [name, check] : checks) {
    absl::Status s = check(options_.dependency_check_timeout);
    results.push_back(s);
  }
  bool all_ok = true;
  std::lock_guard lock(impl_->mu);
  if (impl_->shut_down) return;
  for (size_t i = 0; i < results.size(); ++i) {
    auto& d = impl_->deps[i];
    bool ok = results[i].ok();
    all_ok = all_ok && (ok || !d.status.required);
    if (ok != d.status.healthy || impl_->first_update) {
      if (ok) {
        core::LogInfo("dependency healthy", {{"dependency", d.name}});
      } else {
        core::LogWarn("dependency unhealthy",
                      {{"dependency", d.name}, {"error", std::string(results[i].message())}});
      }
    }
    d.status.healthy = ok;
    d.status.last_error = ok ? "" : std::string(results[i].message());
    d.status.last_checked = absl::Now();
    if (d.up != nullptr) d.up->Set(ok ? 1 : 0);
  }
  if (all_ok != impl_->last_serving || impl_->first_update) {
    auto* health = impl_->server->GetHealthCheckService();
    health->SetServingStatus(all_ok);
    core::LogInfo(all_ok ? "health SERVING" : "health NOT_SERVING");
  }
  impl_->last_serving = all_ok;
  impl_->first_update = false;
  serving_.store(all_ok);
}

absl::Status ServerRunner::Start() {
  if (impl_->server != nullptr) return absl::FailedPreconditionError("server already started");
  core::TuneProcessForServing();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  impl_->diagnostics = std::make_unique<internal::DiagnosticsService>(
      &options_, core::NewId(), absl::Now(), [this] { return serving(); },
      [this] { return dependencies(); });

  auto hook = std::make_shared<internal::AuthHookConfig>();
  hook->authenticator = impl_->authenticator;
  internal::GrpcMetrics* metrics = impl_->metrics.get();
  const ServerOptions* options = &options_;
  hook->on_rejected = [metrics, options](std::string_view method, std::string_view request_id,
                                         const absl::Status& status) {
    auto code = static_cast<grpc::StatusCode>(status.code());
    if (metrics != nullptr) {
      auto& m = metrics->For(method, internal::MethodTypeFromDescriptor(method));
      m.started->Increment();
      metrics->Handled(m, code, 0);
    }
    if (options->access_log != AccessLog::kNone) {
      core::LogWarn("rpc", {{"method", std::string(method)},
                            {"code", internal::CodeName(code)},
                            {"request_id", std::string(request_id)},
                            {"error", std::string(status.message())}});
    }
  };

  grpc::ServerBuilder builder;
  // Without an authenticator there is nothing for the hook to do: skip gRPC's
  // per-call auth filter altogether.
  builder.AddListeningPort(options_.listen_address,
                           impl_->authenticator != nullptr || options_.tls.enabled()
                               ? internal::MakeHookedCredentials(hook, options_.tls)
                               : grpc::InsecureServerCredentials(),
                           &port_);
  builder.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_send_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A second process on the same port must fail to start, not share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Accept client keepalive pings as often as every 10 s.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  if (options_.http2_stream_window_bytes > 0) {
    builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, options_.http2_stream_window_bytes);
  }

  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(
      internal::MakeCallInterceptorFactory(impl_->metrics.get(), &options_, impl_->authenticator,
                                           &impl_->in_flight));
  builder.experimental().SetInterceptorCreators(std::move(creators));

  builder.RegisterService(impl_->diagnostics.get());
  for (auto& [service, name] : impl_->services) builder.RegisterService(service);

  impl_->server = builder.BuildAndStart();
  if (impl_->server == nullptr || port_ == 0) {
    impl_->server.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen_address, " (address in use?)"));
  }
  auto* health = impl_->server->GetHealthCheckService();
  health->SetServingStatus("", false);
  health->SetServingStatus(cloudflux::diagnostics::v1::Diagnostics::service_full_name(), false);
  for (auto& [service, name] : impl_->services) health->SetServingStatus(name, false);
  CheckDependencies();
  impl_->monitor = std::thread([this] {
    std::unique_lock lock(impl_->mu);
    while (!impl_->stop) {
      impl_->cv.wait_for(lock, absl::ToChronoMilliseconds(options_.health_check_interval));
      if (impl_->stop) break;
      lock.unlock();
      CheckDependencies();
      lock.lock();
    }
  });
  core::LogInfo("serving", {{"address", options_.listen_address},
                            {"port", absl::StrCat(port_)},
                            {"version", options_.version}});
  return absl::OkStatus();
}

void ServerRunner::Shutdown() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->shut_down || impl_->server == nullptr) return;
    impl_->shut_down = true;
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->monitor.joinable()) impl_->monitor.join();
  serving_.store(false);
  // Every health entry NOT_SERVING from now on, whatever the checks say.
  impl_->server->GetHealthCheckService()->Shutdown();
  core::LogInfo("shutting down", {{"grace", absl::FormatDuration(options_.shutdown_grace)}});
  if (options_.shutdown_delay > absl::ZeroDuration()) absl::SleepFor(options_.shutdown_delay);
  // gRPC's Shutdown(deadline) refuses new calls and waits for in-flight ones,
  // but also for every client connection to close, which idle clients may
  // not do before the deadline. So: once our in-flight calls are done, close
  // the connections (cancelling nothing that is still running).
  absl::Time deadline = absl::Now() + options_.shutdown_grace;
  std::atomic<bool> shut{false};
  std::thread shutdown([&] {
    impl_->server->Shutdown(absl::ToChronoTime(deadline));
    shut = true;
  });
  while (!shut && impl_->in_flight.calls.load() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  core::LogInfo("calls drained", {{"still_running", std::to_string(impl_->in_flight.calls.load())}});
  while (!shut) {
    grpc_server_cancel_all_calls(impl_->server->c_server());
    absl::SleepFor(absl::Milliseconds(20));
  }
  shutdown.join();
  impl_->server->Wait();
  core::LogInfo("stopped");
}

absl::Status ServerRunner::Run() {
  if (impl_->server == nullptr) {
    absl::Status s = Start();
    if (!s.ok()) return s;
  }
  int sig = WaitForShutdownSignal();
  core::LogInfo("signal received", {{"signal", sig == 15 ? "SIGTERM" : "SIGINT"}});
  Shutdown();
  return absl::OkStatus();
}

}  // namespace cloudflux::server
