#pragma once
// LoginThrottle: the brute-force limit on grants. Every attempt first
// reserves a place on two counters in Redis, the principal name's and the
// network peer's, in one atomic script: once a counter holds its limit the
// attempt is refused before any credential is checked, so N concurrent
// guesses check at most `limit` of them against the hash. A failed attempt
// keeps its place and is recorded in PostgreSQL (auth.login_failures), from
// which Rebuild() restores the counters after Redis lost them; a success
// clears the name's counter and gives the peer's place back.
// Refuses with UNAVAILABLE while Redis is down or its state is incomplete
// (the revocation mirror's marker is missing: RevocationStore rebuilds both).
// Thread-safe.

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cloudflux/cache/redis.h"
#include "cloudflux/db/db.h"

namespace cloudflux::auth {

struct ThrottleOptions {
  int max_failures_per_name = 5;
  int max_failures_per_peer = 30;
  absl::Duration window = absl::Minutes(15);
};

class LoginThrottle {
 public:
  LoginThrottle(db::Pool& pool, cache::RedisClient& redis, ThrottleOptions options);
  ~LoginThrottle();

  // One attempt's reserved places.
  struct Attempt {
    std::string name_key, peer_key;
  };
  // Reserves a place for an attempt by `name` from `peer` (a gRPC peer
  // string, the port ignored), or refuses: RESOURCE_EXHAUSTED with the
  // time to wait, UNAVAILABLE when the counters cannot be trusted.
  absl::StatusOr<Attempt> Begin(const std::string& name, const std::string& peer);
  // Whether, by what this process holds in memory (no I/O), neither counter
  // has any failure on record: a success may then skip Begin/Succeeded.
  // nullopt when memory cannot tell.
  std::optional<bool> ClearInMemory(const std::string& name, const std::string& peer);
  // The credentials were right: the name's failures are forgotten.
  void Succeeded(const Attempt& attempt);
  // The attempt could not be judged (the database failed): both places are
  // given back, so that an outage does not lock anyone out.
  void Abandon(const Attempt& attempt);
  // The credentials were wrong: the places stay taken; recorded in `tx`.
  absl::Status Failed(db::Transaction& tx, const Attempt& attempt);
  // Restores the counters from PostgreSQL (after Redis lost them).
  absl::Status Rebuild();
  // Deletes failures older than the window.
  absl::Status Prune();

 private:
  Attempt Keys(const std::string& name, const std::string& peer) const;
  db::Pool& pool_;
  cache::RedisClient& redis_;
  ThrottleOptions options_;
  // The counters (and the completeness marker) as Redis last told them.
  std::unique_ptr<cache::TrackedValues> tracked_;
};

}  // namespace cloudflux::auth
