#pragma once
// Helpers the backend tests share: whole-object writes and reads through the
// ObjectStore interface.

#include <random>
#include <string>

#include "object_store.h"

namespace cloudflux::storage {

inline std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

// Writes `data` in `chunk`-sized pieces and commits.
inline absl::Status PutBytes(ObjectStore& store, const std::string& key, const std::string& data,
                             cloudflux::common::v1::StorageTier tier = cloudflux::common::v1::STORAGE_TIER_HOT,
                             size_t chunk = 1 << 20) {
  auto w = store.StartWrite(key, tier);
  if (!w.ok()) return w.status();
  for (size_t i = 0; i < data.size(); i += chunk) {
    absl::Status s = (*w)->Write(std::string_view(data).substr(i, chunk));
    if (!s.ok()) return s;
  }
  return (*w)->Commit();
}

// Reads [offset, offset+length) (length 0 = to the end).
inline absl::StatusOr<std::string> GetBytes(ObjectStore& store, const std::string& key,
                                            int64_t offset = 0, int64_t length = 0) {
  auto r = store.OpenRead(key, offset, length);
  if (!r.ok()) return r.status();
  std::string all, part;
  do {
    absl::Status s = (*r)->Read(1 << 20, &part);
    if (!s.ok()) return s;
    all += part;
  } while (!part.empty());
  return all;
}

}  // namespace cloudflux::storage
