#pragma once
// MigrationCore: the migration service's behaviour behind its gRPC API.
// - Planning: a selection (objects, or a namespace/prefix through the
//   storage adapter's listing, narrowed by filters) against a target gives
//   per object a move or a skip (already there); the estimate prices the
//   moves with libs/pricing (egress, requests, retrieval, early deletion;
//   monthly cost before and after).
// - Jobs (migration.jobs) and per-object tasks (migration.tasks): created
//   in one transaction with MigrationStarted (outbox, topic
//   cloudflux.migration.jobs); paused, resumed, cancelled; a per-object
//   report.
// - Execution: `workers` threads per replica claim tasks of running jobs
//   (FOR UPDATE SKIP LOCKED, under a lease: a dead worker's tasks are taken
//   over), at most the job's parallelism at once, and relocate each object
//   through the storage adapter (CopyObject onto its key, at the planned
//   version). A task succeeds only when the target's catalog entry has the
//   SHA-256 the source had; transient failures are retried. Starts are
//   paced so that the bytes a job starts stay within its bandwidth cap.
//   ObjectMigrated per object, MigrationFinished at the end.
// Thread-safe.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/migration/v1/migration.pb.h"
#include "cloudflux/pricing/catalog.h"
#include "storage_client.h"

namespace cloudflux::migration {

inline constexpr char kJobTopic[] = "cloudflux.migration.jobs";
inline constexpr int kMaxPlannedObjects = 100000;

struct CoreOptions {
  std::map<std::string, pricing::CloudProvider> backend_clouds;
  int workers = 4;           // task threads of this replica
  std::string worker_id;     // this replica, in task leases
  absl::Duration lease = absl::Minutes(2);     // renewed while a copy runs
  absl::Duration copy_timeout = absl::Hours(6);  // one object's copy
  int max_attempts = 6;
  absl::Duration idle_poll = absl::Milliseconds(200);
};

class MigrationCore {
 public:
  MigrationCore(db::Pool& pool, StorageClient& storage, const pricing::PriceCatalog& catalog, CoreOptions options,
                const core::Clock& clock = core::SystemClock::Get());
  ~MigrationCore();  // Stop()

  absl::StatusOr<cloudflux::migration::v1::MigrationEstimate> Estimate(
      const cloudflux::migration::v1::EstimateMigrationRequest& request);
  struct CreateOptions {
    std::string origin = "api";
    std::string placement_namespace;  // the placement loop's jobs: whose budget
    // Objects deleted since, or in an archive class, are skipped with the
    // reason instead of refusing the job (the placement loop's decisions
    // may be stale).
    bool lenient = false;
  };
  absl::StatusOr<cloudflux::migration::v1::Migration> Create(
      const cloudflux::migration::v1::CreateMigrationRequest& request, const CreateOptions& options);
  absl::StatusOr<cloudflux::migration::v1::Migration> Get(const std::string& id);
  absl::StatusOr<cloudflux::migration::v1::ListMigrationsResponse> List(
      const cloudflux::migration::v1::ListMigrationsRequest& request);
  absl::StatusOr<cloudflux::migration::v1::Migration> Pause(const std::string& id);
  absl::StatusOr<cloudflux::migration::v1::Migration> Resume(const std::string& id);
  absl::StatusOr<cloudflux::migration::v1::Migration> Cancel(const std::string& id);
  absl::StatusOr<cloudflux::migration::v1::Migration> SetBandwidth(
      const cloudflux::migration::v1::SetBandwidthRequest& request);
  // A new job that puts every object the ended job `id` moved back where it
  // was (skipping those overwritten, deleted or moved elsewhere since).
  // FAILED_PRECONDITION for a job still running or one that moved nothing.
  absl::StatusOr<cloudflux::migration::v1::Migration> Rollback(const std::string& id);
  absl::StatusOr<cloudflux::migration::v1::ListMigrationObjectsResponse> ListObjects(
      const cloudflux::migration::v1::ListMigrationObjectsRequest& request);
  // Where a watcher stands in a job's failed attempts (migration.task_failures).
  struct FailureCursor {
    static constexpr absl::Duration kGapWait = absl::Seconds(10);
    int64_t below = 0;             // every failure id <= below was sent or is never coming
    std::set<int64_t> sent;        // ids above `below` already sent
    absl::Time gap_since = absl::InfiniteFuture();  // since when `below + 1` is missing
    void Advance(absl::Time now);
  };
  // One update of WatchMigration: the job as Get shows it, and each failed
  // attempt not sent yet (at most 100; the rest come in the next updates).
  absl::StatusOr<cloudflux::migration::v1::MigrationUpdate> WatchUpdate(const std::string& id, FailureCursor* cursor);

  // Starts the task workers / stops them (running copies finish first).
  void Start();
  void Stop();
  int64_t copies_started() const { return copies_.load(); }

 private:
  // One task: `object` relocated to to_backend/to_tier, or copied to
  // to_namespace/key there; to_backend empty = `object` (a copy) deleted.
  struct Planned {
    cloudflux::storage::v1::ObjectInfo object;
    std::string to_namespace;
    std::string to_backend;
    cloudflux::common::v1::StorageTier to_tier = cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED;
    bool skip = false;
    std::string reason;
    bool present = false;  // skipped: already at the target (VERIFY_MODE_ALL reads it there)
  };
  // INVALID_ARGUMENT when a planned copy would go into an archive class
  // that cannot be read back without a restore (S3, Azure).
  absl::Status CheckReadableTargets(const std::vector<Planned>& plan);
  absl::StatusOr<std::vector<Planned>> Plan(const cloudflux::migration::v1::Selection& selection,
                                            const cloudflux::migration::v1::Target& target,
                                            cloudflux::migration::v1::MigrationMode mode, bool lenient = false);
  absl::StatusOr<cloudflux::migration::v1::Migration> InsertJob(
      const cloudflux::migration::v1::CreateMigrationRequest& request,
      const cloudflux::migration::v1::MigrationEstimate& estimate, const CreateOptions& options,
      const std::vector<Planned>& plan, std::optional<int64_t> bandwidth);
  absl::StatusOr<cloudflux::migration::v1::MigrationEstimate> Price(const std::vector<Planned>& plan,
                                                                    std::optional<int64_t> bandwidth);
  absl::StatusOr<cloudflux::migration::v1::Migration> SetState(const std::string& id,
                                                               cloudflux::migration::v1::MigrationState to);
  void Work();
  // Claims up to `n` tasks in one transaction (each job's room under its
  // concurrency and maintenance window respected). Each row is what
  // RunTask takes.
  absl::StatusOr<std::vector<db::Row>> Claim(int n);
  // Runs one claimed task and records its end.
  absl::Status RunTask(const db::Row& claimed);
  // Gives claimed tasks that no worker will run back (at Stop).
  void Release(const std::vector<db::Row>& claimed);
  // Waits until the job's cap lets `bytes` more start.
  void Pace(const std::string& job, int64_t bytes, std::optional<int64_t> bandwidth);
  // Finishes the job when no task is open.
  absl::Status MaybeFinish(db::Transaction& tx, const std::string& job);
  // After a task's end is committed: finishes its job if no task is open.
  absl::Status FinishIfDone(const std::string& job);

  db::Pool& pool_;
  StorageClient& storage_;
  const pricing::PriceCatalog& catalog_;
  CoreOptions options_;
  const core::Clock& clock_;
  events::Outbox outbox_{"migration"};
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> copies_{0};
  std::vector<std::thread> workers_;
  // One worker at a time claims, for itself and the idle workers; the
  // others wait for what it hands out.
  std::mutex claim_mu_;
  std::condition_variable claim_cv_;
  std::deque<db::Row> ready_;       // claim_mu_: claimed, not yet run
  bool claiming_ = false;           // claim_mu_
  absl::Time next_poll_;            // claim_mu_: after a claim that found nothing
  std::atomic<int> busy_{0};        // workers running a task
  std::mutex pace_mu_;
  std::map<std::string, absl::Time> next_start_;  // pace_mu_: per job
};

}  // namespace cloudflux::migration
