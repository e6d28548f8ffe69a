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

template <class Response, class Fn>
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, Response* response,
                                      Fn&& fn) {
  auto* reactor = context->DefaultReactor();
  auto result = fn();
  if constexpr (std::is_same_v<decltype(result), absl::Status>) {
    reactor->Finish(ToGrpcStatus(result));
  } else {
    if (result.ok()) {
      *response = std::move(*result);
      reactor->Finish(grpc::Status::OK);
    } else {
      reactor->Finish(ToGrpcStatus(result.status()));
    }
  }
  return reactor;
}

}  // namespace cloudflux::server
