#pragma once
// Redis for CloudFlux services (revocation lists, rate limits, short-lived
// caches): a pool of hiredis connections with connect and command timeouts,
// replaced transparently when they break. hiredis stays behind this header.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
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
  Impl& impl() { return *impl_; }

 private:
  explicit RedisClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The values of the keys under some prefixes, kept in this process and
// current through Redis client-side caching in broadcasting mode (CLIENT
// TRACKING ... BCAST PREFIX): Redis sends the name of every key under the
// prefixes that is written, deleted, expires or is evicted to a connection of
// this object, which drops the entry. A value read while a change is on its
// way is not kept. Until that connection is subscribed, and whenever it
// breaks, nothing is served from memory (every Get asks Redis) and what was
// kept is dropped. A change made elsewhere is seen here once Redis's message
// has arrived (well under a millisecond on a local network).
class TrackedValues {
 public:
  struct Options {
    std::vector<std::string> prefixes;
    // Beyond this many keys the memory is emptied and filled again.
    size_t max_entries = 100000;
  };
  // Starts the tracking connection; Get works at once (from Redis until the
  // subscription is in place).
  static absl::StatusOr<std::unique_ptr<TrackedValues>> Create(RedisClient& client,
                                                               Options options);
  ~TrackedValues();

  // The values of `keys` (nullopt: no such key), those not in memory read with
  // one MGET. Keys outside the prefixes are always read from Redis.
  absl::StatusOr<std::vector<std::optional<std::string>>> Get(const std::vector<std::string>& keys);
  // The values of `keys` if every one is in memory (never reads Redis).
  std::optional<std::vector<std::optional<std::string>>> TryGet(const std::vector<std::string>& keys);
  // Drops what is kept for `keys` at once (after this process changed them,
  // without waiting for Redis's message).
  void Forget(const std::vector<std::string>& keys);
  // Whether values are being served from memory (the subscription is live).
  bool tracking() const { return tracking_.load(); }
  int64_t hits() const { return hits_.load(); }

  class State;

 private:
  TrackedValues(RedisClient& client, Options options);
  void Listen();
  bool Tracked(const std::string& key) const;

  RedisClient& client_;
  Options options_;
  std::unique_ptr<State> state_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> tracking_{false};
  std::atomic<int64_t> hits_{0};
  std::thread listener_;
};

}  // namespace cloudflux::cache
