#include "stats_ingest.h"

#include "cloudflux/core/log.h"

namespace cloudflux::classification {

absl::StatusOr<std::unique_ptr<StatsIngest>> StatsIngest::Start(AccessStatsStore& store,
                                                                 IngestOptions options) {
  events::ConsumerOptions co;
  co.kafka = options.kafka;
  co.group_id = options.group_id;
  co.topics = {options.topic};
  auto consumer = events::Consumer::Create(co, nullptr);
  if (!consumer.ok()) return consumer.status();
  return std::unique_ptr<StatsIngest>(new StatsIngest(store, std::move(options), std::move(*consumer)));
}

StatsIngest::StatsIngest(AccessStatsStore& store, IngestOptions options,
                         std::unique_ptr<events::Consumer> consumer)
    : store_(store), options_(std::move(options)), consumer_(std::move(consumer)) {
  thread_ = std::thread([this] { Loop(); });
}

StatsIngest::~StatsIngest() { Stop(); }

void StatsIngest::Stop() {
  stop_ = true;
  consumer_->Stop();
  if (thread_.joinable()) thread_.join();
}

absl::Status StatsIngest::Health() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

void StatsIngest::Loop() {
  while (!stop_) {
    auto n = consumer_->PollBatch(options_.max_batch, options_.poll_timeout,
                                  [this](const std::vector<events::ConsumedMessage>& batch) -> absl::Status {
                                    auto applied = store_.ApplyMessages(batch);
                                    if (!applied.ok()) return applied.status();
                                    applied_ += applied->applied;
                                    return absl::OkStatus();
                                  });
    std::lock_guard lock(mu_);
    if (!n.ok()) {
      last_error_ = n.status();
      core::LogWarn("access statistics batch failed", {{"error", std::string(n.status().message())}});
      absl::SleepFor(absl::Milliseconds(200));
    } else {
      consumed_ += static_cast<int64_t>(*n);
      last_error_ = absl::OkStatus();
    }
  }
}

}  // namespace cloudflux::classification
