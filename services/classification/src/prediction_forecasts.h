#pragma once
// PredictionForecasts: the ForecastSource backed by the prediction service.
// One ForecastBatch call per page of objects (at most 1000 each), with a
// deadline; forecasts are kept per object version for the UTC day they were
// made. While the service cannot be asked, Get fails (the classifier then
// decides from access counts) and Health says so, until a call succeeds.
// Thread-safe.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "cloudflux/core/clock.h"
#include "cloudflux/prediction/v1/prediction.grpc.pb.h"
#include "forecasts.h"

namespace cloudflux::classification {

class PredictionForecasts final : public ForecastSource {
 public:
  // `authorize` sets a call's credentials (the service account's token).
  PredictionForecasts(std::shared_ptr<grpc::Channel> prediction,
                      std::function<absl::Status(grpc::ClientContext&)> authorize,
                      absl::Duration timeout = absl::Seconds(5), size_t max_cached = 1'000'000,
                      const core::Clock& clock = core::SystemClock::Get());

  absl::StatusOr<std::vector<std::optional<pricing::Forecast>>> Get(
      const std::vector<const ObjectStats*>& objects) override;

  // OK while the last call succeeded (or none was made); otherwise why
  // decisions fall back to access counts.
  absl::Status Health() const;
  int64_t calls() const { return calls_.load(); }
  int64_t cache_hits() const { return hits_.load(); }

 private:
  struct Cached {
    int64_t version = 0;
    pricing::Forecast forecast;
  };
  std::unique_ptr<cloudflux::prediction::v1::PredictionService::Stub> stub_;
  std::function<absl::Status(grpc::ClientContext&)> authorize_;
  absl::Duration timeout_;
  size_t max_cached_;
  const core::Clock& clock_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Cached> cache_;  // mu_
  int64_t cache_day_ = -1;                                       // mu_
  absl::Status last_;                                            // mu_
  std::atomic<int64_t> calls_{0}, hits_{0};
};

}  // namespace cloudflux::classification
