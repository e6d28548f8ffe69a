#pragma once
// ReplicationLoop: replication rules (a replica of every object under a
// namespace/prefix kept on another backend; the replicas are the storage
// adapter's, which removes a replica with the version it copies and fails
// reads over to it). The objects to act on wait in
// migration.replication_queue, one entry per rule and key:
// - ApplyMessages: the storage adapter's object events (a new or
//   overwritten object, a relocation) queue the object for every rule that
//   covers it (claimed once per event, events::ClaimMessages);
// - RunFullSyncRound: a full comparison, at creation, on request and every
//   `full_sync_every`, walks the rule's listing a few pages per round and
//   queues every object (a replica that is current and whose bytes the
//   store still has costs one HEAD);
// - workers claim due entries (FOR UPDATE SKIP LOCKED, under a lease) and
//   make the replica (CopyObject with replica set), or remove it for a rule
//   being dropped. A failure is retried after 1 s doubling to 5 min; an
//   object gone meanwhile needs nothing.
// Thread-safe.

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/batch_ingest.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/migration/v1/migration.pb.h"
#include "storage_client.h"

namespace cloudflux::migration {

struct ReplicationOptions {
  int workers = 2;
  absl::Duration lease = absl::Minutes(2);
  absl::Duration copy_timeout = absl::Hours(6);
  absl::Duration full_sync_every = absl::Hours(24);
  int pages_per_round = 10;  // of 1,000 objects, per rule
};

class ReplicationLoop {
 public:
  ReplicationLoop(db::Pool& pool, StorageClient& storage, ReplicationOptions options)
      : pool_(pool), storage_(storage), options_(options) {}
  ~ReplicationLoop() { Stop(); }

  void Start();  // the workers
  void Stop();

  absl::StatusOr<events::IngestCounts> ApplyMessages(const std::vector<events::ConsumedMessage>& messages);
  // Walks the listings of the rules whose full comparison is due or under
  // way; returns the objects queued.
  absl::StatusOr<int> RunFullSyncRound();
  // Claims and handles one due entry; false if none was due.
  absl::StatusOr<bool> RunOne();

  absl::StatusOr<cloudflux::migration::v1::ReplicationRule> Create(const cloudflux::migration::v1::ReplicationRule& r);
  absl::StatusOr<cloudflux::migration::v1::ReplicationRule> Get(const std::string& id);
  absl::StatusOr<cloudflux::migration::v1::ListReplicationRulesResponse> List();
  absl::StatusOr<cloudflux::migration::v1::ReplicationRule> Sync(const std::string& id);
  absl::StatusOr<cloudflux::migration::v1::ReplicationRule> Delete(const std::string& id, bool drop_replicas);

 private:
  db::Pool& pool_;
  StorageClient& storage_;
  ReplicationOptions options_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> workers_;
};

}  // namespace cloudflux::migration
