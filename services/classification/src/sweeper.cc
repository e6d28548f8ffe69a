#include "sweeper.h"

#include "absl/strings/str_cat.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"

namespace cloudflux::classification {

namespace {

prometheus::Family<prometheus::Counter>& SweepFamily(prometheus::Registry& registry, const std::string& name,
                                                     const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

}  // namespace

Sweeper::Sweeper(db::Pool& pool, Classifier& classifier, SweeperOptions options,
                 prometheus::Registry& registry)
    : pool_(pool),
      classifier_(classifier),
      options_(std::move(options)),
      sweeps_(SweepFamily(registry, "cloudflux_classification_sweeps_total", "Sweeps run by this replica").Add({})),
      objects_(SweepFamily(registry, "cloudflux_classification_sweep_objects_total", "Objects classified by sweeps")
                   .Add({})),
      published_(SweepFamily(registry, "cloudflux_classification_sweep_published_total",
                             "TierDecided events published by sweeps")
                     .Add({})),
      failures_(SweepFamily(registry, "cloudflux_classification_sweep_failures_total", "Sweeps that failed")
                    .Add({})) {
  if (options_.interval > absl::ZeroDuration()) thread_ = std::thread([this] { Loop(); });
}

Sweeper::~Sweeper() { Stop(); }

void Sweeper::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::optional<Classifier::SweepResult>> Sweeper::RunOnce() {
  // The lease lasts one interval from now; its holder renews it each round.
  const int64_t lease_ms = std::max<int64_t>(1000, absl::ToInt64Milliseconds(options_.interval));
  CF_ASSIGN_OR_RETURN(
      db::Result taken,
      pool_.Exec("INSERT INTO classification.leases AS l (name, holder, expires_at) VALUES ('sweep', $1, "
                 "now() + $2 * interval '1 millisecond') ON CONFLICT (name) DO UPDATE SET holder = "
                 "EXCLUDED.holder, expires_at = EXCLUDED.expires_at WHERE l.expires_at < now() OR "
                 "l.holder = EXCLUDED.holder RETURNING holder",
                 {options_.holder, std::to_string(lease_ms)}));
  if (taken.empty()) return std::optional<Classifier::SweepResult>();
  absl::Time started = absl::Now();
  absl::StatusOr<Classifier::SweepResult> r = classifier_.Sweep([this] {
    std::lock_guard lock(mu_);
    return stop_;
  });
  sweeps_.Increment();
  if (!r.ok()) {
    failures_.Increment();
    return r.status();
  }
  objects_.Increment(static_cast<double>(r->objects));
  published_.Increment(static_cast<double>(r->published));
  core::LogInfo("sweep done", {{"objects", std::to_string(r->objects)},
                               {"moves", std::to_string(r->moves)},
                               {"published", std::to_string(r->published)},
                               {"unpriced", std::to_string(r->errors)},
                               {"seconds", absl::StrCat(absl::ToDoubleSeconds(absl::Now() - started))}});
  return std::optional<Classifier::SweepResult>(*r);
}

void Sweeper::Loop() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.interval), [this] { return stop_; })) {
    lock.unlock();
    auto r = RunOnce();
    if (!r.ok()) core::LogWarn("sweep failed", {{"error", std::string(r.status().message())}});
    lock.lock();
  }
}

}  // namespace cloudflux::classification
