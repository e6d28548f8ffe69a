#include "http.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cloudflux::storage {
namespace {

// DNS answers and TLS sessions, shared by every handle (with locks, as
// libcurl requires for handles used on several threads).
class CurlShare {
 public:
  static CURLSH* Get() {
    static CurlShare* shared = new CurlShare();  // never destroyed: handles may outlive statics
    return shared->share_;
  }

 private:
  CurlShare() : share_(curl_share_init()) {
    if (share_ == nullptr) return;
    curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &Lock);
    curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &Unlock);
    curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* self) {
    static_cast<CurlShare*>(self)->locks_[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* self) {
    static_cast<CurlShare*>(self)->locks_[data].unlock();
  }

  CURLSH* share_;
  std::mutex locks_[CURL_LOCK_DATA_LAST];
};

// Easy handles, each with the connections it keeps open, lent to one
// request at a time whatever its thread. Read-ahead windows and multipart
// parts run on short-lived threads: a handle per thread would open (and
// for https handshake) a new connection for every window and part. libcurl
// does not support one connection cache shared by concurrent threads, so
// the handles themselves are pooled. The most recently returned one is
// lent first (its connection is the likeliest to be alive).
class CurlPool {
 public:
  static CurlPool& Get() {
    static CurlPool* pool = new CurlPool();  // never destroyed
    return *pool;
  }
  CURL* Take() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        CURL* curl = idle_.back();
        idle_.pop_back();
        return curl;
      }
    }
    return curl_easy_init();
  }
  void Give(CURL* curl) {
    {
      std::lock_guard lock(mu_);
      if (idle_.size() < kMaxIdle) {
        idle_.push_back(curl);
        return;
      }
    }
    curl_easy_cleanup(curl);
  }

 private:
  static constexpr size_t kMaxIdle = 64;
  CurlPool() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  std::mutex mu_;
  std::vector<CURL*> idle_;
};

struct CurlHandle {
  CURL* curl = CurlPool::Get().Take();
  CurlHandle() = default;
  CurlHandle(const CurlHandle&) = delete;
  CurlHandle& operator=(const CurlHandle&) = delete;
  ~CurlHandle() {
    if (curl != nullptr) CurlPool::Get().Give(curl);
  }
};

// Buffers of large response bodies, reused (see RecycleBody).
class BodyPool {
 public:
  static constexpr size_t kMinBytes = 1 << 20;
  static BodyPool& Get() {
    static BodyPool* pool = new BodyPool();  // never destroyed
    return *pool;
  }
  // An empty string with room for `bytes`.
  std::string Take(size_t bytes) {
    if (bytes >= kMinBytes) {
      std::lock_guard lock(mu_);
      // The most recently given back first: its pages are the warmest.
      for (size_t i = free_.size(); i-- > 0;) {
        if (free_[i].capacity() >= bytes) {
          std::string out = std::move(free_[i]);
          free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
          pooled_ -= out.capacity();
          out.clear();
          return out;
        }
      }
    }
    std::string out;
    out.reserve(bytes);
    return out;
  }
  void Give(std::string&& body) {
    if (body.capacity() < kMinBytes) return;
    std::lock_guard lock(mu_);
    if (pooled_ + body.capacity() > kMaxPooledBytes) return;
    pooled_ += body.capacity();
    free_.push_back(std::move(body));
  }
  size_t pooled_bytes() {
    std::lock_guard lock(mu_);
    return pooled_;
  }

 private:
  std::mutex mu_;
  size_t pooled_ = 0;  // capacity of the buffers in free_
  std::vector<std::string> free_;
};

// The response body, sized once from Content-Length: growing an 8 MiB
// window by doubling costs copies and, for large blocks, fresh pages each time.
struct BodySink {
  CURL* curl = nullptr;
  std::string* body = nullptr;
  bool sized = false;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<BodySink*>(user);
  if (!sink->sized) {
    sink->sized = true;
    curl_off_t length = -1;
    if (curl_easy_getinfo(sink->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK &&
        length > 0 && length <= (curl_off_t{1} << 30)) {
      if (static_cast<size_t>(length) >= BodyPool::kMinBytes && sink->body->empty()) {
        *sink->body = BodyPool::Get().Take(static_cast<size_t>(length));
      } else {
        sink->body->reserve(static_cast<size_t>(length));
      }
    }
  }
  sink->body->append(data, size * n);
  return size * n;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(user);
  absl::string_view line(data, size * n);
  if (absl::StartsWith(line, "HTTP/")) {
    headers->clear();  // a new response (after 100 Continue or a redirect)
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    (*headers)[name] = value;
  }
  return size * n;
}

}  // namespace

void RecycleBody(std::string&& body) { BodyPool::Get().Give(std::move(body)); }

size_t RecycledBodyBytes() { return BodyPool::Get().pooled_bytes(); }

std::string TakeBodyBuffer(size_t bytes) { return BodyPool::Get().Take(bytes); }

absl::StatusOr<HttpResponse> SendHttp(const HttpRequest& request) {
  CurlHandle handle;
  CURL* curl = handle.curl;
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  curl_easy_reset(curl);  // keeps the handle's open connections
  HttpResponse response;
  if (CURLSH* share = CurlShare::Get(); share != nullptr) curl_easy_setopt(curl, CURLOPT_SHARE, share);
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(request.timeout)));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnBody);
  BodySink sink{.curl = curl, .body = &response.body};
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response.headers);
  if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (request.method == "PUT" || request.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
  }
  struct curl_slist* headers = nullptr;
  for (const auto& [name, value] : request.headers) {
    headers = curl_slist_append(headers, absl::StrCat(name, ": ", value).c_str());
  }
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  bool has_type = false;
  for (const auto& h : request.headers) has_type |= absl::EqualsIgnoreCase(h.first, "content-type");
  if (!has_type && (request.method == "PUT" || request.method == "POST")) {
    headers = curl_slist_append(headers, "Content-Type:");  // not curl's form default
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return absl::DeadlineExceededError(absl::StrCat(request.method, " timed out"));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(request.method, " failed: ", curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &response.new_connections);
  return response;
}

std::string UriEncode(std::string_view s, bool keep_slash) {
  // curl_easy_escape keeps exactly RFC 3986's unreserved characters.
  auto escape = [](std::string_view part) -> std::string {
    if (part.empty()) return "";  // length 0 would make curl take strlen()
    char* escaped = curl_easy_escape(nullptr, part.data(), static_cast<int>(part.size()));
    std::string out = escaped != nullptr ? escaped : "";
    curl_free(escaped);
    return out;
  };
  if (!keep_slash) return escape(s);
  std::string out;
  for (size_t start = 0;;) {
    size_t slash = s.find('/', start);
    out += escape(s.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) return out;
    out += '/';
    start = slash + 1;
  }
}

absl::StatusOr<Url> ParseEndpoint(const std::string& endpoint) {
  auto sep = endpoint.find("://");
  if (sep == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint '", endpoint, "' must start with http:// or https://"));
  }
  Url url{endpoint.substr(0, sep), endpoint.substr(sep + 3)};
  if (url.scheme != "http" && url.scheme != "https") {
    return absl::InvalidArgumentError(absl::StrCat("endpoint scheme '", url.scheme, "' is not http(s)"));
  }
  while (!url.host.empty() && url.host.back() == '/') url.host.pop_back();
  if (url.host.empty() || url.host.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint '", endpoint, "' must be scheme://host[:port] without a path"));
  }
  return url;
}

}  // namespace cloudflux::storage
