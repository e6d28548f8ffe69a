#include "cloudflux/events/batch_ingest.h"

#include "absl/strings/str_cat.h"
#include "cloudflux/core/log.h"

namespace cloudflux::events {

absl::StatusOr<std::unique_ptr<BatchIngest>> BatchIngest::Start(ApplyFn apply, BatchIngestOptions options) {
  if (options.consumers < 1) return absl::InvalidArgumentError("the ingest needs at least one consumer");
  std::vector<std::unique_ptr<Consumer>> consumers;
  for (int i = 0; i < options.consumers; ++i) {
    ConsumerOptions co;
    co.kafka = options.kafka;
    co.group_id = options.group_id;
    co.session_timeout = options.session_timeout;
    co.topics = {options.topic};
    auto consumer = Consumer::Create(co, nullptr);
    if (!consumer.ok()) return consumer.status();
    consumers.push_back(std::move(*consumer));
  }
  return std::unique_ptr<BatchIngest>(new BatchIngest(std::move(apply), std::move(options), std::move(consumers)));
}

BatchIngest::BatchIngest(ApplyFn apply, BatchIngestOptions options, std::vector<std::unique_ptr<Consumer>> consumers)
    : apply_(std::move(apply)), options_(std::move(options)), consumers_(std::move(consumers)) {
  if (options_.registry != nullptr) {
    auto& r = *options_.registry;
    auto& events = prometheus::BuildCounter()
                       .Name(options_.metric_prefix + "_events_total")
                       .Help("Events consumed by the ingest, by outcome")
                       .Register(r);
    auto counter = [&](const std::string& name, const std::string& help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
    };
    metrics_ = Metrics{
        .applied = &events.Add({{"outcome", "applied"}}),
        .duplicates = &events.Add({{"outcome", "duplicate"}}),
        .skipped = &events.Add({{"outcome", "skipped"}}),
        .batches = counter(options_.metric_prefix + "_batches_total", "Batches of events applied (one transaction each)"),
        .failures = counter(options_.metric_prefix + "_batch_failures_total", "Batches that failed and will be consumed again"),
        .lag = &prometheus::BuildGauge()
                    .Name(options_.metric_prefix + "_lag")
                    .Help("Events in the topic not yet taken by this process's ingest members")
                    .Register(r)
                    .Add({})};
  }
  for (auto& c : consumers_) threads_.emplace_back([this, consumer = c.get()] { Loop(*consumer); });
}

BatchIngest::~BatchIngest() { Stop(); }

void BatchIngest::Stop() {
  stop_ = true;
  for (auto& c : consumers_) c->Stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

int64_t BatchIngest::LagLocked() const {
  int64_t total = 0;
  for (const auto& [consumer, lag] : lag_) total += lag;
  return total;
}

absl::Status BatchIngest::Health() const {
  std::lock_guard lock(mu_);
  for (const auto& [consumer, status] : last_error_) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

void BatchIngest::Loop(Consumer& consumer) {
  while (!stop_) {
    auto n = consumer.PollBatch(options_.max_batch, options_.poll_timeout,
                                [this](const std::vector<ConsumedMessage>& batch) -> absl::Status {
                                  auto applied = apply_(batch);
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
      core::LogWarn(absl::StrCat(options_.what, " failed"), {{"error", std::string(n.status().message())}});
      absl::SleepFor(absl::Milliseconds(200));
    } else {
      consumed_ += static_cast<int64_t>(*n);
      last_error_[&consumer] = absl::OkStatus();
    }
  }
}

}  // namespace cloudflux::events
