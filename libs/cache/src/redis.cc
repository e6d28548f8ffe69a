#include "cloudflux/cache/redis.h"

#include <hiredis/hiredis.h>
#include <poll.h>

#include <condition_variable>
#include <mutex>
#include <unordered_map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/status.h"

namespace cloudflux::cache {
namespace {

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

timeval AsTimeval(absl::Duration d) { return absl::ToTimeval(d); }

RedisReply Convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Convert(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::kNil;
  }
  return out;
}

}  // namespace

class RedisClient::Impl {
 public:
  RedisOptions options;
  std::string host;
  int port = 6379;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Context> idle;
  int open = 0;

  absl::StatusOr<Context> Connect(absl::Duration connect_timeout) {
    Context c(redisConnectWithTimeout(host.c_str(), port, AsTimeval(connect_timeout)));
    if (c == nullptr) return absl::ResourceExhaustedError("redis: cannot allocate context");
    if (c->err) {
      return absl::UnavailableError(absl::StrCat("redis ", options.address, ": ", c->errstr));
    }
    redisSetTimeout(c.get(), AsTimeval(options.command_timeout));
    auto setup = [&](const std::vector<std::string>& args) -> absl::Status {
      auto r = Run(c.get(), args);
      return r.status();
    };
    if (!options.password.empty()) CF_RETURN_IF_ERROR(setup({"AUTH", options.password}));
    if (options.database != 0) {
      CF_RETURN_IF_ERROR(setup({"SELECT", std::to_string(options.database)}));
    }
    return c;
  }

  // Runs one command on `c`; UNAVAILABLE means the connection is unusable.
  absl::StatusOr<RedisReply> Run(redisContext* c, const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
    if (reply == nullptr) {
      return absl::UnavailableError(absl::StrCat("redis ", options.address, ": ",
                                                 c->errstr[0] ? c->errstr : "connection lost"));
    }
    std::unique_ptr<redisReply, decltype(&freeReplyObject)> owned(reply, &freeReplyObject);
    if (reply->type == REDIS_REPLY_ERROR) {
      std::string msg(reply->str, reply->len);
      if (msg.rfind("WRONGTYPE", 0) == 0) return absl::FailedPreconditionError(msg);
      if (msg.rfind("NOAUTH", 0) == 0 || msg.rfind("WRONGPASS", 0) == 0) {
        return absl::PermissionDeniedError(msg);
      }
      if (msg.rfind("LOADING", 0) == 0 || msg.rfind("BUSY", 0) == 0) {
        return absl::UnavailableError(msg);
      }
      return absl::InternalError(absl::StrCat("redis: ", msg));
    }
    return Convert(reply);
  }

  absl::StatusOr<Context> Acquire(absl::Duration timeout) {
    {
      std::unique_lock lock(mu);
      if (!cv.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                       [&] { return !idle.empty() || open < options.pool_size; })) {
        return absl::ResourceExhaustedError("redis: no connection free");
      }
      if (!idle.empty()) {
        Context c = std::move(idle.back());
        idle.pop_back();
        return c;
      }
      ++open;
    }
    auto c = Connect(std::min(timeout, options.connect_timeout));
    if (!c.ok()) Release(nullptr);
    return c;
  }

  void Release(Context c) {
    std::lock_guard lock(mu);
    if (c != nullptr && c->err == 0) {
      idle.push_back(std::move(c));
    } else {
      --open;
    }
    cv.notify_one();
  }

  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& args, absl::Duration timeout) {
    absl::Status last;
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto c = Acquire(timeout);
      if (!c.ok()) return c.status();
      auto r = Run(c->get(), args);
      bool broken = !r.ok() && r.status().code() == absl::StatusCode::kUnavailable &&
                    (*c)->err != 0;
      Release(broken ? nullptr : std::move(*c));
      if (!broken) return r;
      last = r.status();
    }
    return last;
  }
};

RedisClient::RedisClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RedisClient::~RedisClient() = default;

absl::StatusOr<std::unique_ptr<RedisClient>> RedisClient::Create(RedisOptions options) {
  auto impl = std::make_unique<Impl>();
  auto colon = options.address.rfind(':');
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(options.address.substr(colon + 1), &impl->port) || impl->port <= 0 ||
      impl->port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis address '", options.address, "' is not host:port"));
  }
  if (options.pool_size < 1) return absl::InvalidArgumentError("redis pool_size must be >= 1");
  impl->host = options.address.substr(0, colon);
  impl->options = std::move(options);
  return std::unique_ptr<RedisClient>(new RedisClient(std::move(impl)));
}

absl::StatusOr<RedisReply> RedisClient::Command(const std::vector<std::string>& args) {
  if (args.empty()) return absl::InvalidArgumentError("empty redis command");
  return impl_->Command(args, impl_->options.command_timeout + impl_->options.connect_timeout);
}

absl::StatusOr<std::optional<std::string>> RedisClient::Get(const std::string& key) {
  CF_ASSIGN_OR_RETURN(RedisReply r, Command({"GET", key}));
  if (r.type == RedisReply::Type::kNil) return std::optional<std::string>();
  return std::optional<std::string>(r.str);
}

absl::Status RedisClient::Set(const std::string& key, const std::string& value,
                              absl::Duration ttl) {
  if (ttl > absl::ZeroDuration()) {
    return Command({"SET", key, value, "PX",
                    std::to_string(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)))})
        .status();
  }
  return Command({"SET", key, value}).status();
}

absl::StatusOr<bool> RedisClient::SetIfAbsent(const std::string& key, const std::string& value,
                                              absl::Duration ttl) {
  CF_ASSIGN_OR_RETURN(
      RedisReply r,
      Command({"SET", key, value, "NX", "PX",
               std::to_string(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)))}));
  return r.type == RedisReply::Type::kStatus;
}

absl::StatusOr<bool> RedisClient::Exists(const std::string& key) {
  CF_ASSIGN_OR_RETURN(RedisReply r, Command({"EXISTS", key}));
  return r.integer > 0;
}

absl::StatusOr<int64_t> RedisClient::Delete(const std::string& key) {
  CF_ASSIGN_OR_RETURN(RedisReply r, Command({"DEL", key}));
  return r.integer;
}

absl::StatusOr<int64_t> RedisClient::IncrementWithExpiry(const std::string& key,
                                                         absl::Duration window) {
  // One round trip, atomic: the window starts at the first increment.
  static const std::string kScript =
      "local n = redis.call('INCR', KEYS[1]) "
      "if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
      "return n";
  CF_ASSIGN_OR_RETURN(
      RedisReply r,
      Command({"EVAL", kScript, "1", key,
               std::to_string(std::max<int64_t>(1, absl::ToInt64Milliseconds(window)))}));
  return r.integer;
}

absl::StatusOr<std::optional<absl::Duration>> RedisClient::Ttl(const std::string& key) {
  CF_ASSIGN_OR_RETURN(RedisReply r, Command({"PTTL", key}));
  if (r.integer < 0) return std::optional<absl::Duration>();
  return std::optional<absl::Duration>(absl::Milliseconds(r.integer));
}

absl::Status RedisClient::Ping(absl::Duration timeout) {
  CF_ASSIGN_OR_RETURN(RedisReply r, impl_->Command({"PING"}, timeout));
  if (r.str != "PONG") return absl::UnavailableError("redis: unexpected PING reply " + r.str);
  return absl::OkStatus();
}

// ---------------------------------------------------------- TrackedValues

class TrackedValues::State {
 public:
  std::mutex mu;
  std::unordered_map<std::string, std::optional<std::string>> values;
  // Bumped by every invalidation: a value read from Redis is kept only if no
  // invalidation arrived while it was being read.
  uint64_t epoch = 0;

  void DropAll() {
    std::lock_guard lock(mu);
    values.clear();
    ++epoch;
  }
};

TrackedValues::TrackedValues(RedisClient& client, Options options)
    : client_(client), options_(std::move(options)), state_(std::make_unique<State>()) {}

TrackedValues::~TrackedValues() {
  stop_ = true;
  if (listener_.joinable()) listener_.join();
}

absl::StatusOr<std::unique_ptr<TrackedValues>> TrackedValues::Create(RedisClient& client,
                                                                     Options options) {
  if (options.prefixes.empty()) return absl::InvalidArgumentError("tracked values need a prefix");
  for (const std::string& p : options.prefixes) {
    if (p.empty()) return absl::InvalidArgumentError("a tracked prefix is empty");
  }
  std::unique_ptr<TrackedValues> out(new TrackedValues(client, std::move(options)));
  out->listener_ = std::thread([raw = out.get()] { raw->Listen(); });
  return out;
}

absl::StatusOr<std::vector<std::optional<std::string>>> TrackedValues::Get(
    const std::vector<std::string>& keys) {
  std::vector<std::optional<std::string>> out(keys.size());
  std::vector<size_t> missing;
  uint64_t epoch = 0;
  bool use_memory = tracking_.load();
  {
    std::lock_guard lock(state_->mu);
    epoch = state_->epoch;
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = use_memory && Tracked(keys[i]) ? state_->values.find(keys[i]) : state_->values.end();
      if (it == state_->values.end()) {
        missing.push_back(i);
      } else {
        out[i] = it->second;
      }
    }
  }
  hits_ += static_cast<int64_t>(keys.size() - missing.size());
  if (missing.empty()) return out;
  std::vector<std::string> args = {"MGET"};
  for (size_t i : missing) args.push_back(keys[i]);
  CF_ASSIGN_OR_RETURN(RedisReply reply, client_.Command(args));
  if (reply.type != RedisReply::Type::kArray || reply.elements.size() != missing.size()) {
    return absl::InternalError("redis: MGET returned an unexpected reply");
  }
  for (size_t j = 0; j < missing.size(); ++j) {
    if (reply.elements[j].type == RedisReply::Type::kString) out[missing[j]] = reply.elements[j].str;
  }
  if (!tracking_.load()) return out;
  std::lock_guard lock(state_->mu);
  if (state_->epoch != epoch) return out;  // something changed meanwhile
  if (state_->values.size() + missing.size() > options_.max_entries) state_->values.clear();
  for (size_t i : missing) {
    if (Tracked(keys[i])) state_->values[keys[i]] = out[i];
  }
  return out;
}

std::optional<std::vector<std::optional<std::string>>> TrackedValues::TryGet(
    const std::vector<std::string>& keys) {
  if (!tracking_.load()) return std::nullopt;
  std::vector<std::optional<std::string>> out;
  out.reserve(keys.size());
  std::lock_guard lock(state_->mu);
  for (const std::string& key : keys) {
    auto it = state_->values.find(key);
    if (it == state_->values.end()) return std::nullopt;
    out.push_back(it->second);
  }
  hits_ += static_cast<int64_t>(keys.size());
  return out;
}

void TrackedValues::Forget(const std::vector<std::string>& keys) {
  std::lock_guard lock(state_->mu);
  ++state_->epoch;
  for (const std::string& key : keys) state_->values.erase(key);
}

bool TrackedValues::Tracked(const std::string& key) const {
  for (const std::string& p : options_.prefixes) {
    if (key.size() >= p.size() && key.compare(0, p.size(), p) == 0) return true;
  }
  return false;
}

void TrackedValues::Listen() {
  RedisClient::Impl& impl = client_.impl();
  while (!stop_) {
    auto connected = impl.Connect(impl.options.connect_timeout);
    absl::Status setup = connected.status();
    redisContext* c = connected.ok() ? connected->get() : nullptr;
    if (setup.ok()) {
      // Invalidations go to this same connection once it has subscribed.
      auto id = impl.Run(c, {"CLIENT", "ID"});
      setup = id.status();
      if (setup.ok()) {
        std::vector<std::string> tracking = {"CLIENT", "TRACKING", "on", "REDIRECT",
                                             std::to_string(id->integer), "BCAST"};
        for (const std::string& p : options_.prefixes) {
          tracking.push_back("PREFIX");
          tracking.push_back(p);
        }
        setup = impl.Run(c, tracking).status();
      }
      if (setup.ok()) setup = impl.Run(c, {"SUBSCRIBE", "__redis__:invalidate"}).status();
    }
    if (!setup.ok()) {
      for (int i = 0; i < 10 && !stop_; ++i) absl::SleepFor(absl::Milliseconds(50));
      continue;
    }
    state_->DropAll();
    tracking_ = true;
    while (!stop_) {
      pollfd p{.fd = c->fd, .events = POLLIN, .revents = 0};
      int ready = poll(&p, 1, 100);
      if (ready < 0 && errno != EINTR) break;
      if (ready <= 0) continue;
      if (redisBufferRead(c) != REDIS_OK) break;
      bool broken = false;
      void* raw = nullptr;
      while (true) {
        if (redisGetReplyFromReader(c, &raw) != REDIS_OK) {
          broken = true;
          break;
        }
        if (raw == nullptr) break;
        std::unique_ptr<redisReply, decltype(&freeReplyObject)> reply(
            static_cast<redisReply*>(raw), &freeReplyObject);
        // ["message", "__redis__:invalidate", [keys...] or nil (everything)]
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) continue;
        const redisReply* keys = reply->element[2];
        std::lock_guard lock(state_->mu);
        ++state_->epoch;
        if (keys->type == REDIS_REPLY_ARRAY) {
          for (size_t i = 0; i < keys->elements; ++i) {
            state_->values.erase(std::string(keys->element[i]->str, keys->element[i]->len));
          }
        } else {
          state_->values.clear();
        }
      }
      if (broken) break;
    }
    tracking_ = false;
    state_->DropAll();
  }
}

}  // namespace cloudflux::cache
