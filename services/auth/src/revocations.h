#pragma once
// RevocationStore: the record of revoked access tokens (auth.revocations in
// PostgreSQL) and the Redis mirror of it that every service's authenticator
// reads (authn::RevocationKeys), together with the brute-force counters'
// rebuild (LoginThrottle), since both live in the same Redis.
//
// The record is written in the transaction of the change that caused it
// (a disabled principal, a reused refresh token, a RevokeToken call). Sync()
// copies what is recent into Redis; when the completeness marker is missing
// (a Redis that restarted empty, or a fresh one) it rebuilds the whole mirror
// and the counters first and only then sets the marker, so that no service
// accepts a token, and no login is checked, against a mirror with gaps.
// Thread-safe; Sync calls are serialised.

#include <functional>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cloudflux/cache/redis.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"

namespace cloudflux::auth {

class RevocationStore {
 public:
  enum class Kind { kToken, kSession, kSubject };

  // `rebuild_others` restores the rest of what must survive a Redis restart
  // (the login counters) before the marker is set.
  RevocationStore(db::Pool& pool, cache::RedisClient& redis, absl::Duration access_ttl,
                  std::function<absl::Status()> rebuild_others, const core::Clock& clock);

  // Records a revocation in `tx`: a token id until `until`, a session for
  // as long as its access tokens live, a subject's tokens below `version`.
  absl::Status Record(db::Transaction& tx, Kind kind, const std::string& id, int64_t version = 0,
                      absl::Time until = absl::InfinitePast());

  // Brings the mirror up to date (see above). Called after every change
  // committed here and periodically, for the changes of other replicas and
  // for a Redis that restarted.
  absl::Status Sync();

  // Deletes record rows whose tokens have all expired.
  absl::Status Prune();

 private:
  absl::Status Rebuild();
  // Copies `rows` into Redis; with `skip_mirrored`, not those the last
  // copy already wrote. sync_mu_ held.
  absl::Status Mirror(const db::Result& rows, bool skip_mirrored);

  db::Pool& pool_;
  cache::RedisClient& redis_;
  absl::Duration access_ttl_;
  std::function<absl::Status()> rebuild_others_;
  const core::Clock& clock_;
  std::mutex sync_mu_;
  int64_t mirrored_seq_ = 0;  // guarded by sync_mu_
  // The rows of the last query that are in Redis (seq). Guarded by sync_mu_.
  absl::flat_hash_set<int64_t> mirrored_;
};

}  // namespace cloudflux::auth
