#include <google/protobuf/descriptor.h>
#include <grpcpp/alarm.h>
#include <grpcpp/server_context.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/uuid.h"
#include "internal.h"

namespace cloudflux::server::internal {

std::pair<std::string, std::string> SplitMethod(std::string_view full_method) {
  if (full_method.starts_with('/')) full_method.remove_prefix(1);
  auto slash = full_method.find('/');
  if (slash == std::string_view::npos) return {std::string(full_method), "unknown"};
  return {std::string(full_method.substr(0, slash)), std::string(full_method.substr(slash + 1))};
}

std::string MethodType(grpc::experimental::ServerRpcInfo::Type type) {
  using Type = grpc::experimental::ServerRpcInfo::Type;
  switch (type) {
    case Type::UNARY: return "unary";
    case Type::CLIENT_STREAMING: return "client_stream";
    case Type::SERVER_STREAMING: return "server_stream";
    case Type::BIDI_STREAMING: return "bidi_stream";
  }
  return "unknown";
}

std::string MethodTypeFromDescriptor(std::string_view full_method) {
  auto [service, method] = SplitMethod(full_method);
  const auto* descriptor = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
      absl::StrCat(service, ".", method));
  if (descriptor == nullptr) return "unknown";
  if (descriptor->client_streaming() && descriptor->server_streaming()) return "bidi_stream";
  if (descriptor->client_streaming()) return "client_stream";
  if (descriptor->server_streaming()) return "server_stream";
  return "unary";
}

const char* CodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {
      "OK",      "Canceled",          "Unknown",          "InvalidArgument",    "DeadlineExceeded",
      "NotFound", "AlreadyExists",    "PermissionDenied", "ResourceExhausted",  "FailedPrecondition",
      "Aborted", "OutOfRange",        "Unimplemented",    "Internal",           "Unavailable",
      "DataLoss", "Unauthenticated"};
  int i = static_cast<int>(code);
  return (i >= 0 && i <= 16) ? kNames[i] : "Unknown";
}

GrpcMetrics::GrpcMetrics(prometheus::Registry& registry)
    : started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("Total number of RPCs started on the server.")
                   .Register(registry)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("Total number of RPCs completed on the server, regardless of success or "
                         "failure.")
                   .Register(registry)),
      handling_(prometheus::BuildHistogram()
                    .Name("grpc_server_handling_seconds")
                    .Help("Histogram of response latency (seconds) of gRPC that had been "
                          "application-level handled by the server.")
                    .Register(registry)) {}

GrpcMetrics::Method& GrpcMetrics::For(std::string_view full_method, const std::string& type) {
  std::string key = absl::StrCat(type, " ", std::string(full_method));
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = methods_.find(key);
    if (it != methods_.end()) return *it->second;
  }
  absl::MutexLock lock(&mu_);
  auto& slot = methods_[key];
  if (slot == nullptr) {
    auto m = std::make_unique<Method>();
    auto [service, method] = SplitMethod(full_method);
    m->type = type;
    m->service = service;
    m->method = method;
    std::map<std::string, std::string> labels = {
        {"grpc_type", type}, {"grpc_service", service}, {"grpc_method", method}};
    m->started = &started_.Add(labels);
    static const prometheus::Histogram::BucketBoundaries kBuckets = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    m->seconds = &handling_.Add(labels, kBuckets);
    slot = std::move(m);
  }
  return *slot;
}

void GrpcMetrics::Handled(Method& m, grpc::StatusCode code, double seconds) {
  int i = static_cast<int>(code);
  if (i < 0 || i > 16) i = static_cast<int>(grpc::StatusCode::UNKNOWN);
  prometheus::Counter* counter = m.handled[i].load(std::memory_order_acquire);
  if (counter == nullptr) {
    counter = &handled_.Add({{"grpc_type", m.type},
                             {"grpc_service", m.service},
                             {"grpc_method", m.method},
                             {"grpc_code", CodeName(static_cast<grpc::StatusCode>(i))}});
    m.handled[i].store(counter, std::memory_order_release);
  }
  counter->Increment();
  m.seconds->Observe(seconds);
}

namespace {

using Hook = grpc::experimental::InterceptionHookPoints;

// One per call; gRPC destroys it when the call ends.
class CallInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallInterceptor(grpc::experimental::ServerRpcInfo* info, GrpcMetrics* metrics,
                  const ServerOptions* options, Authenticator* authenticator, InFlight* in_flight)
      : info_(info),
        options_(options),
        authenticator_(authenticator),
        metrics_(metrics),
        start_(std::chrono::steady_clock::now()),
        method_(metrics ? &metrics->For(info->method(), MethodType(info->type())) : nullptr) {
    if (method_ != nullptr) method_->started->Increment();
    if (!IsAlwaysOpenMethod(info->method())) {
      in_flight_ = in_flight;
      in_flight_->calls.fetch_add(1);
    }
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_INITIAL_METADATA)) {
      auto* context = info_->server_context();
      RegisterCallFacts(*methods->GetRecvInitialMetadata());
      if (options_->default_deadline > absl::ZeroDuration() &&
          context->deadline() == std::chrono::system_clock::time_point::max()) {
        // No deadline from the client: cancel the call at the default one so
        // that nothing runs forever.
        alarm_ = std::make_unique<grpc::Alarm>();
        alarm_->Set(absl::ToChronoTime(absl::Now() + options_->default_deadline),
                   [context](bool fired) {
                     if (fired) context->TryCancel();
                   });
      }
    }
    if (methods->QueryInterceptionHookPoint(Hook::PRE_SEND_INITIAL_METADATA) &&
        !request_id_.empty()) {
      methods->GetSendInitialMetadata()->emplace(kRequestIdHeader, request_id_);
    }
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      request_unparsable_ = true;
    }
    if (methods->QueryInterceptionHookPoint(Hook::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      // gRPC answers a request body that does not parse as the method's
      // message with a bare UNIMPLEMENTED, as if the method did not exist:
      // tell the client what is wrong.
      if (request_unparsable_ && status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
          status.error_message().empty()) {
        status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "the request is not a valid message of this method's request type");
        methods->ModifySendStatus(status);
      }
      Finish(status.error_code(), status.error_message());
      finished_ = true;
    }
    methods->Proceed();
  }

  ~CallInterceptor() override {
    if (in_flight_ != nullptr) in_flight_->calls.fetch_sub(1);
    if (registered_) CallRegistry::Get().Erase(info_->server_context());
    // A call cancelled (by the client, a deadline or the default deadline)
    // never reaches PRE_SEND_STATUS; count it here.
    if (!finished_) {
      auto* context = info_->server_context();
      bool deadline = context->deadline() <= std::chrono::system_clock::now();
      Finish(deadline ? grpc::StatusCode::DEADLINE_EXCEEDED : grpc::StatusCode::CANCELLED,
             deadline ? "deadline exceeded" : "cancelled");
    }
  }

 private:
  // The request id (the client's, or a new one) and the principal. Calls the
  // authenticator a second time for admitted calls (the hook cannot hand its
  // result over); authenticators cache verified credentials, so this is cheap.
  void RegisterCallFacts(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
    CallFacts facts;
    auto it = metadata.find(kRequestIdHeader);
    if (it != metadata.end() && !it->second.empty() && it->second.size() <= kMaxRequestIdLength) {
      facts.request_id.assign(it->second.data(), it->second.size());
    } else {
      facts.request_id = core::NewId();
    }
    if (authenticator_ != nullptr && !IsAlwaysOpenMethod(info_->method())) {
      RequestMetadata md;
      for (const auto& [k, v] : metadata) {
        md.emplace(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()));
      }
      auto principal = authenticator_->Authenticate(info_->method(), md);
      if (principal.ok()) facts.principal = std::move(*principal);
    }
    request_id_ = facts.request_id;
    CallRegistry::Get().Put(info_->server_context(), std::move(facts));
    registered_ = true;
  }

  void Finish(grpc::StatusCode code, const std::string& message) {
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (method_ != nullptr) metrics_->Handled(*method_, code, seconds);
    bool log = options_->access_log == AccessLog::kAll ||
               (options_->access_log == AccessLog::kErrors && code != grpc::StatusCode::OK);
    if (!log) return;
    core::LogFields fields = {{"method", info_->method()},
                              {"code", CodeName(code)},
                              {"duration_ms", absl::StrCat(seconds * 1000.0)},
                              {"request_id", request_id_},
                              {"peer", info_->server_context()->peer()}};
    if (code != grpc::StatusCode::OK) fields.emplace_back("error", message);
    core::Log(code == grpc::StatusCode::OK || code == grpc::StatusCode::CANCELLED
                  ? core::LogLevel::kInfo
                  : core::LogLevel::kWarn,
              "rpc", fields);
  }

  grpc::experimental::ServerRpcInfo* info_;
  const ServerOptions* options_;
  Authenticator* authenticator_;
  GrpcMetrics* metrics_;
  std::chrono::steady_clock::time_point start_;
  GrpcMetrics::Method* method_;
  std::string request_id_;
  std::unique_ptr<grpc::Alarm> alarm_;  // only for calls without a deadline
  bool finished_ = false;
  bool request_unparsable_ = false;  // a received message did not deserialize
  bool registered_ = false;
  InFlight* in_flight_ = nullptr;
};

class CallInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  CallInterceptorFactory(GrpcMetrics* metrics, const ServerOptions* options,
                         std::shared_ptr<Authenticator> authenticator, InFlight* in_flight)
      : metrics_(metrics),
        options_(options),
        authenticator_(std::move(authenticator)),
        in_flight_(in_flight) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallInterceptor(info, metrics_, options_, authenticator_.get(), in_flight_);
  }

 private:
  GrpcMetrics* metrics_;
  const ServerOptions* options_;
  std::shared_ptr<Authenticator> authenticator_;
  InFlight* in_flight_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeCallInterceptorFactory(
    GrpcMetrics* metrics, const ServerOptions* options,
    std::shared_ptr<Authenticator> authenticator, InFlight* in_flight) {
  return std::make_unique<CallInterceptorFactory>(metrics, options, std::move(authenticator),
                                                  in_flight);
}

}  // namespace cloudflux::server::internal
