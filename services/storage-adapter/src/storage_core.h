#pragma once
// StorageCore: the storage adapter's logic apart from gRPC. Validates
// requests, streams bytes into a backend while hashing them, and keeps the
// catalog (schema `storage`) and the object events (outbox) in step.
// Thread-safe; an Upload belongs to one call.

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/core/names.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/server/executor.h"
#include "cloudflux/storage/v1/storage.pb.h"
#include "object_store.h"
#include "pacer.h"

namespace cloudflux::storage {

// Reads a range from the first of several copies of the same bytes that
// works: when one cannot be opened or fails mid-range, the next goes on at
// the same offset. `more` is asked once, when the sources given run out,
// for further ones (a read that never fails costs nothing more).
// `on_failover` hears of each switch.
class FailoverReader final : public ObjectReader {
 public:
  struct Source {
    ObjectStore* store;
    std::string backend;
    std::string physical_key;
    bool replica = true;  // false: the object's own bytes (where it is, or was moved to)
  };
  using OnFailover = std::function<void(const Source& from, const Source& to, const absl::Status& why)>;
  FailoverReader(std::vector<Source> sources, std::function<std::vector<Source>()> more, int64_t offset,
                 int64_t length, OnFailover on_failover);
  // Opens sources[i], or the first after it that opens; `why` is the
  // error that made the previous one fail (OK at the start).
  absl::Status OpenFrom(size_t i, absl::Status why);
  absl::StatusOr<Chunk> ReadChunk(size_t max) override;

 private:
  // Appends what `more_` gives (once); true if there is a further source.
  bool LoadMore();

  std::vector<Source> sources_;
  std::function<std::vector<Source>()> more_;
  const int64_t offset_, length_;
  OnFailover on_failover_;
  int64_t done_ = 0;
  size_t at_ = 0;
  std::unique_ptr<ObjectReader> current_;
  std::vector<std::unique_ptr<ObjectReader>> retired_;
};

inline constexpr char kObjectTopic[] = "cloudflux.storage.objects";
using core::kMaxKeyBytes;

using core::ValidateKey;
using core::ValidateNamespace;

// An event about (ns, key) for the objects topic (subject objects/ns/key,
// partition key ns/key, so each object's events stay in order).
cloudflux::events::v1::EventEnvelope ObjectEventEnvelope(const std::string& ns,
                                                         const std::string& key,
                                                         const google::protobuf::Message& event,
                                                         const core::Clock& clock);

// How a copy's bytes go: `rate`, the bytes per second a streamed copy may
// send (0 = no limit), shared with the copies of `pace_group` in this
// process (CopyPacers); `verify`, read the bytes back from the target and
// hash them before they are catalogued.
struct CopyLimits {
  int64_t rate = 0;
  bool verify = false;
  std::string pace_group;
};

class StorageCore {
 public:
  // `instance_id` (a row of storage.instances) owns the pending writes this
  // process records.
  StorageCore(db::Pool& pool, std::map<std::string, std::unique_ptr<ObjectStore>> backends,
              std::string default_backend, std::string instance_id,
              const core::Clock& clock = core::SystemClock::Get());

  // One object being written: bytes go to the backend as they arrive and
  // into a running SHA-256. Destroying it without Finish removes the bytes.
  class Upload {
   public:
    ~Upload();
    // One received chunk, in pieces, hashed and written in order. Bytes past
    // the header's declared size are OUT_OF_RANGE (nothing of them written).
    absl::Status WriteParts(const std::vector<std::string_view>& parts);
    // At the stream's end, with its trailer if one came: checks that the
    // upload is known to be whole (the declared size and/or the trailer match
    // what arrived) and the hashes, makes the bytes durable, then writes the
    // catalog row and ObjectCreated together. On any failure nothing stays
    // behind.
    absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Finish(
        const cloudflux::storage::v1::PutObjectTrailer* trailer);

   private:
    friend class StorageCore;
    absl::Status CheckWhole(const cloudflux::storage::v1::PutObjectTrailer* trailer,
                            const std::string& sha) const;
    StorageCore* core_ = nullptr;
    cloudflux::storage::v1::PutObjectHeader header_;
    ObjectStore* store_ = nullptr;
    std::string physical_key_;
    std::unique_ptr<ObjectWriter> writer_;
    core::Sha256 hash_;
    int64_t size_ = 0;
    bool finished_ = false;
  };

  // Where a copy stands: bytes at the target of `total`, of which
  // `resumed` were already there from an interrupted copy (not sent again).
  struct CopyState {
    int64_t copied = 0;
    int64_t total = 0;
    int64_t resumed = 0;
    bool server_side = false;
  };
  // Called while a copy moves bytes; returning false cancels it.
  using CopyProgress = std::function<bool(const CopyState&)>;

  absl::StatusOr<std::unique_ptr<Upload>> BeginPut(
      const cloudflux::storage::v1::PutObjectHeader& header);
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Head(const std::string& ns,
                                                          const std::string& key);
  // Head plus, for an object in an archive class or one that may still be
  // leaving it (a store that restores after the tier change, the catalog row
  // changed within a day), whether its bytes can be read now (`restore`).
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> HeadWithReadState(const std::string& ns,
                                                                       const std::string& key);
  // The object's info and a reader of the requested range.
  absl::StatusOr<std::pair<cloudflux::storage::v1::ObjectInfo, std::unique_ptr<ObjectReader>>>
  OpenGet(const cloudflux::storage::v1::GetObjectRequest& request);
  // `version` 0 = whatever is current; otherwise ABORTED unless at it.
  absl::Status Delete(const std::string& ns, const std::string& key, int64_t version = 0);
  absl::StatusOr<cloudflux::storage::v1::ListObjectsResponse> List(
      const cloudflux::storage::v1::ListObjectsRequest& request);
  // Copies or relocates an object (see CopyObject in storage.proto). A
  // streamed copy into a store that uploads in parts records every part
  // stored; interrupted (this process killed, the client gone, the target
  // unavailable), the next copy of the same bytes to the same backend and
  // tier goes on from those parts (CopyState::resumed: the bytes not sent
  // again).
  // A replica copy (request.replica) that found its replica current sets
  // *unchanged.
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Copy(
      const cloudflux::storage::v1::CopyObjectRequest& request, const CopyProgress& progress,
      bool* unchanged = nullptr);
  // Removes the object's replica on `backend` (NOT_FOUND if none).
  absl::Status DeleteReplica(const std::string& ns, const std::string& key, const std::string& backend);
  // The replicas of ns/key at `version`, by backend.
  absl::StatusOr<std::vector<cloudflux::storage::v1::Replica>> Replicas(const std::string& ns,
                                                                        const std::string& key, int64_t version);
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> SetTier(
      const cloudflux::storage::v1::SetTierRequest& request);
  // Makes an archived object readable (see RestoreObject in storage.proto).
  absl::StatusOr<cloudflux::storage::v1::RestoreObjectResponse> Restore(
      const cloudflux::storage::v1::RestoreObjectRequest& request);
  cloudflux::storage::v1::ListBackendsResponse Backends();
  // Reads an object's bytes back and hashes them (see VerifyObject in
  // storage.proto). `keep_going` (may be null) is asked every few MiB; false
  // stops the read with CANCELLED (the caller has gone).
  absl::StatusOr<cloudflux::storage::v1::VerifyObjectResponse> Verify(
      const cloudflux::storage::v1::VerifyObjectRequest& request, const std::function<bool()>& keep_going = nullptr);
  // OK while every backend answers.
  absl::Status PingBackends();

  // Removes bytes no catalog row owns: old versions whose removal failed,
  // and writes of processes that stopped heartbeating for `grace` (crashed
  // between storing bytes and cataloguing them). Also records this
  // instance's heartbeat. Returns how many objects it removed.
  // Copies stopped for longer than `resume_ttl` are abandoned: their
  // stored parts are removed.
  absl::StatusOr<int> SweepOrphans(absl::Duration grace,
                                   absl::Duration resume_ttl = absl::Hours(24));
  // Records this instance's heartbeat and host (at start and by the sweeper).
  absl::Status Heartbeat();
  // How long an instance may go without a heartbeat before it is taken for
  // dead (SweepOrphans' grace): a copy it was running may then be resumed.
  void SetOrphanGrace(absl::Duration grace) { orphan_grace_ = grace; }
  // Counters of streamed copies: bytes sent to targets, bytes found there
  // from interrupted copies and not sent again.
  void ExportMetrics(prometheus::Registry& registry);

  const events::Outbox& outbox() const { return outbox_; }
  const core::Clock& clock() const { return clock_; }

 private:
  // Bytes written to a backend under a fresh physical key, hashed.
  struct StoredCopy {
    std::string physical_key;
    std::string sha256;
    int64_t size = 0;
    bool server_side = false;
  };
  // Where a streamed copy can go on (storage.copy_uploads).
  struct ResumePoint {
    std::string physical_key;
    UploadProgress progress;
    std::string hash_state;
  };
  // Takes over the recorded copy of `source` to `to`/`tier`, if one can be
  // resumed: its pending bytes become this instance's. UNAVAILABLE while
  // another live instance is running it.
  absl::StatusOr<std::optional<ResumePoint>> ClaimResumable(
      const cloudflux::storage::v1::ObjectInfo& source, ObjectStore& to,
      cloudflux::common::v1::StorageTier tier);
  // Records the stored prefix of a streamed copy (this instance writing).
  absl::Status RecordResumable(const cloudflux::storage::v1::ObjectInfo& source, ObjectStore& to,
                               cloudflux::common::v1::StorageTier tier,
                               const std::string& physical_key, const UploadProgress& progress,
                               const std::string& hash_state);
  // Forgets a recorded copy (done, failed, or not resumable), or marks it
  // stopped (`keep`: nobody writing) so that the next copy goes on with it.
  void EndResumable(const cloudflux::storage::v1::ObjectInfo& source, ObjectStore& to,
                    cloudflux::common::v1::StorageTier tier, bool keep);
  // The catalog row for new bytes: inserts or overwrites (namespace, key),
  // releases the pending write, emits ObjectCreated, then retires the
  // replaced version's bytes. On failure removes the new bytes.
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> CatalogNew(
      const cloudflux::storage::v1::PutObjectHeader& header, ObjectStore& store,
      const StoredCopy& bytes);
  // A fresh physical key, recorded as a pending write of this instance.
  absl::StatusOr<std::string> ReservePhysicalKey(const std::string& backend);
  // Hands bytes (and a store's incomplete upload to them) to the orphan
  // sweep for removal.
  void GiveUpBytes(const std::string& backend, const std::string& physical_key);
  // Removes bytes and their pending row (best effort; the sweeper retries).
  void RemoveBytes(const std::string& backend, const std::string& physical_key);
  // RemoveBytes after the call has answered, for bytes no catalog row points
  // at any more (a replaced, deleted or relocated version): freeing a large
  // file's blocks or deleting a cloud object is no client's wait. Their
  // pending row is committed already, so the sweeper removes them should
  // this process stop first.
  void RetireBytes(const std::string& backend, const std::string& physical_key);
  // Copies source's bytes to `to` as its replica there (see Copy).
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Replicate(const cloudflux::storage::v1::ObjectInfo& source,
                                                               ObjectStore& to, cloudflux::common::v1::StorageTier tier,
                                                               const CopyProgress& progress, const CopyLimits& limits,
                                                               bool* unchanged);
  // Copy, once: a copy that waited for another copy of the same bytes, which
  // then moved them (a relocation), fails with kSourceMoved in its payload,
  // and Copy starts again from the catalog.
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> CopyOnce(
      const cloudflux::storage::v1::CopyObjectRequest& request, const CopyProgress& progress, bool* unchanged);
  // Copies the source's bytes to a new physical key on `to`; with
  // limits.verify, DATA_LOSS (the bytes removed) unless they read back as
  // the catalog's.
  absl::StatusOr<StoredCopy> CopyBytes(const cloudflux::storage::v1::ObjectInfo& source,
                                       ObjectStore& from, ObjectStore& to,
                                       cloudflux::common::v1::StorageTier tier,
                                       const CopyProgress& progress, const CopyLimits& limits = {});
  // CopyBytes without the read-back: the store's own copy when `from` is
  // `to` and it can, else a streamed one.
  absl::StatusOr<StoredCopy> WriteCopy(const cloudflux::storage::v1::ObjectInfo& source, ObjectStore& from,
                                       ObjectStore& to, cloudflux::common::v1::StorageTier tier,
                                       const CopyProgress& progress, const CopyLimits& limits);
  // The SHA-256 (hex) and length of what `store` holds at `physical_key`,
  // read from its first byte to its end; `progress` (may be null) is asked
  // every few MiB whether to go on.
  absl::StatusOr<std::pair<std::string, int64_t>> HashStored(ObjectStore& store, const std::string& physical_key,
                                                             int64_t size, const std::function<bool()>& progress);
  // The streamed copy of CopyBytes, into a fresh physical key or going on
  // from `resume`.
  absl::StatusOr<StoredCopy> StreamCopy(const cloudflux::storage::v1::ObjectInfo& source,
                                        ObjectStore& from, ObjectStore& to,
                                        cloudflux::common::v1::StorageTier tier,
                                        const CopyProgress& progress,
                                        std::optional<ResumePoint> resume, const CopyLimits& limits);
  // Points (namespace, key) at new bytes, keeping its version, if it still
  // is `source`; ObjectRelocated. ABORTED if it changed meanwhile.
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Relocate(
      const cloudflux::storage::v1::ObjectInfo& source, ObjectStore& to,
      cloudflux::common::v1::StorageTier tier, const CopyProgress& progress, const CopyLimits& limits = {});
  // Gives `source` (on `store`) the storage class of `tier` in place, or by
  // rewriting it when the store cannot; ObjectTierChanged / ObjectRelocated.
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> ChangeTier(
      const cloudflux::storage::v1::ObjectInfo& source, ObjectStore& store,
      cloudflux::common::v1::StorageTier tier);
  // Records that `source`'s bytes are now in `tier`, if it still is
  // `source`; ObjectTierChanged. ABORTED if it changed meanwhile.
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> RecordTier(
      const cloudflux::storage::v1::ObjectInfo& source, cloudflux::common::v1::StorageTier tier);
  absl::StatusOr<ObjectStore*> Backend(const std::string& name);
  // The store holding `object`'s bytes; FAILED_PRECONDITION if its backend
  // is not configured here (any more).
  absl::StatusOr<ObjectStore*> StoreOf(const cloudflux::storage::v1::ObjectInfo& object);

  db::Pool& pool_;
  std::map<std::string, std::unique_ptr<ObjectStore>> backends_;
  std::string default_backend_;
  std::string instance_id_;
  // Resumable copies running in this process (source backend, source key,
  // target backend, tier): one at a time, so that two never write one
  // upload.
  CopyPacers pacers_;
  std::mutex resumable_mu_;
  std::condition_variable resumable_ended_;
  std::set<std::string> resumable_running_;
  const core::Clock& clock_;
  events::Outbox outbox_{"storage"};
  absl::Duration orphan_grace_ = absl::Minutes(5);
  prometheus::Counter* copy_sent_bytes_ = nullptr;
  prometheus::Counter* copy_resumed_bytes_ = nullptr;
  prometheus::Counter* verified_bytes_ = nullptr;
  prometheus::Family<prometheus::Counter>* replica_reads_ = nullptr;
  // Last, so destroyed first: finishes queued removals while the backends
  // and the pool are still there.
  server::BlockingExecutor retired_{1};
};

}  // namespace cloudflux::storage
