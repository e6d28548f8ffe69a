#include "diagnostics_service.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/alarm.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace cloudflux::server::internal {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

// Finishes after a delay without holding a thread; a cancelled call (client
// gone, deadline passed, server shutting down) finishes at once.
class DelayedReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit DelayedReactor(absl::Duration delay) {
    alarm_.Set(absl::ToChronoTime(absl::Now() + delay), [this](bool fired) {
      FinishOnce(fired ? grpc::Status::OK : grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    });
  }
  void OnCancel() override { alarm_.Cancel(); }
  void OnDone() override { delete this; }

 private:
  void FinishOnce(grpc::Status status) {
    std::call_once(once_, [&] { Finish(status); });
  }
  grpc::Alarm alarm_;
  std::once_flag once_;
};

}  // namespace

grpc::ServerUnaryReactor* DiagnosticsService::GetServerInfo(
    grpc::CallbackServerContext* context,
    const cloudflux::diagnostics::v1::GetServerInfoRequest* request,
    cloudflux::diagnostics::v1::GetServerInfoResponse* response) {
  response->set_service(options_->service_name);
  response->set_version(options_->version);
  response->set_instance_id(instance_id_);
  *response->mutable_started() = ToProto(started_);
  response->set_serving(serving_());
  for (const auto& dep : dependencies_()) {
    auto* out = response->add_dependencies();
    out->set_name(dep.name);
    out->set_healthy(dep.healthy);
    out->set_last_error(dep.last_error);
    out->set_required(dep.required);
    if (dep.last_checked != absl::Time()) *out->mutable_last_checked() = ToProto(dep.last_checked);
  }
  if (auto principal = PrincipalOf(*context)) {
    response->set_caller_subject(principal->subject);
    for (const auto& role : principal->roles) response->add_caller_roles(role);
  }
  response->set_request_id(RequestIdOf(*context));
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* DiagnosticsService::Echo(
    grpc::CallbackServerContext* context, const cloudflux::diagnostics::v1::EchoRequest* request,
    cloudflux::diagnostics::v1::EchoResponse* response) {
  absl::Duration delay = absl::Seconds(request->delay().seconds()) +
                         absl::Nanoseconds(request->delay().nanos());
  if (delay < absl::ZeroDuration() || delay > options_->diagnostics_max_delay) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("delay must be between 0 and ",
                     absl::FormatDuration(options_->diagnostics_max_delay), ", got ",
                     absl::FormatDuration(delay))));
    return reactor;
  }
  response->set_payload(request->payload());
  if (delay == absl::ZeroDuration()) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  return new DelayedReactor(delay);
}

}  // namespace cloudflux::server::internal
