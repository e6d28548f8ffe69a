#include "principal_cache.h"

namespace cloudflux::auth {

absl::StatusOr<std::optional<Credentials>> PrincipalCache::Get(const std::string& name,
                                                               const Loader& load) {
  uint64_t generation;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it != entries_.end()) {
      if (clock_.Now() - it->second.loaded < ttl_) return it->second.credentials;
      entries_.erase(it);
    }
    generation = generation_;
  }
  absl::StatusOr<std::optional<Credentials>> loaded = load();
  if (!loaded.ok() || !loaded->has_value()) return loaded;
  absl::MutexLock lock(&mu_);
  // A change announced while we were reading may not be in what we read.
  if (trusted_ && generation == generation_) {
    if (entries_.size() >= max_entries_) entries_.clear();
    entries_[name] = Entry{**loaded, clock_.Now()};
  }
  return loaded;
}

std::optional<Credentials> PrincipalCache::Peek(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(name);
  if (it == entries_.end() || clock_.Now() - it->second.loaded >= ttl_) return std::nullopt;
  return it->second.credentials;
}

void PrincipalCache::Invalidate(const std::string& name) {
  absl::MutexLock lock(&mu_);
  ++generation_;
  entries_.erase(name);
}

void PrincipalCache::Clear() {
  absl::MutexLock lock(&mu_);
  ++generation_;
  entries_.clear();
}

void PrincipalCache::set_trusted(bool trusted) {
  absl::MutexLock lock(&mu_);
  ++generation_;
  trusted_ = trusted;
  if (!trusted) entries_.clear();
}

size_t PrincipalCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace cloudflux::auth
