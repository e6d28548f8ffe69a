#pragma once
// LoginThrottle: the brute-force limit on grants, on two Redis counters per
// attempt, the principal name's and the network peer's.
//  - Passwords (a slow hash, guessable): every attempt first reserves a
//    place on both counters in one atomic script; once a counter holds its
//    limit the attempt is refused before the password is checked, so N
//    concurrent guesses check at most `limit` of them.
//  - High-entropy secrets (client secrets, API keys: a fast hash, not
//    guessable): the lockout is checked, the secret verified, and only a
//    failure is counted, atomically, so that many concurrent legitimate
//    grants of one client are never refused.
// A failure is recorded in PostgreSQL (auth.login_failures), from which
// Rebuild() restores the counters after Redis lost them; a success clears
// the name's counter (and gives a reserved place back); an attempt the
// database could not judge gives its places back. UNAVAILABLE while Redis is
// down or its state incomplete (the revocation mirror's marker is missing:
// RevocationStore rebuilds both). Thread-safe.

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

  // One attempt: its counters, and whether it holds a place on them.
  struct Attempt {
    std::string name_key, peer_key;
    bool reserved = false;
    bool name_counted = false;  // the name's counter was above zero when it began
  };
  // A password attempt by `name` from `peer` (a gRPC peer string, the port
  // ignored): a place reserved, or a refusal: RESOURCE_EXHAUSTED with the
  // time to wait, UNAVAILABLE when the counters cannot be trusted.
  absl::StatusOr<Attempt> Begin(const std::string& name, const std::string& peer);
  // An attempt with a high-entropy secret: refused the same way while
  // locked out, nothing reserved.
  absl::StatusOr<Attempt> Check(const std::string& name, const std::string& peer);
  // Whether, by what this process holds in memory (no I/O), neither counter
  // has any failure on record: a success may then skip Begin/Succeeded.
  // nullopt when memory cannot tell.
  std::optional<bool> ClearInMemory(const std::string& name, const std::string& peer);
  // The credentials were right: the name's failures are forgotten.
  void Succeeded(const Attempt& attempt);
  // The attempt could not be judged (the database failed): both places are
  // given back, so that an outage does not lock anyone out.
  void Abandon(const Attempt& attempt);
  // The credentials were wrong: a reserved place stays taken (an attempt
  // that reserved none is counted now); recorded in `tx`.
  absl::Status Failed(db::Transaction& tx, const Attempt& attempt);
  // Restores the counters from PostgreSQL (after Redis lost them).
  absl::Status Rebuild();
  // Deletes failures older than the window.
  absl::Status Prune();

 private:
  Attempt Keys(const std::string& name, const std::string& peer) const;
  absl::StatusOr<Attempt> Run(const std::string& name, const std::string& peer, bool reserve);
  db::Pool& pool_;
  cache::RedisClient& redis_;
  ThrottleOptions options_;
  // The counters (and the completeness marker) as Redis last told them.
  std::unique_ptr<cache::TrackedValues> tracked_;
};

}  // namespace cloudflux::auth
