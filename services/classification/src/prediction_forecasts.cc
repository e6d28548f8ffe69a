#include "prediction_forecasts.h"

#include "absl/strings/str_cat.h"
#include "cloudflux/core/status.h"
#include "cloudflux/events/object_events.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/server/grpc_status.h"

namespace cloudflux::classification {

namespace pv1 = cloudflux::prediction::v1;

PredictionForecasts::PredictionForecasts(std::shared_ptr<grpc::Channel> prediction,
                                         std::function<absl::Status(grpc::ClientContext&)> authorize,
                                         absl::Duration timeout, size_t max_cached, const core::Clock& clock)
    : stub_(pv1::PredictionService::NewStub(std::move(prediction))),
      authorize_(std::move(authorize)),
      timeout_(timeout),
      max_cached_(max_cached),
      clock_(clock) {}

absl::Status PredictionForecasts::Health() const {
  std::lock_guard lock(mu_);
  if (last_.ok()) return last_;
  return absl::UnavailableError(
      absl::StrCat("deciding from access counts: the prediction service cannot be asked (", last_.message(), ")"));
}

absl::StatusOr<std::vector<std::optional<pricing::Forecast>>> PredictionForecasts::Get(
    const std::vector<const ObjectStats*>& objects) {
  std::vector<std::optional<pricing::Forecast>> out(objects.size());
  std::vector<size_t> ask;  // positions not cached for today
  {
    std::lock_guard lock(mu_);
    int64_t today = events::UnixDay(clock_.Now());
    if (today != cache_day_) {  // forecasts are made for a day
      cache_.clear();
      cache_day_ = today;
    }
    for (size_t i = 0; i < objects.size(); ++i) {
      auto it = cache_.find({objects[i]->ns, objects[i]->key});
      if (it != cache_.end() && it->second.version == objects[i]->version) {
        out[i] = it->second.forecast;
        ++hits_;
      } else {
        ask.push_back(i);
      }
    }
  }
  constexpr size_t kPage = 1000;  // the service's batch limit
  for (size_t from = 0; from < ask.size(); from += kPage) {
    pv1::ForecastBatchRequest request;
    const size_t to = std::min(ask.size(), from + kPage);
    for (size_t j = from; j < to; ++j) {
      auto* ref = request.add_objects();
      ref->set_namespace_(objects[ask[j]]->ns);
      ref->set_key(objects[ask[j]]->key);
    }
    auto ctx = server::MakeClientContext(timeout_);
    absl::Status s = authorize_(*ctx);
    pv1::ForecastBatchResponse response;
    if (s.ok()) {
      ++calls_;
      s = server::FromGrpcStatus(stub_->ForecastBatch(ctx.get(), request, &response));
    }
    std::lock_guard lock(mu_);
    last_ = s;
    if (!s.ok()) return core::Annotate(s, "asking the prediction service for forecasts");
    std::map<std::pair<std::string, std::string>, const pv1::ObjectForecast*> got;
    for (const auto& f : response.forecasts()) got[{f.namespace_(), f.key()}] = &f;
    if (cache_.size() > max_cached_) cache_.clear();
    for (size_t j = from; j < to; ++j) {
      const ObjectStats* o = objects[ask[j]];
      auto it = got.find({o->ns, o->key});
      if (it == got.end() || it->second->version() != o->version) continue;  // none for this version
      pricing::Forecast f;
      for (const auto& d : it->second->daily()) f.reads_next_7d += d.mean();
      f.confidence = it->second->confidence();
      out[ask[j]] = f;
      cache_[{o->ns, o->key}] = {o->version, f};
    }
  }
  return out;
}

}  // namespace cloudflux::classification
