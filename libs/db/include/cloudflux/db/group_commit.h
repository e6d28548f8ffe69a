#pragma once
// GroupCommit: many callers each want a small write committed before they
// answer (an audit row, an access record). Instead of one transaction each,
// their items queue up and a flushing thread takes everything queued (up to
// `max_batch`), writes it with one `flush` call (which commits it: one
// transaction, or better one statement) and hands each caller its result.
// Under load a batch forms while the previous one commits, so the number of
// transactions follows the database's speed, not the callers'.
//
// Commit blocks its thread until the item is committed; CommitAsync returns
// at once and calls `done` (on a flushing thread) instead, so that a handler
// need not hold a thread while its write waits.
//
// If a batch fails for a reason other than the database being unreachable,
// its items are retried one per transaction, so that one bad item fails only
// its own caller. `flush` must be atomic: all of a batch or nothing.
// Thread-safe. The destructor flushes what is queued, then joins.

#include <cstddef>
#include <deque>
#include <functional>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace cloudflux::db {

template <class Item>
class GroupCommit {
 public:
  using Flush = std::function<absl::Status(std::span<const Item>)>;
  using Done = std::function<void(absl::Status)>;

  // At most `max_batch` items per flush and `max_flushes` flushes at once
  // (one thread each).
  explicit GroupCommit(Flush flush, size_t max_batch = 256, int max_flushes = 1)
      : flush_(std::move(flush)), max_batch_(max_batch == 0 ? 1 : max_batch) {
    for (int i = 0; i < (max_flushes < 1 ? 1 : max_flushes); ++i) {
      threads_.emplace_back([this] { Run(); });
    }
  }
  ~GroupCommit() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    for (auto& t : threads_) t.join();
  }
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Returns once `item` is committed (OK) or definitely not (the error).
  absl::Status Commit(Item item) {
    absl::Status result;
    absl::Notification committed;
    CommitAsync(std::move(item), [&](absl::Status s) {
      result = std::move(s);
      committed.Notify();
    });
    committed.WaitForNotification();
    return result;
  }

  // Queues `item`; `done` receives the same status Commit would return.
  void CommitAsync(Item item, Done done) {
    absl::MutexLock lock(&mu_);
    queue_.push_back({std::move(item), std::move(done)});
  }

  // Batches written so far, failed ones included (for tests and metrics).
  int64_t batches() const {
    absl::MutexLock lock(&mu_);
    return batches_;
  }

 private:
  struct Pending {
    Item item;
    Done done;
  };

  void Run() {
    while (true) {
      std::vector<Pending> batch;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](GroupCommit* self) { return self->stop_ || !self->queue_.empty(); }, this));
        if (queue_.empty()) return;  // stopping, nothing left
        while (!queue_.empty() && batch.size() < max_batch_) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      WriteBatch(batch);
    }
  }

  void WriteBatch(std::vector<Pending>& batch) {
    std::vector<Item> items;
    items.reserve(batch.size());
    for (Pending& p : batch) items.push_back(std::move(p.item));
    absl::Status status = flush_(std::span<const Item>(items));
    {
      absl::MutexLock lock(&mu_);
      ++batches_;
    }
    bool isolate = !status.ok() && batch.size() > 1 &&
                   status.code() != absl::StatusCode::kUnavailable &&
                   status.code() != absl::StatusCode::kDeadlineExceeded;
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i].done(isolate ? flush_(std::span<const Item>(&items[i], 1)) : status);
    }
  }

  Flush flush_;
  const size_t max_batch_;
  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

}  // namespace cloudflux::db
