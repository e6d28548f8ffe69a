#pragma once
// SyncPairs: two-way syncs between two locations (namespace + prefix) of
// the storage adapter's catalog, like rclone bisync. A run:
// - lists both sides and the pair's last agreed listing
//   (migration.sync_listing: per key, the SHA-256 both sides had and the
//   versions that held it);
// - plans: a key changed on one side only (new, a different SHA-256, or
//   gone) is copied to, or deleted from, the other side; changed on both to
//   different bytes is a conflict, won by the pair's rule, the loser kept
//   under a new key or overwritten; changed on one side and deleted on the
//   other keeps the change;
// - refuses (FAILED_PRECONDITION) a plan that deletes more than
//   max_delete_percent of the keys tracked, unless forced;
// - makes each change with a condition on what the run saw (the source's
//   version, the destination's version or absence), and records the key's
//   new agreed state as soon as its change is made. A run that stops early
//   (an error, its deadline, its client gone) leaves the other keys as
//   they were listed, so the next run does only what is left.
// One run per pair at a time, under a lease on the pair's row. Pairs with an
// interval are run by RunDue. Thread-safe.

#include <atomic>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cloudflux/db/db.h"
#include "cloudflux/migration/v1/migration.pb.h"
#include "storage_client.h"

namespace cloudflux::migration {

struct SyncOptions {
  absl::Duration lease = absl::Minutes(2);
  absl::Duration copy_timeout = absl::Hours(6);
};

class SyncPairs {
 public:
  SyncPairs(db::Pool& pool, StorageClient& storage, SyncOptions options);

  absl::StatusOr<cloudflux::migration::v1::SyncPair> Create(const cloudflux::migration::v1::SyncPair& pair);
  absl::StatusOr<cloudflux::migration::v1::SyncPair> Get(const std::string& id);
  absl::StatusOr<cloudflux::migration::v1::ListSyncPairsResponse> List();
  // ABORTED while a run of the pair is going on.
  absl::StatusOr<cloudflux::migration::v1::SyncPair> Delete(const std::string& id);

  // One run (see above). It starts no new change after `deadline` (less a
  // margin to answer in) or once `cancelled` says so.
  absl::StatusOr<cloudflux::migration::v1::SyncRun> Run(const cloudflux::migration::v1::RunSyncRequest& request,
                                                        absl::Time deadline, const std::function<bool()>& cancelled);
  // Runs the pairs whose interval has passed since their last run; returns
  // how many ran.
  absl::StatusOr<int> RunDue();
  // Runs going on start no new change (shutdown); they end as stopped runs.
  void Stop() { stopping_ = true; }

 private:
  db::Pool& pool_;
  StorageClient& storage_;
  SyncOptions options_;
  const std::string runner_;  // this process, as the lease holder
  std::atomic<bool> stopping_{false};
};

}  // namespace cloudflux::migration
