#pragma once
// PrincipalCache: the credentials grants check (principal, password hash,
// client secret digest), kept in memory so that a client_credentials grant
// needs no database read. Correctness rests on PostgreSQL NOTIFY: a trigger
// on auth.principals announces every change, and the owner calls
// Invalidate(name) for each. Entries are only stored while the listener is
// connected (`set_trusted(true)`), every reconnect clears everything, and a
// load that raced with a change is not stored (generation check). Entries
// also expire after `ttl` as a backstop. Unknown names are never cached.
// Thread-safe.

#include <functional>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cloudflux/auth/v1/auth.pb.h"
#include "cloudflux/core/clock.h"

namespace cloudflux::auth {

struct Credentials {
  cloudflux::auth::v1::Principal principal;
  std::string password_hash;         // users
  std::string client_secret_sha256;  // service accounts
};

class PrincipalCache {
 public:
  using Loader = std::function<absl::StatusOr<std::optional<Credentials>>()>;

  PrincipalCache(absl::Duration ttl, size_t max_entries, const core::Clock& clock)
      : ttl_(ttl), max_entries_(max_entries), clock_(clock) {}

  // The cached credentials for `name`, or what `load` returns (stored when
  // allowed, see above).
  absl::StatusOr<std::optional<Credentials>> Get(const std::string& name, const Loader& load);

  // The cached credentials for `name`, if any (never reads).
  std::optional<Credentials> Peek(const std::string& name) const;

  void Invalidate(const std::string& name);
  void Clear();
  void set_trusted(bool trusted);

  size_t size() const;

 private:
  struct Entry {
    Credentials credentials;
    absl::Time loaded;
  };
  const absl::Duration ttl_;
  const size_t max_entries_;
  const core::Clock& clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool trusted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cloudflux::auth
