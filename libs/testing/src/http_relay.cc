#include "cloudflux/testing/http_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cloudflux::testing {

namespace {

bool SendAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t sent = send(fd, data, n, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    data += sent;
    n -= static_cast<size_t>(sent);
  }
  return true;
}

// Splits the client's byte stream into requests: a head up to the blank
// line, then Content-Length bytes of body. What goes upstream is appended to
// `out`: a head once it is whole and admitted, and its body; a request not
// admitted is read and dropped, and `on_dropped` answers it.
struct RequestFraming {
  std::string head;
  std::string method;
  std::string path;  // the request target without its query
  int64_t body_left = 0;
  bool dropping = false;  // the current request is answered by the relay
  bool lost = false;      // a request not framed by Content-Length: counting stops, bytes pass
  bool corrupt = false;   // the current request's next body byte is to be flipped

  template <typename OnHead, typename OnBody, typename OnDropped>
  void Feed(const char* data, size_t n, std::string* out, OnHead on_head, OnBody on_body, OnDropped on_dropped,
            std::atomic<int64_t>& unframed) {
    size_t i = 0;
    while (i < n) {
      if (lost) {
        out->append(data + i, n - i);
        return;
      }
      if (body_left > 0) {
        size_t take = static_cast<size_t>(std::min<int64_t>(body_left, static_cast<int64_t>(n - i)));
        on_body(method, path, static_cast<int64_t>(take));
        if (!dropping) {
          const size_t at = out->size();
          out->append(data + i, take);
          if (corrupt && take > 0) {
            (*out)[at] = static_cast<char>((*out)[at] ^ 0x5a);
            corrupt = false;
          }
        }
        body_left -= static_cast<int64_t>(take);
        i += take;
        if (body_left == 0 && dropping) {
          dropping = false;
          on_dropped();
        }
        continue;
      }
      head.push_back(data[i++]);
      if (!absl::EndsWith(head, "\r\n\r\n")) continue;
      method = head.substr(0, head.find(' '));
      const std::string line = head.substr(0, head.find("\r\n"));  // METHOD target HTTP/1.1
      std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
      path = parts.size() > 1 ? std::string(parts[1].substr(0, parts[1].find('?'))) : "";
      int64_t length = 0;
      for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
        std::vector<absl::string_view> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
        if (kv.size() != 2) continue;
        std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(kv[0]));
        absl::string_view value = absl::StripAsciiWhitespace(kv[1]);
        if (name == "content-length" && !absl::SimpleAtoi(value, &length)) lost = true;
        if (name == "transfer-encoding") lost = true;
      }
      if (lost) {
        ++unframed;
        out->append(head);
        head.clear();
        continue;
      }
      const bool forward = on_head(method, path);
      if (forward) out->append(head);
      head.clear();
      body_left = length;
      if (!forward) {
        if (length > 0) {
          dropping = true;
        } else {
          on_dropped();
        }
      }
    }
  }
};

constexpr char kSlowDownBody[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request "
    "rate.</Message></Error>";

}  // namespace

absl::StatusOr<std::unique_ptr<HttpRelay>> HttpRelay::Start(const std::string& upstream_host, int upstream_port) {
  std::unique_ptr<HttpRelay> relay(new HttpRelay());
  relay->upstream_host_ = upstream_host;
  relay->upstream_port_ = upstream_port;
  relay->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (relay->listen_fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(relay->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(relay->listen_fd_, 128) != 0 ||
      getsockname(relay->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(absl::StrCat("listen: ", std::strerror(errno)));
  }
  relay->port_ = ntohs(addr.sin_port);
  relay->acceptor_ = std::thread([r = relay.get()] { r->Accept(); });
  return relay;
}

HttpRelay::~HttpRelay() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> relays;
  {
    std::lock_guard lock(mu_);
    relays.swap(relays_);
  }
  for (auto& t : relays) t.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

std::string HttpRelay::endpoint() const { return absl::StrCat("http://127.0.0.1:", port_); }

int64_t HttpRelay::body_bytes(const std::string& method) const {
  std::lock_guard lock(mu_);
  auto it = bytes_.find(method);
  return it == bytes_.end() ? 0 : it->second;
}

int64_t HttpRelay::requests(const std::string& method) const {
  std::lock_guard lock(mu_);
  auto it = requests_.find(method);
  return it == requests_.end() ? 0 : it->second;
}

std::map<std::string, int64_t> HttpRelay::body_bytes_by_path(const std::string& method) const {
  std::lock_guard lock(mu_);
  std::map<std::string, int64_t> out;
  for (const auto& [at, bytes] : path_bytes_) {
    if (at.first == method) out[at.second] += bytes;
  }
  return out;
}

void HttpRelay::ThrottleAbove(const std::string& method, int max_in_flight) {
  std::lock_guard lock(mu_);
  throttle_method_ = method;
  throttle_limit_ = max_in_flight;
}

void HttpRelay::CorruptBodies(const std::string& method, bool on) {
  std::lock_guard lock(mu_);
  corrupt_method_ = on ? method : "";
}

bool HttpRelay::Admit(const std::string& method, bool* tracked) {
  std::lock_guard lock(mu_);
  *tracked = false;
  if (throttle_limit_ < 0 || method != throttle_method_) return true;
  if (in_flight_ >= throttle_limit_) {
    ++throttled_;
    return false;
  }
  ++in_flight_;
  *tracked = true;
  return true;
}

void HttpRelay::Answered() {
  std::lock_guard lock(mu_);
  --in_flight_;
}

void HttpRelay::Count(const std::string& method, const std::string& path, int64_t body, bool request) {
  std::lock_guard lock(mu_);
  bytes_[method] += body;
  path_bytes_[{method, path}] += body;
  if (request) ++requests_[method];
}

void HttpRelay::Accept() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    std::lock_guard lock(mu_);
    relays_.emplace_back([this, client] { Relay(client); });
  }
}

void HttpRelay::Relay(int client) {
  int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(upstream_port_));
  inet_pton(AF_INET, upstream_host_.c_str(), &addr.sin_addr);
  if (upstream < 0 || connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (upstream >= 0) close(upstream);
    close(client);
    return;
  }
  RequestFraming framing;
  bool awaiting = false;  // a tracked request is forwarded and its answer has not started
  std::vector<char> buffer(1 << 16);
  std::string out;
  while (!stop_) {
    pollfd p[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    int ready = poll(p, 2, 100);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    bool open = true;
    for (int side = 0; side < 2 && open; ++side) {
      if (p[side].revents == 0) continue;
      ssize_t n = recv(p[side].fd, buffer.data(), buffer.size(), 0);
      if (n <= 0) {
        open = false;
        break;
      }
      if (side == 1) {
        if (awaiting) {
          awaiting = false;
          Answered();
        }
        open = SendAll(client, buffer.data(), static_cast<size_t>(n));
        continue;
      }
      out.clear();
      framing.Feed(
          buffer.data(), static_cast<size_t>(n), &out,
          [&](const std::string& method, const std::string& path) {
            Count(method, path, 0, true);
            bool tracked = false;
            bool forward = Admit(method, &tracked);
            awaiting = awaiting || tracked;
            {
              std::lock_guard lock(mu_);
              framing.corrupt = forward && method == corrupt_method_;
            }
            if (framing.corrupt) ++corrupted_;
            return forward;
          },
          [&](const std::string& method, const std::string& path, int64_t bytes) { Count(method, path, bytes, false); },
          [&] {
            // Whatever came before it is upstream already; this answer is the relay's.
            if (!out.empty()) {
              open = open && SendAll(upstream, out.data(), out.size());
              out.clear();
            }
            const std::string answer = absl::StrCat(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: ", sizeof(kSlowDownBody) - 1,
                "\r\n\r\n", kSlowDownBody);
            open = open && SendAll(client, answer.data(), answer.size());
          },
          unframed_);
      if (open && !out.empty()) {
        open = SendAll(upstream, out.data(), out.size());
        if (const int64_t rate = upload_rate_.load(); rate > 0) {
          std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(out.size()) * 1000000 / rate));
        }
      }
    }
    if (!open) break;
  }
  if (awaiting) Answered();
  close(client);
  close(upstream);
}

}  // namespace cloudflux::testing
