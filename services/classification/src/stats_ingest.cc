#include "stats_ingest.h"

#include "cloudflux/core/log.h"

namespace cloudflux::classification {

absl::StatusOr<std::unique_ptr<StatsIngest>> StatsIngest::Start(AccessStatsStore& store,
                                                                 IngestOptions options) {
  if (options.consumers < 1) return absl::InvalidArgumentError("the ingest needs at least one consumer");
  std::vector<std::unique_ptr<events::Consumer>> consumers;
  for (int i = 0; i < options.consumers; ++i) {
    events::ConsumerOptions co;
    co.kafka = options.kafka;
    co.group_id = options.group_id;
    co.topics = {options.topic};
    auto consumer = events::Consumer::Create(co, nullptr);
    if (!consumer.ok()) return consumer.status();
    consumers.push_back(std::move(*consumer));
  }
  return std::unique_ptr<StatsIngest>(new StatsIngest(store, std::move(options), std::move(consumers)));
}

StatsIngest::StatsIngest(AccessStatsStore& store, IngestOptions options,
                         std::vector<std::unique_ptr<events::Consumer>> consumers)
    : store_(store), options_(std::move(options)), consumers_(std::move(consumers)) {
  for (auto& c : consumers_) threads_.emplace_back([this, consumer = c.get()] { Loop(*consumer); });
}

StatsIngest::~StatsIngest() { Stop(); }

void StatsIngest::Stop() {
  stop_ = true;
  for (auto& c : consumers_) c->Stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

absl::Status StatsIngest::Health() const {
  std::lock_guard lock(mu_);
  for (const auto& [consumer, status] : last_error_) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

void StatsIngest::Loop(events::Consumer& consumer) {
  while (!stop_) {
    auto n = consumer.PollBatch(options_.max_batch, options_.poll_timeout,
                                [this](const std::vector<events::ConsumedMessage>& batch) -> absl::Status {
                                  auto applied = store_.ApplyMessages(batch);
                                  if (!applied.ok()) return applied.status();
                                  applied_ += applied->applied;
                                  duplicates_ += applied->duplicates;
                                  ++batches_;
                                  return absl::OkStatus();
                                });
    std::lock_guard lock(mu_);
    if (!n.ok()) {
      last_error_[&consumer] = n.status();
      core::LogWarn("access statistics batch failed", {{"error", std::string(n.status().message())}});
      absl::SleepFor(absl::Milliseconds(200));
    } else {
      consumed_ += static_cast<int64_t>(*n);
      last_error_[&consumer] = absl::OkStatus();
    }
  }
}

}  // namespace cloudflux::classification
