#pragma once
// Redis for CloudFlux services (revocation lists, rate limits, short-lived
// caches): a pool of hiredis connections with connect and command timeouts,
// replaced transparently when they break. hiredis stays behind this header.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cloudflux::cache {

struct RedisReply {
  enum class Type { kNil, kString, kStatus, kInteger, kArray };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus
  int64_t integer = 0;
  std::vector<RedisReply> elements;
};

struct RedisOptions {
  std::string address = "127.0.0.1:6379";  // host:port
  std::string password;                    // AUTH when set
  int database = 0;
  int pool_size = 4;
  absl::Duration connect_timeout = absl::Seconds(1);
  absl::Duration command_timeout = absl::Seconds(1);
};

// Thread-safe. Connections are opened on demand.
class RedisClient {
 public:
  static absl::StatusOr<std::unique_ptr<RedisClient>> Create(RedisOptions options);
  ~RedisClient();

  // Any command, binary-safe. Redis error replies become statuses
  // (WRONGTYPE -> FAILED_PRECONDITION, others INTERNAL); connection problems
  // UNAVAILABLE. A command whose connection broke is retried once on a fresh
  // connection, so a non-idempotent command may run twice in that case.
  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& args);

  absl::StatusOr<std::optional<std::string>> Get(const std::string& key);
  // ttl <= 0 means no expiry.
  absl::Status Set(const std::string& key, const std::string& value,
                   absl::Duration ttl = absl::ZeroDuration());
  // SET NX: true if the key was set (it did not exist).
  absl::StatusOr<bool> SetIfAbsent(const std::string& key, const std::string& value,
                                   absl::Duration ttl);
  absl::StatusOr<bool> Exists(const std::string& key);
  absl::StatusOr<int64_t> Delete(const std::string& key);
  // INCR then, on the first increment, PEXPIRE (a fixed window counter).
  absl::StatusOr<int64_t> IncrementWithExpiry(const std::string& key, absl::Duration window);
  // Remaining time to live; nullopt if the key has none or does not exist.
  absl::StatusOr<std::optional<absl::Duration>> Ttl(const std::string& key);

  // Health check: PING within `timeout`.
  absl::Status Ping(absl::Duration timeout);

  class Impl;

 private:
  explicit RedisClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cloudflux::cache
