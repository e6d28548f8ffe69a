#pragma once
// GroupCommit: many threads each want a small write committed before they
// answer (an audit row, an access record). Instead of one transaction each,
// the first waiting thread becomes the leader, takes everything queued (up to
// `max_batch`), writes it with one `flush` call (which commits it: one
// transaction, or better one statement) and wakes the others with their
// results; whoever is still waiting then leads the next batch. Under load a batch forms while the previous one commits, so
// the number of transactions follows the database's speed, not the callers'.
//
// If a batch fails for a reason other than the database being unreachable,
// its items are retried one per transaction, so that one bad item fails only
// its own caller. `flush` must be atomic: all of a batch or nothing.
// Thread-safe; Commit blocks the calling thread.

#include <cstddef>
#include <deque>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace cloudflux::db {

template <class Item>
class GroupCommit {
 public:
  using Flush = std::function<absl::Status(std::span<const Item>)>;

  // At most `max_batch` items per flush and `max_flushes` flushes at once.
  explicit GroupCommit(Flush flush, size_t max_batch = 256, int max_flushes = 1)
      : flush_(std::move(flush)),
        max_batch_(max_batch == 0 ? 1 : max_batch),
        max_flushes_(max_flushes < 1 ? 1 : max_flushes) {}

  // Returns once `item` is committed (OK) or definitely not (the error).
  absl::Status Commit(Item item) {
    Waiter self{std::move(item)};
    absl::MutexLock lock(&mu_);
    queue_.push_back(&self);
    while (!self.done) {
      if (self.taken || flushing_ >= max_flushes_) {
        self.wake.Wait(&mu_);  // woken when done, or to lead the next batch
        continue;
      }
      ++flushing_;
      std::vector<Waiter*> batch;
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(queue_.front());
        batch.back()->taken = true;
        queue_.pop_front();
      }
      mu_.Unlock();
      WriteBatch(batch);
      mu_.Lock();
      --flushing_;
      ++batches_;
      for (Waiter* w : batch) {
        w->done = true;
        if (w != &self) w->wake.Signal();
      }
      // Hand over: the oldest waiter leads the next batch.
      if (!queue_.empty()) queue_.front()->wake.Signal();
    }
    return self.status;
  }

  // Batches written so far, failed ones included (for tests and metrics).
  int64_t batches() const {
    absl::MutexLock lock(&mu_);
    return batches_;
  }

 private:
  struct Waiter {
    Item item;
    absl::Status status;
    bool taken = false;  // in a batch being written
    bool done = false;
    absl::CondVar wake;
  };

  void WriteBatch(const std::vector<Waiter*>& batch) {
    std::vector<Item> items;
    items.reserve(batch.size());
    // Each waiter only reads its status afterwards: its item can move.
    for (Waiter* w : batch) items.push_back(std::move(w->item));
    absl::Status status = flush_(std::span<const Item>(items));
    bool isolate = !status.ok() && batch.size() > 1 &&
                   status.code() != absl::StatusCode::kUnavailable &&
                   status.code() != absl::StatusCode::kDeadlineExceeded;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!isolate) {
        batch[i]->status = status;
        continue;
      }
      batch[i]->status = flush_(std::span<const Item>(&items[i], 1));
    }
  }

  Flush flush_;
  const size_t max_batch_;
  const int max_flushes_;
  mutable absl::Mutex mu_;
  std::deque<Waiter*> queue_ ABSL_GUARDED_BY(mu_);
  int flushing_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t batches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cloudflux::db
