#pragma once
// ReadRecorder: turns GetObject calls into ObjectRead events without one
// database write per read. Reads of the same object version are summed in
// memory and written to the outbox together, one transaction per flush
// (every `interval`, sooner when many objects are pending, and on Stop).
// A flush that fails puts its counts back for the next one, so no read is
// dropped while the process runs; what is pending when the process is
// killed (at most one interval of reads) is lost.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "absl/status/status.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/core/periodic.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/storage/v1/storage.pb.h"

namespace cloudflux::storage {

struct ReadRecorderOptions {
  absl::Duration interval = absl::Seconds(1);
  size_t flush_at_objects = 10000;  // wake the flusher at this many pending objects
  size_t events_per_statement = 500;
};

class ReadRecorder {
 public:
  ReadRecorder(db::Pool& pool, const events::Outbox& outbox, const core::Clock& clock,
               ReadRecorderOptions options = {});
  ~ReadRecorder();  // Stop()

  // One read of `object` that sent `bytes`. Cheap; never blocks on I/O.
  void Record(const cloudflux::storage::v1::ObjectInfo& object, int64_t bytes);
  // Writes what is pending now.
  absl::Status Flush();
  // Starts flushing in the background.
  void Start();
  // Stops the background flusher after a final flush.
  void Stop();

  size_t pending_objects();

 private:
  struct Pending {
    std::string backend;
    int tier = 0;
    int64_t size = 0;
    int64_t reads = 0;
    int64_t bytes = 0;
    absl::Time first, last;
  };
  using Key = std::tuple<std::string, std::string, int64_t>;  // namespace, key, version
  void Merge(std::map<Key, Pending>& into, const Key& key, const Pending& p);

  db::Pool& pool_;
  const events::Outbox& outbox_;
  const core::Clock& clock_;
  ReadRecorderOptions options_;
  std::mutex mu_;
  std::map<Key, Pending> pending_;
  std::mutex flush_mu_;  // one flush at a time
  std::unique_ptr<core::PeriodicTask> task_;
};

}  // namespace cloudflux::storage
