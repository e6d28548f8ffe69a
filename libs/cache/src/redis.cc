#include "cloudflux/cache/redis.h"

#include <hiredis/hiredis.h>

#include <condition_variable>
#include <mutex>

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

}  // namespace cloudflux::cache
