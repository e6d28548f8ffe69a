#pragma once
// A loopback TCP relay in front of an HTTP/1.1 server (an object store)
// that counts what goes through it: the requests and the bytes of their
// bodies, per method, as they are sent (a body cut off by a killed client
// counts the bytes that got through), per method and per path. Bodies are framed by Content-Length,
// as the storage adapter sends them; a chunked request is counted as
// unframed (`unframed()`), and its connection is counted no further.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace cloudflux::testing {

class HttpRelay {
 public:
  // Listens on a free loopback port; relays each connection to
  // upstream_host:upstream_port (an IPv4 address).
  static absl::StatusOr<std::unique_ptr<HttpRelay>> Start(const std::string& upstream_host, int upstream_port);
  ~HttpRelay();  // closes every connection

  int port() const { return port_; }
  std::string endpoint() const;  // "http://127.0.0.1:<port>"
  int64_t body_bytes(const std::string& method) const;
  int64_t requests(const std::string& method) const;
  int64_t unframed() const { return unframed_; }
  // The body bytes of `method` per request path (the query left out).
  std::map<std::string, int64_t> body_bytes_by_path(const std::string& method) const;
  // From now on, a `method` request that arrives while `max_in_flight` of
  // them await their answers is answered by the relay itself with S3's
  // "503 SlowDown" (its body read and dropped; the upstream never sees
  // it), as a store throttling its clients does. A negative limit stops it.
  void ThrottleAbove(const std::string& method, int max_in_flight);
  int64_t throttled() const { return throttled_; }
  // From now on, each connection sends at most `bytes_per_second` upstream
  // (a slow uplink: uploads last, and overlap); 0 = as fast as it comes.
  void LimitUploadRate(int64_t bytes_per_second) { upload_rate_ = bytes_per_second; }
  // While on, the first byte of every `method` request's body is flipped on
  // its way upstream (a store that silently stores wrong bytes; the
  // request's signature and Content-Length are left as they were).
  void CorruptBodies(const std::string& method, bool on);
  int64_t corrupted() const { return corrupted_; }

 private:
  HttpRelay() = default;
  void Accept();
  void Relay(int client);
  void Count(const std::string& method, const std::string& path, int64_t body, bool request);
  // A request's head came: whether it is forwarded (else answered 503);
  // *tracked says it counts as in flight until its answer starts.
  bool Admit(const std::string& method, bool* tracked);
  void Answered();

  std::string upstream_host_;
  int upstream_port_ = 0;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> unframed_{0};
  std::atomic<int64_t> throttled_{0};
  std::atomic<int64_t> upload_rate_{0};
  std::atomic<int64_t> corrupted_{0};
  std::string corrupt_method_;   // guarded by mu_; empty = none
  std::string throttle_method_;  // guarded by mu_
  int throttle_limit_ = -1;      // guarded by mu_
  int in_flight_ = 0;            // requests of throttle_method_ forwarded, not answered yet; guarded by mu_
  mutable std::mutex mu_;
  std::map<std::string, int64_t> bytes_, requests_;
  std::map<std::pair<std::string, std::string>, int64_t> path_bytes_;  // (method, path)
  std::thread acceptor_;
  std::vector<std::thread> relays_;  // guarded by mu_
};

}  // namespace cloudflux::testing
