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
    co.session_timeout = options.session_timeout;
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
  if (options_.registry != nullptr) {
    auto& r = *options_.registry;
    auto& events = prometheus::BuildCounter()
                       .Name("cloudflux_classification_ingest_events_total")
                       .Help("Object events consumed by the access-statistics ingest, by outcome")
                       .Register(r);
    auto counter = [&](const std::string& name, const std::string& help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
    };
    metrics_ = Metrics{
        .applied = &events.Add({{"outcome", "applied"}}),
        .duplicates = &events.Add({{"outcome", "duplicate"}}),
        .skipped = &events.Add({{"outcome", "skipped"}}),
        .batches = counter("cloudflux_classification_ingest_batches_total",
                           "Batches of object events written to the access statistics (one transaction each)"),
        .failures = counter("cloudflux_classification_ingest_batch_failures_total",
                            "Batches that failed and will be consumed again"),
        .lag = &prometheus::BuildGauge()
                    .Name("cloudflux_classification_ingest_lag")
                    .Help("Object events in the topic not yet taken by this process's ingest members")
                    .Register(r)
                    .Add({})};
  }
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

int64_t StatsIngest::LagLocked() const {
  int64_t total = 0;
  for (const auto& [consumer, lag] : lag_) total += lag;
  return total;
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
                                  if (metrics_.has_value()) {
                                    metrics_->applied->Increment(applied->applied);
                                    metrics_->duplicates->Increment(applied->duplicates);
                                    metrics_->skipped->Increment(applied->skipped);
                                    metrics_->batches->Increment();
                                  }
                                  return absl::OkStatus();
                                });
    std::optional<int64_t> lag;  // only exported: without metrics nothing reads it
    if (metrics_.has_value()) {
      if (auto l = consumer.Lag(); l.ok()) lag = *l;
    }
    std::lock_guard lock(mu_);
    if (lag.has_value()) {
      lag_[&consumer] = *lag;
      metrics_->lag->Set(static_cast<double>(LagLocked()));
    }
    if (!n.ok()) {
      if (metrics_.has_value()) metrics_->failures->Increment();
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
