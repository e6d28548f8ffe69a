#pragma once
// Black-box test helpers: start a service binary on free loopback ports
// against the test servers, probe its health, scrape its metrics.
#include <functional>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/server/grpc_status.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "cloudflux/testing/testing.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace cloudflux {


using grpc::health::v1::HealthCheckResponse;
using testing::ChildProcess;
using testing::WaitFor;

using Service = testing::ServiceProcess;

// Starts `name` (see testing::StartServiceBinary); a failure to start fails
// the test.
inline Service StartService(const std::string& name, const std::string& pg_url,
                            const std::map<std::string, std::string>& extra_env = {}) {
  auto s = testing::StartServiceBinary(name, pg_url, extra_env);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : Service{};
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

// The value of one series (`name` or `name{labels}` exactly as exposed) in
// a Prometheus text exposition; -1 when it is not there.
inline double MetricValue(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double v = -1;
      return absl::SimpleAtod(line.substr(series.size() + 1), &v) ? v : -1;
    }
  }
  return -1;
}

// One unary call with a deadline: the response, or the call's status.
template <class Stub, class Request, class Response>
absl::StatusOr<Response> CallUnary(Stub& stub,
                                   grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                                   const Request& request, absl::Duration timeout = absl::Seconds(10)) {
  Response out;
  grpc::Status s = (stub.*method)(server::MakeClientContext(timeout).get(), request, &out);
  if (!s.ok()) return server::FromGrpcStatus(s);
  return out;
}

// Puts `bytes` at ns/key through a storage adapter (size declared);
// `prepare` may add the caller's credentials.
inline grpc::Status PutThroughStorageAs(cloudflux::storage::v1::StorageService::Stub& stub, const std::string& ns,
                                        const std::string& key, const std::string& bytes,
                                        const std::function<void(grpc::ClientContext&)>& prepare) {
  auto ctx = server::MakeClientContext(absl::Seconds(30));
  if (prepare) prepare(*ctx);
  cloudflux::storage::v1::ObjectInfo info;
  auto w = stub.PutObject(ctx.get(), &info);
  cloudflux::storage::v1::PutObjectRequest h;
  h.mutable_header()->set_namespace_(ns);
  h.mutable_header()->set_key(key);
  h.mutable_header()->set_size(static_cast<int64_t>(bytes.size()));
  w->Write(h);
  constexpr size_t kChunk = 1 << 20;  // under gRPC's message size limit
  for (size_t at = 0; at < bytes.size() || at == 0; at += kChunk) {
    cloudflux::storage::v1::PutObjectRequest c;
    c.set_chunk(bytes.substr(at, kChunk));
    if (!w->Write(c)) break;
  }
  w->WritesDone();
  return w->Finish();
}
inline bool PutThroughStorage(cloudflux::storage::v1::StorageService::Stub& stub, const std::string& ns,
                              const std::string& key, const std::string& bytes) {
  return PutThroughStorageAs(stub, ns, key, bytes, nullptr).ok();
}

// The bytes at ns/key through a storage adapter (a read, counted as one);
// nullopt when the read fails.
inline std::optional<std::string> GetThroughStorage(cloudflux::storage::v1::StorageService::Stub& stub,
                                                    const std::string& ns, const std::string& key) {
  cloudflux::storage::v1::GetObjectRequest r;
  r.set_namespace_(ns);
  r.set_key(key);
  auto ctx = server::MakeClientContext(absl::Seconds(30));
  auto reader = stub.GetObject(ctx.get(), r);
  std::string out;
  cloudflux::storage::v1::GetObjectResponse part;
  while (reader->Read(&part)) out += part.chunk();
  if (!reader->Finish().ok()) return std::nullopt;
  return out;
}

}  // namespace cloudflux
