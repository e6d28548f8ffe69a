#pragma once
// A small blocking HTTP client over libcurl for the cloud backends. Curl
// handles (and the connections each keeps open) are pooled for the whole
// process and lent to one request at a time, whatever its thread, so the
// short-lived threads of read-ahead windows and multipart parts reuse
// connections too; DNS answers and TLS sessions are shared.

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cloudflux::storage {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  // Sent as given (names as the caller spells them).
  std::vector<std::pair<std::string, std::string>> headers = {};
  std::string_view body = {};
  absl::Duration timeout = absl::Seconds(120);
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  long new_connections = 0;  // connections opened for this request (0: reused one)
  std::string Header(const std::string& lowercase_name) const {
    auto it = headers.find(lowercase_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Response bodies of 1 MiB and more (read windows) are built in buffers
// taken from a small process-wide pool; a caller done with such a body
// gives it back here, so that the next window reuses its memory instead of
// faulting fresh pages in (a large block freed to the allocator is soon
// returned to the kernel). Any string may be given; small ones are dropped,
// and so is whatever would take the pool past kMaxPooledBytes: memory the
// process keeps between reads, whatever their number and size.
inline constexpr size_t kMaxPooledBytes = 32 << 20;  // one read's windows (8 MiB, 3 ahead)
void RecycleBody(std::string&& body);
// What the pool holds now, in bytes.
size_t RecycledBodyBytes();
// An empty string with room for `bytes`, from that pool when it has one (1
// MiB and more): for a large request body (an upload's part), given back
// with RecycleBody once sent.
std::string TakeBodyBuffer(size_t bytes);

// UNAVAILABLE when the server cannot be reached or the transfer breaks,
// DEADLINE_EXCEEDED on timeout; any HTTP status is a response.
absl::StatusOr<HttpResponse> SendHttp(const HttpRequest& request);

// RFC 3986 percent-encoding of everything but unreserved characters (and
// '/' when `keep_slash`), as cloud signatures require.
std::string UriEncode(std::string_view s, bool keep_slash);

struct Url {
  std::string scheme;  // "http" / "https"
  std::string host;    // with ":port" when given
};
absl::StatusOr<Url> ParseEndpoint(const std::string& endpoint);

}  // namespace cloudflux::storage
