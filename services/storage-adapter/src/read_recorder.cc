#include "read_recorder.h"

#include <google/protobuf/util/time_util.h>

#include <vector>

#include "cloudflux/core/log.h"
#include "cloudflux/storage/v1/events.pb.h"
#include "storage_core.h"

namespace cloudflux::storage {

namespace v1 = cloudflux::storage::v1;
using google::protobuf::util::TimeUtil;

ReadRecorder::ReadRecorder(db::Pool& pool, const events::Outbox& outbox, const core::Clock& clock,
                           ReadRecorderOptions options)
    : pool_(pool), outbox_(outbox), clock_(clock), options_(options) {}

ReadRecorder::~ReadRecorder() { Stop(); }

void ReadRecorder::Merge(std::map<Key, Pending>& into, const Key& key, const Pending& p) {
  auto [it, inserted] = into.try_emplace(key, p);
  if (inserted) return;
  Pending& q = it->second;
  q.reads += p.reads;
  q.bytes += p.bytes;
  q.first = std::min(q.first, p.first);
  q.last = std::max(q.last, p.last);
}

void ReadRecorder::Record(const v1::ObjectInfo& object, int64_t bytes) {
  absl::Time now = clock_.Now();
  Pending p{object.backend(), static_cast<int>(object.tier()), object.size(), 1, bytes, now, now};
  size_t count;
  {
    std::lock_guard lock(mu_);
    Merge(pending_, Key{object.namespace_(), object.key(), object.version()}, p);
    count = pending_.size();
  }
  if (count >= options_.flush_at_objects && task_ != nullptr) task_->Wake();
}

size_t ReadRecorder::pending_objects() {
  std::lock_guard lock(mu_);
  return pending_.size();
}

absl::Status ReadRecorder::Flush() {
  std::lock_guard flush_lock(flush_mu_);
  std::map<Key, Pending> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(pending_);
  }
  if (batch.empty()) return absl::OkStatus();
  std::vector<cloudflux::events::v1::EventEnvelope> envelopes;
  envelopes.reserve(batch.size());
  for (const auto& [key, p] : batch) {
    const auto& [ns, object_key, version] = key;
    v1::ObjectRead event;
    event.set_namespace_(ns);
    event.set_key(object_key);
    event.set_version(version);
    event.set_reads(p.reads);
    event.set_bytes_read(p.bytes);
    *event.mutable_first_read() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(p.first));
    *event.mutable_last_read() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(p.last));
    event.set_backend(p.backend);
    event.set_tier(static_cast<cloudflux::common::v1::StorageTier>(p.tier));
    event.set_size(p.size);
    envelopes.push_back(ObjectEventEnvelope(ns, object_key, event, clock_));
  }
  absl::Status written = pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    for (size_t i = 0; i < envelopes.size(); i += options_.events_per_statement) {
      size_t end = std::min(envelopes.size(), i + options_.events_per_statement);
      std::vector<cloudflux::events::v1::EventEnvelope> part(envelopes.begin() + i,
                                                             envelopes.begin() + end);
      absl::Status s = outbox_.EnqueueAll(tx, kObjectTopic, part);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  });
  if (!written.ok()) {
    // Put the counts back; reads recorded meanwhile merge with them.
    std::lock_guard lock(mu_);
    for (const auto& [key, p] : batch) Merge(pending_, key, p);
    core::LogWarn("read events not written; kept for the next flush",
                  {{"objects", std::to_string(batch.size())}, {"error", std::string(written.message())}});
  }
  return written;
}

void ReadRecorder::Start() {
  if (task_ != nullptr) return;
  task_ = std::make_unique<core::PeriodicTask>(options_.interval, [this] { (void)Flush(); });
}

void ReadRecorder::Stop() {
  if (task_ != nullptr) {
    task_->Stop(/*final_run=*/true);
    task_.reset();
  } else {
    (void)Flush();
  }
}

}  // namespace cloudflux::storage
