#pragma once
// The RPC edge of a unary callback handler in one line:
//   return server::FinishUnary(context, response, [&] { return core_.Do(*request); });
// `fn` returns absl::StatusOr<Response> (or absl::Status for empty replies);
// its status becomes the call's grpc::Status.

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <type_traits>

#include "absl/status/statusor.h"
#include "cloudflux/server/grpc_status.h"

namespace cloudflux::server {

// Finishes `reactor` with `result` (a Status, or a StatusOr whose value goes
// to `response`).
template <class Response, class Result>
void FinishWith(grpc::ServerUnaryReactor* reactor, Response* response, Result&& result) {
  if constexpr (std::is_same_v<std::decay_t<Result>, absl::Status>) {
    reactor->Finish(ToGrpcStatus(result));
  } else if (result.ok()) {
    *response = std::move(*result);
    reactor->Finish(grpc::Status::OK);
  } else {
    reactor->Finish(ToGrpcStatus(result.status()));
  }
}

template <class Response, class Fn>
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, Response* response,
                                      Fn&& fn) {
  auto* reactor = context->DefaultReactor();
  FinishWith(reactor, response, fn());
  return reactor;
}

}  // namespace cloudflux::server
