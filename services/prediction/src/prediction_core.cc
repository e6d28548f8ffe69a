#include "prediction_core.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/names.h"
#include "cloudflux/core/status.h"
#include "cloudflux/prediction/v1/events.pb.h"
#include "cloudflux/server/paging.h"

namespace cloudflux::prediction {

namespace v1 = cloudflux::prediction::v1;
using google::protobuf::util::TimeUtil;

namespace {

constexpr char kModelColumns[] =
    "version, state, reason, trigger, (extract(epoch from created_at) * 1000000)::bigint, "
    "(extract(epoch from trained_at) * 1000000)::bigint, (extract(epoch from promoted_at) * 1000000)::bigint, "
    "window_start_day, window_end_day, objects, coalesce(rmsse_model, -1), coalesce(rmsse_tsb, -1), "
    "coalesce(rmsse_seasonal_naive, -1), scored, training_rows, calibration_rows, learned_targets, features, "
    "coalesce(artifact_key, ''), coalesce(artifact_sha256, ''), coalesce(artifact_size, 0), adapted_origin, "
    "coalesce(live_coverage80, -1), coalesce(live_coverage95, -1)";

void SetTime(const db::Row& r, size_t column, google::protobuf::Timestamp* out) {
  if (!r.IsNull(column)) *out = TimeUtil::MicrosecondsToTimestamp(r.Int(column));
}

void SetDay(int64_t day, google::protobuf::Timestamp* out) { *out = TimeUtil::SecondsToTimestamp(day * 86400); }

v1::Model ModelFromRow(const db::Row& r) {
  v1::Model m;
  m.set_version(r.Text(0));
  m.set_state(static_cast<v1::ModelState>(r.Int(1)));
  m.set_reason(r.Text(2));
  m.set_trigger(r.Text(3));
  SetTime(r, 4, m.mutable_created());
  SetTime(r, 5, m.mutable_trained());
  SetTime(r, 6, m.mutable_promoted());
  if (!r.IsNull(7)) SetDay(r.Int(7), m.mutable_window_start());
  if (!r.IsNull(8)) SetDay(r.Int(8), m.mutable_window_end());
  m.set_objects(r.Int(9));
  auto* x = m.mutable_metrics();
  x->set_rmsse_model(r.Double(10));
  x->set_rmsse_tsb(r.Double(11));
  x->set_rmsse_seasonal_naive(r.Double(12));
  x->set_scored(r.Int(13));
  x->set_training_rows(r.Int(14));
  x->set_calibration_rows(r.Int(15));
  m.set_learned_targets(static_cast<int32_t>(r.Int(16)));
  std::string features = r.Text(17);
  if (features.size() > 2) {
    for (absl::string_view f : absl::StrSplit(absl::string_view(features).substr(1, features.size() - 2), ',')) {
      m.add_features(std::string(absl::StripPrefix(absl::StripSuffix(f, "\""), "\"")));
    }
  }
  m.set_artifact_namespace(kModelNamespace);
  m.set_artifact_key(r.Text(18));
  m.set_artifact_sha256(r.Text(19));
  m.set_artifact_size(r.Int(20));
  if (!r.IsNull(21)) SetDay(r.Int(21) + kDailyHorizons - 1, m.mutable_intervals_adapted_through());
  m.set_live_coverage80(r.Double(22));
  m.set_live_coverage95(r.Double(23));
  return m;
}

absl::Status CheckHorizon(int32_t horizon) {
  if (horizon < 0 || horizon > kDailyHorizons) {
    return absl::InvalidArgumentError(absl::StrCat("horizon_days must be 1..", kDailyHorizons, " (0 = ",
                                                   kDailyHorizons, "), not ", horizon));
  }
  return absl::OkStatus();
}

absl::Status CheckObject(const std::string& ns, const std::string& key) {
  CF_RETURN_IF_ERROR(core::ValidateNamespace(ns));
  return core::ValidateKey(key);
}

void SetInterval(const Interval& in, v1::Interval* out) {
  out->set_lower(in.lower);
  out->set_upper(in.upper);
}

// Reads on days [from, to) of a stored history.
int64_t ReadsBetween(const StoredHistory& h, int from, int to) {
  int64_t sum = 0;
  for (int d = std::max(from, h.first_day); d < to; ++d) {
    size_t i = static_cast<size_t>(d - h.first_day);
    if (i < h.reads.size()) sum += h.reads[i];
  }
  return sum;
}

}  // namespace

PredictionCore::PredictionCore(db::Pool& pool, HistoryStore& histories, ArtifactStore& artifacts,
                               const pricing::PriceCatalog& catalog, CoreOptions options, const core::Clock& clock)
    : pool_(pool),
      histories_(histories),
      artifacts_(artifacts),
      catalog_(catalog),
      options_(std::move(options)),
      clock_(clock),
      baseline_(Forecaster::Baseline()) {}

PredictionCore::~PredictionCore() { WaitForTraining(); }

void PredictionCore::WaitForTraining() {
  std::thread t;
  {
    std::lock_guard lock(mu_);
    t = std::move(trainer_);
  }
  if (t.joinable()) t.join();
}

void PredictionCore::CancelTraining() {
  cancel_ = true;
  WaitForTraining();
}

int PredictionCore::Today() const { return static_cast<int>(events::UnixDay(clock_.Now())); }

PredictionCore::Champion PredictionCore::CurrentChampion() const {
  std::lock_guard lock(mu_);
  return champion_;
}

std::shared_ptr<const GroupMeans> PredictionCore::Groups() {
  {
    std::lock_guard lock(mu_);
    if (groups_ != nullptr && groups_day_ == Today()) return groups_;
  }
  if (!RefreshGroups().ok()) {
    std::lock_guard lock(mu_);
    if (groups_ != nullptr) return groups_;  // yesterday's means beat none
    return std::make_shared<const GroupMeans>();
  }
  std::lock_guard lock(mu_);
  return groups_;
}

absl::Status PredictionCore::RefreshGroups() {
  int today = Today();
  CF_ASSIGN_OR_RETURN(GroupMeans means, histories_.GroupMeansAt(today));
  std::lock_guard lock(mu_);
  groups_ = std::make_shared<const GroupMeans>(std::move(means));
  groups_day_ = today;
  return absl::OkStatus();
}

absl::Status PredictionCore::RefreshChampion() {
  CF_ASSIGN_OR_RETURN(db::Result r,
                      pool_.Exec("SELECT version, coalesce(artifact_key, ''), coalesce(artifact_sha256, ''), "
                                 "coalesce(adapted_origin, -1), coalesce(adaptive_levels, '') FROM prediction.models "
                                 "WHERE state = $1",
                                 {std::to_string(v1::MODEL_STATE_CHAMPION)}));
  if (r.empty()) {
    std::lock_guard lock(mu_);
    champion_ = {};
    return absl::OkStatus();
  }
  const std::string version = r[0].Text(0);
  const int64_t adapted = r[0].Int(3);
  Champion current = CurrentChampion();
  if (current.version == version && current.adapted_origin == adapted) return absl::OkStatus();
  {
    std::lock_guard lock(mu_);
    if (unusable_champion_ == version) return absl::OkStatus();
  }
  // A new champion's artifact, or the same one with levels another replica
  // adapted: a fresh instance, swapped in whole (ForecastBatch may be using
  // the current one).
  std::shared_ptr<const std::string> bytes = current.version == version ? current.bytes : nullptr;
  if (bytes == nullptr) {
    CF_ASSIGN_OR_RETURN(std::string fetched, artifacts_.Get(r[0].Text(1), r[0].Text(2)));
    bytes = std::make_shared<const std::string>(std::move(fetched));
  }
  absl::StatusOr<std::unique_ptr<Forecaster>> loaded = Forecaster::Load(*bytes);
  if (absl::IsFailedPrecondition(loaded.status())) return ChampionOfAnotherBuild(version, loaded.status());
  if (!loaded.ok()) return loaded.status();
  if (adapted >= 0) CF_RETURN_IF_ERROR((*loaded)->SetAdaptiveLevels(r[0].Text(4)));
  if (current.version != version) core::LogInfo("champion model loaded", {{"version", version}});
  std::lock_guard lock(mu_);
  champion_ = {version, std::shared_ptr<const Forecaster>(std::move(*loaded)), bytes, adapted};
  return absl::OkStatus();
}

absl::Status PredictionCore::ChampionOfAnotherBuild(const std::string& version, const absl::Status& why) {
  {
    std::lock_guard lock(mu_);
    champion_ = {};
  }
  core::LogWarn("the champion model cannot be used by this build: forecasting from the baselines",
                {{"version", version}, {"error", std::string(why.message())}});
  // One run of this build's own, unless one was started after the champion
  // (the schedule retrains from there; an operator may promote its model).
  CF_ASSIGN_OR_RETURN(db::Result newer,
                      pool_.Exec("SELECT 1 FROM prediction.models WHERE seq > (SELECT seq FROM "
                                 "prediction.models WHERE version = $1) LIMIT 1",
                                 {version}));
  if (newer.empty()) {
    auto started = Train("upgrade", absl::StrCat("the champion ", version, " was trained on other features"));
    if (!started.ok() && !absl::IsFailedPrecondition(started.status())) return started.status();
  }
  // Seen: not fetched and refused again every refresh.
  std::lock_guard lock(mu_);
  unusable_champion_ = version;
  return absl::OkStatus();
}

absl::StatusOr<OriginScore> PredictionCore::AdaptIntervals(const Champion& champion,
                                                           const std::vector<ObjectHistory>& objects, int origin) {
  auto adapted = Forecaster::Load(*champion.bytes);
  if (!adapted.ok()) return adapted.status();
  CF_RETURN_IF_ERROR((*adapted)->SetAdaptiveLevels(champion.forecaster->AdaptiveLevels()));
  CF_ASSIGN_OR_RETURN(OriginScore score, (*adapted)->Adapt(objects, origin, options_.forecast_threads));
  if (score.scored == 0) return score;
  // Each origin once, by whichever replica gets there first.
  CF_ASSIGN_OR_RETURN(db::Result updated,
                      pool_.Exec("UPDATE prediction.models SET adaptive_levels = $2, adapted_origin = $3, "
                                 "live_coverage80 = $4, live_coverage95 = $5 WHERE version = $1 AND state = $6 AND "
                                 "coalesce(adapted_origin, -1) < $3 RETURNING 1",
                                 {champion.version, (*adapted)->AdaptiveLevels(), std::to_string(origin),
                                  absl::StrCat(score.coverage80), absl::StrCat(score.coverage95),
                                  std::to_string(v1::MODEL_STATE_CHAMPION)}));
  if (updated.empty()) {  // another replica observed this origin first: its levels are the ones
    CF_RETURN_IF_ERROR(RefreshChampion());
    return score;
  }
  core::LogInfo("intervals adapted", {{"version", champion.version},
                                      {"origin_day", std::to_string(origin)},
                                      {"coverage80", absl::StrCat(score.coverage80)},
                                      {"coverage95", absl::StrCat(score.coverage95)}});
  std::lock_guard lock(mu_);
  if (champion_.version == champion.version) {
    champion_ = {champion.version, std::shared_ptr<const Forecaster>(std::move(*adapted)), champion.bytes, origin};
  }
  return score;
}

absl::StatusOr<std::vector<v1::ObjectForecast>> PredictionCore::Run(const std::vector<StoredHistory>& objects,
                                                                    int horizon_days) {
  const int today = Today();
  if (horizon_days == 0) horizon_days = kDailyHorizons;
  Champion champion = CurrentChampion();
  const Forecaster& f = champion.forecaster != nullptr ? *champion.forecaster : *baseline_;
  std::vector<ObjectHistory> models;
  models.reserve(objects.size());
  for (const auto& o : objects) models.push_back(o.ToModel(today));
  std::vector<const ObjectHistory*> ptrs;
  for (const auto& m : models) ptrs.push_back(&m);
  CF_ASSIGN_OR_RETURN(std::vector<ObjectForecast> forecasts,
                      f.ForecastBatch(ptrs, today, *Groups(),
                                      objects.size() > 2000 ? options_.forecast_threads : 1));
  std::vector<v1::ObjectForecast> out(objects.size());
  for (size_t i = 0; i < objects.size(); ++i) {
    const StoredHistory& h = objects[i];
    const ObjectForecast& x = forecasts[i];
    v1::ObjectForecast& p = out[i];
    p.set_namespace_(h.ns);
    p.set_key(h.key);
    p.set_version(h.version);
    SetDay(today, p.mutable_first_day());
    for (int t = 0; t < horizon_days; ++t) {
      auto* w = p.add_daily();
      w->set_start_day(t);
      w->set_days(1);
      w->set_mean(x.mean[t]);
      SetInterval(x.p80[t], w->mutable_p80());
      SetInterval(x.p95[t], w->mutable_p95());
    }
    for (int t = kDailyHorizons; t < kTargets; ++t) {
      auto* w = p.add_sums();
      w->set_start_day(0);
      w->set_days(TargetDays(t));
      w->set_mean(x.mean[t]);
      SetInterval(x.p80[t], w->mutable_p80());
      SetInterval(x.p95[t], w->mutable_p95());
    }
    for (size_t z = 0; z < kZeroWindows.size(); ++z) {
      auto* pz = p.add_p_zero();
      pz->set_days(kZeroWindows[z]);
      pz->set_probability(x.p_zero[z]);
    }
    p.set_confidence(x.confidence);
    p.set_method(x.learned ? "learned" : "tsb");
    if (x.learned) p.set_model_version(champion.version);
    p.set_days_observed(std::max(0, today - h.first_day));
    p.set_reads_last_7_days(ReadsBetween(h, today - 7, today));
  }
  return out;
}

absl::StatusOr<v1::ObjectForecast> PredictionCore::Forecast(const v1::ForecastRequest& request) {
  CF_RETURN_IF_ERROR(CheckObject(request.namespace_(), request.key()));
  CF_RETURN_IF_ERROR(CheckHorizon(request.horizon_days()));
  CF_ASSIGN_OR_RETURN(StoredHistory h, histories_.Get(request.namespace_(), request.key()));
  CF_ASSIGN_OR_RETURN(auto out, Run({h}, request.horizon_days()));
  return out[0];
}

absl::StatusOr<v1::ForecastBatchResponse> PredictionCore::ForecastBatch(const v1::ForecastBatchRequest& request) {
  CF_RETURN_IF_ERROR(CheckHorizon(request.horizon_days()));
  v1::ForecastBatchResponse response;
  response.set_model_version(CurrentChampion().version);
  if (request.objects_size() > 0) {
    if (!request.namespace_().empty() || !request.prefix().empty()) {
      return absl::InvalidArgumentError("give either objects or a namespace (and prefix), not both");
    }
    if (request.objects_size() > kMaxBatchObjects) {
      return absl::InvalidArgumentError(
          absl::StrCat("a batch has at most ", kMaxBatchObjects, " objects, not ", request.objects_size()));
    }
    std::vector<events::ObjectId> ids;
    for (const auto& o : request.objects()) {
      CF_RETURN_IF_ERROR(CheckObject(o.namespace_(), o.key()));
      ids.emplace_back(o.namespace_(), o.key());
    }
    CF_ASSIGN_OR_RETURN(std::vector<StoredHistory> found, histories_.GetMany(ids));
    std::map<events::ObjectId, size_t> index;
    for (size_t i = 0; i < found.size(); ++i) index[{found[i].ns, found[i].key}] = i;
    std::vector<StoredHistory> ordered;
    for (const auto& o : request.objects()) {
      auto it = index.find({o.namespace_(), o.key()});
      if (it == index.end()) {
        *response.add_not_found() = o;
      } else {
        ordered.push_back(found[it->second]);
      }
    }
    CF_ASSIGN_OR_RETURN(auto forecasts, Run(ordered, request.horizon_days()));
    for (auto& f : forecasts) *response.add_forecasts() = std::move(f);
    return response;
  }
  if (request.namespace_().empty()) {
    return absl::InvalidArgumentError("an empty batch: give objects, or a namespace (and prefix)");
  }
  CF_RETURN_IF_ERROR(core::ValidateNamespace(request.namespace_()));
  CF_RETURN_IF_ERROR(core::ValidatePrefix(request.prefix()));
  CF_ASSIGN_OR_RETURN(server::PageCursor page, server::ParsePage(request.page(), 100, kMaxBatchObjects));
  CF_ASSIGN_OR_RETURN(std::vector<StoredHistory> found,
                      histories_.List(request.namespace_(), request.prefix(), page.after, page.size + 1));
  bool more = static_cast<int>(found.size()) > page.size;
  if (more) found.resize(page.size);
  CF_ASSIGN_OR_RETURN(auto forecasts, Run(found, request.horizon_days()));
  for (auto& f : forecasts) *response.add_forecasts() = std::move(f);
  response.mutable_page()->set_total_size(-1);
  if (more) response.mutable_page()->set_next_page_token(server::PageToken(found.back().key));
  return response;
}

absl::StatusOr<v1::RecommendTierResponse> PredictionCore::RecommendTier(const v1::RecommendTierRequest& request) {
  CF_RETURN_IF_ERROR(CheckObject(request.namespace_(), request.key()));
  if (request.max_first_byte_latency_ms() < 0) {
    return absl::InvalidArgumentError("max_first_byte_latency_ms must not be negative");
  }
  CF_ASSIGN_OR_RETURN(StoredHistory h, histories_.Get(request.namespace_(), request.key()));
  auto cloud = options_.backend_clouds.find(h.backend);
  if (cloud == options_.backend_clouds.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backend '", h.backend, "' has no cloud in --backend_clouds, so its prices are unknown"));
  }
  const pricing::ClassPrice* current = catalog_.ForTier(cloud->second, h.tier);
  if (current == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("the price catalog has no class for tier ",
                                                      cloudflux::common::v1::StorageTier_Name(h.tier)));
  }
  CF_ASSIGN_OR_RETURN(auto forecasts, Run({h}, kDailyHorizons));
  v1::RecommendTierResponse out;
  *out.mutable_forecast() = forecasts[0];
  const int today = Today();
  absl::Time now = clock_.Now();
  auto days = [&](std::optional<absl::Time> since) {
    return since.has_value() ? std::max(0.0, absl::ToDoubleHours(now - *since) / 24) : 0.0;
  };
  absl::Time written = h.created.value_or(h.placed.value_or(now));
  // Windows ending today, today's reads so far included (as classification's).
  pricing::AccessStats stats{.size = h.size,
                             .age_days = days(written),
                             .days_in_class = days(h.placed.value_or(written)),
                             .reads_1d = ReadsBetween(h, today, today + 1),
                             .reads_7d = ReadsBetween(h, today - 6, today + 1),
                             .reads_30d = ReadsBetween(h, today - 29, today + 1),
                             .reads_90d = ReadsBetween(h, today - 89, today + 1),
                             .days_since_last_read = days(h.last_read.value_or(written))};
  absl::Time idle_since = std::max(h.placed.value_or(written), h.last_read.value_or(written));
  pricing::Placement placement{current, stats.days_in_class, days(idle_since)};
  pricing::TierPolicy policy = options_.policy;
  policy.constraints.allowed_clouds = {cloud->second};
  policy.constraints.tier_classes_only = true;  // objects move by tier
  policy.constraints.max_first_byte_latency_ms = request.max_first_byte_latency_ms() > 0
                                                     ? request.max_first_byte_latency_ms()
                                                     : options_.default_max_latency_ms;
  double next7 = 0;
  for (const auto& d : forecasts[0].daily()) next7 += d.mean();
  pricing::Decision d = pricing::Decide(catalog_, stats, placement, policy,
                                        pricing::Forecast{.reads_next_7d = next7,
                                                          .confidence = forecasts[0].confidence()});
  out.set_cloud(d.target->cloud());
  out.set_storage_class(d.target->storage_class());
  out.set_tier(d.target->tier());
  out.set_move(d.move);
  out.set_current_monthly_cost(d.current_monthly);
  out.set_target_monthly_cost(d.target_monthly);
  out.set_saving(d.saving);
  out.set_horizon_days(policy.horizon_days);
  out.set_reason(d.reason);
  return out;
}

absl::StatusOr<v1::ListModelsResponse> PredictionCore::ListModels(const v1::ListModelsRequest& request) {
  CF_ASSIGN_OR_RETURN(server::PageCursor page, server::ParsePage(request.page(), 50, 500));
  int64_t before = std::numeric_limits<int64_t>::max();
  if (!page.after.empty() && !absl::SimpleAtoi(page.after, &before)) {
    return absl::InvalidArgumentError("malformed page_token");
  }
  CF_ASSIGN_OR_RETURN(db::Result r,
                      pool_.Exec(absl::StrCat("SELECT ", kModelColumns, ", seq FROM prediction.models WHERE "
                                              "seq < $1 ORDER BY seq DESC LIMIT $2"),
                                 {std::to_string(before), std::to_string(page.size + 1)}));
  v1::ListModelsResponse out;
  size_t n = std::min<size_t>(r.size(), static_cast<size_t>(page.size));
  for (size_t i = 0; i < n; ++i) *out.add_models() = ModelFromRow(r[i]);
  out.mutable_page()->set_total_size(-1);
  if (r.size() > n) out.mutable_page()->set_next_page_token(server::PageToken(r[n - 1].Text(21)));
  return out;
}

absl::StatusOr<v1::Model> PredictionCore::GetModel(const std::string& version) {
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      version.empty()
          ? pool_.Exec(absl::StrCat("SELECT ", kModelColumns, " FROM prediction.models WHERE state = $1"),
                       {std::to_string(v1::MODEL_STATE_CHAMPION)})
          : pool_.Exec(absl::StrCat("SELECT ", kModelColumns, " FROM prediction.models WHERE version = $1"),
                       {version}));
  if (r.empty()) {
    return absl::NotFoundError(version.empty() ? std::string("there is no champion model yet")
                                               : absl::StrCat("no model '", version, "'"));
  }
  return ModelFromRow(r[0]);
}

absl::StatusOr<bool> PredictionCore::TakeLease() {
  const int64_t ms = absl::ToInt64Milliseconds(options_.training_lease);
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      pool_.Exec("INSERT INTO prediction.leases AS l (name, holder, expires_at) VALUES ('train', $1, now() + $2 * "
                 "interval '1 millisecond') ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, "
                 "expires_at = EXCLUDED.expires_at WHERE l.expires_at < now() OR l.holder = EXCLUDED.holder "
                 "RETURNING holder",
                 {options_.holder, std::to_string(ms)}));
  return !r.empty();
}

void PredictionCore::ReleaseLease() {
  auto s = pool_.Exec("DELETE FROM prediction.leases WHERE name = 'train' AND holder = $1", {options_.holder});
  if (!s.ok()) core::LogWarn("cannot release the training lease", {{"error", std::string(s.status().message())}});
}

absl::StatusOr<v1::Model> PredictionCore::Train(const std::string& trigger, const std::string& reason) {
  std::lock_guard lock(mu_);
  if (cancel_) return absl::UnavailableError("this replica is shutting down");
  if (training_) return absl::FailedPreconditionError("a training run of this replica is in progress");
  CF_ASSIGN_OR_RETURN(bool leased, TakeLease());
  if (!leased) return absl::FailedPreconditionError("another replica is training a model");
  if (trainer_.joinable()) trainer_.join();  // a finished run
  // Any run still marked TRAINING belonged to a replica that lost the lease
  // (it stopped): it will never finish.
  db::Result r;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
        CF_RETURN_IF_ERROR(tx.Exec("UPDATE prediction.models SET state = $1, reason = 'the replica training it "
                                   "stopped before it finished' WHERE state = $2",
                                   {std::to_string(v1::MODEL_STATE_FAILED), std::to_string(v1::MODEL_STATE_TRAINING)})
                               .status());
        CF_ASSIGN_OR_RETURN(
            r, tx.Exec(absl::StrCat("WITH s AS (SELECT nextval(pg_get_serial_sequence('prediction.models', "
                                    "'seq')) AS n) INSERT INTO prediction.models (seq, version, state, trigger, "
                                    "reason) SELECT n, 'v' || n, $1, $2, $3 FROM s RETURNING ",
                                    kModelColumns),
                       {std::to_string(v1::MODEL_STATE_TRAINING), trigger, reason}));
        return absl::OkStatus();
      }));
  v1::Model model = ModelFromRow(r[0]);
  training_ = true;
  trainer_ = std::thread([this, version = model.version()] {
    absl::Status s = RunTraining(version);
    if (absl::IsCancelled(s)) s = absl::CancelledError("training cancelled: the replica training it shut down");
    if (!s.ok()) {
      core::LogWarn("training failed", {{"version", version}, {"error", std::string(s.message())}});
      (void)pool_.Exec("UPDATE prediction.models SET state = $1, reason = $2 WHERE version = $3",
                       {std::to_string(v1::MODEL_STATE_FAILED), std::string(s.message()), version});
    }
    ReleaseLease();
    training_ = false;
  });
  return model;
}

absl::Status PredictionCore::RunTraining(std::string version) {
  const int as_of = Today();
  const int today = as_of;
  std::vector<ObjectHistory> objects;
  CF_RETURN_IF_ERROR(histories_.ForEach(5000, [&](std::vector<StoredHistory>& page) {
    if (cancel_) return absl::CancelledError("training cancelled");
    for (const auto& h : page) objects.push_back(h.ToModel(today));
    return absl::OkStatus();
  }));
  if (static_cast<int>(objects.size()) < options_.min_objects_to_train) {
    return absl::FailedPreconditionError(absl::StrCat("only ", objects.size(),
                                                      " objects have a history; training needs at least ",
                                                      options_.min_objects_to_train));
  }
  absl::Time started = absl::Now();
  TrainingOptions training = options_.training;
  training.cancel = &cancel_;
  CF_ASSIGN_OR_RETURN(std::unique_ptr<Forecaster> trained, Forecaster::Train(objects, as_of, training));
  std::shared_ptr<const Forecaster> challenger(std::move(trained));
  CF_ASSIGN_OR_RETURN(std::string bytes, challenger->Save());
  const std::string key = absl::StrCat("prediction/", version, ".model");
  CF_ASSIGN_OR_RETURN(cloudflux::storage::v1::ObjectInfo stored, artifacts_.Put(key, bytes));

  // Promotion: both baselines beaten on its own held-out backtest, and the
  // champion beaten on the same recent week (held out from the challenger's
  // training: the last origins calibrate, they do not train).
  const BacktestMetrics& m = challenger->metrics();
  bool beats_baselines = m.scored > 0 && m.rmsse_model < m.rmsse_tsb && m.rmsse_model < m.rmsse_seasonal_naive;
  std::string reason =
      absl::StrFormat("backtest RMSSE %.4f vs TSB %.4f and seasonal naive %.4f over %d forecasts",
                      m.rmsse_model, m.rmsse_tsb, m.rmsse_seasonal_naive, m.scored);
  bool promote = beats_baselines;
  Champion champion = CurrentChampion();
  if (!beats_baselines) {
    absl::StrAppend(&reason, ": does not beat both baselines");
  } else if (champion.forecaster != nullptr) {
    const int origin = as_of - kDailyHorizons;
    CF_ASSIGN_OR_RETURN(OriginScore mine, challenger->ScoreAt(objects, origin, options_.forecast_threads));
    CF_ASSIGN_OR_RETURN(OriginScore theirs, champion.forecaster->ScoreAt(objects, origin, options_.forecast_threads));
    promote = mine.rmsse_model >= 0 && mine.rmsse_model < theirs.rmsse_model;
    absl::StrAppend(&reason, absl::StrFormat("; last 7 days RMSSE %.4f vs champion %s %.4f", mine.rmsse_model,
                                             champion.version, theirs.rmsse_model));
    if (!promote) absl::StrAppend(&reason, ": the champion stays");
  }
  int window_start = as_of;
  for (const auto& o : objects) window_start = std::min(window_start, o.first_day);
  std::vector<std::string> features(FeatureNames().begin(), FeatureNames().end());
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(
        db::Result r,
        tx.Exec(absl::StrCat("UPDATE prediction.models SET state = $2, reason = $3, trained_at = now(), "
                             "window_start_day = $4, window_end_day = $5, objects = $6, rmsse_model = $7, "
                             "rmsse_tsb = $8, rmsse_seasonal_naive = $9, scored = $10, training_rows = $11, "
                             "calibration_rows = $12, learned_targets = $13, features = $14::text[], "
                             "artifact_key = $15, artifact_sha256 = $16, artifact_size = $17 WHERE version = $1 "
                             "RETURNING ",
                             kModelColumns),
                {version, std::to_string(v1::MODEL_STATE_TRAINED), reason, std::to_string(window_start),
                 std::to_string(as_of - 1), std::to_string(objects.size()), std::to_string(m.rmsse_model),
                 std::to_string(m.rmsse_tsb), std::to_string(m.rmsse_seasonal_naive), std::to_string(m.scored),
                 std::to_string(m.training_rows), std::to_string(m.calibration_rows),
                 std::to_string(challenger->learned_targets()), db::ArrayLiteral(features), key,
                 stored.sha256(), std::to_string(stored.size())}));
    if (r.empty()) return absl::AbortedError("the model's registry row is gone");
    v1::ModelTrained event;
    *event.mutable_model() = ModelFromRow(r[0]);
    CF_RETURN_IF_ERROR(
        outbox_.Enqueue(tx, kModelTopic, events::MakeEnvelope("prediction", version, version, event, clock_)));
    if (promote) CF_RETURN_IF_ERROR(MakeChampion(tx, version, false).status());
    return absl::OkStatus();
  }));
  core::LogInfo("model trained", {{"version", version},
                                  {"objects", std::to_string(objects.size())},
                                  {"seconds", absl::StrCat(absl::ToDoubleSeconds(absl::Now() - started))},
                                  {"promoted", promote ? "true" : "false"},
                                  {"reason", reason}});
  if (promote) {
    std::lock_guard lock(mu_);
    champion_ = {version, challenger, std::make_shared<const std::string>(std::move(bytes)), -1};
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Model> PredictionCore::MakeChampion(db::Transaction& tx, const std::string& version,
                                                       bool rollback) {
  CF_ASSIGN_OR_RETURN(db::Result prev, tx.Exec("SELECT version FROM prediction.models WHERE state = $1 FOR UPDATE",
                                               {std::to_string(v1::MODEL_STATE_CHAMPION)}));
  std::string previous = prev.empty() ? "" : prev[0].Text(0);
  if (!previous.empty()) {
    // A rolled-back champion goes back to the challengers; a replaced one
    // is retired (what a rollback returns to).
    CF_RETURN_IF_ERROR(
        tx.Exec("UPDATE prediction.models SET state = $2, reason = $3 WHERE version = $1",
                {previous,
                 std::to_string(rollback ? v1::MODEL_STATE_TRAINED : v1::MODEL_STATE_RETIRED),
                 rollback ? absl::StrCat("rolled back to ", version) : absl::StrCat("replaced by ", version)})
            .status());
  }
  CF_ASSIGN_OR_RETURN(db::Result r,
                      tx.Exec(absl::StrCat("UPDATE prediction.models SET state = $2, promoted_at = now() WHERE "
                                           "version = $1 RETURNING ",
                                           kModelColumns),
                              {version, std::to_string(v1::MODEL_STATE_CHAMPION)}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no model '", version, "'"));
  v1::ModelPromoted event;
  *event.mutable_model() = ModelFromRow(r[0]);
  // A model another build trained cannot forecast here (the transaction,
  // and with it the promotion, is undone).
  if (!std::equal(event.model().features().begin(), event.model().features().end(), FeatureNames().begin(),
                  FeatureNames().end())) {
    return absl::FailedPreconditionError(absl::StrCat("model '", version,
                                                      "' was trained on other features than this build computes: "
                                                      "train a new one"));
  }
  event.set_previous_version(previous);
  event.set_rollback(rollback);
  CF_RETURN_IF_ERROR(
      outbox_.Enqueue(tx, kModelTopic, events::MakeEnvelope("prediction", version, version, event, clock_)));
  return event.model();
}

absl::StatusOr<v1::Model> PredictionCore::Promote(const std::string& version) {
  if (version.empty()) return absl::InvalidArgumentError("version is required");
  v1::Model out;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result r,
                        tx.Exec(absl::StrCat("SELECT ", kModelColumns,
                                             " FROM prediction.models WHERE version = $1 FOR UPDATE"),
                                {version}));
    if (r.empty()) return absl::NotFoundError(absl::StrCat("no model '", version, "'"));
    v1::Model m = ModelFromRow(r[0]);
    switch (m.state()) {
      case v1::MODEL_STATE_CHAMPION:
        out = m;
        return absl::OkStatus();
      case v1::MODEL_STATE_TRAINED:
      case v1::MODEL_STATE_RETIRED: {
        CF_ASSIGN_OR_RETURN(out, MakeChampion(tx, version, false));
        return absl::OkStatus();
      }
      default:
        return absl::FailedPreconditionError(absl::StrCat("model '", version, "' is ",
                                                          v1::ModelState_Name(m.state()),
                                                          ": only a trained model can be promoted"));
    }
  }));
  CF_RETURN_IF_ERROR(RefreshChampion());
  return out;
}

absl::StatusOr<v1::Model> PredictionCore::Rollback() {
  v1::Model out;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result cur, tx.Exec("SELECT version FROM prediction.models WHERE state = $1 FOR UPDATE",
                                                {std::to_string(v1::MODEL_STATE_CHAMPION)}));
    if (cur.empty()) return absl::FailedPreconditionError("there is no champion to roll back");
    CF_ASSIGN_OR_RETURN(db::Result prev,
                        tx.Exec("SELECT version FROM prediction.models WHERE state = $1 AND promoted_at IS NOT "
                                "NULL ORDER BY promoted_at DESC LIMIT 1",
                                {std::to_string(v1::MODEL_STATE_RETIRED)}));
    if (prev.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("no earlier champion to roll back to from ", cur[0].Text(0)));
    }
    CF_ASSIGN_OR_RETURN(out, MakeChampion(tx, prev[0].Text(0), true));
    return absl::OkStatus();
  }));
  CF_RETURN_IF_ERROR(RefreshChampion());
  return out;
}

absl::Status PredictionCore::CheckDrift() {
  Champion champion = CurrentChampion();
  if (champion.forecaster == nullptr || training_) return absl::OkStatus();
  const int today = Today();
  std::vector<ObjectHistory> objects;
  CF_RETURN_IF_ERROR(histories_.ForEach(5000, [&](std::vector<StoredHistory>& page) {
    for (const auto& h : page) objects.push_back(h.ToModel(today));
    return absl::OkStatus();
  }));
  const int origin = today - kDailyHorizons;
  // The week whose outcomes are all known: scored, and once per origin fed
  // to the intervals' adaptive step.
  OriginScore score;
  if (champion.bytes != nullptr && champion.adapted_origin < origin) {
    CF_ASSIGN_OR_RETURN(score, AdaptIntervals(champion, objects, origin));
  } else {
    CF_ASSIGN_OR_RETURN(score, champion.forecaster->ScoreAt(objects, origin, options_.forecast_threads));
  }
  if (score.scored == 0) return absl::OkStatus();
  std::string why;
  if (score.rmsse_model > options_.drift_rmsse_ratio * score.rmsse_tsb) {
    why = absl::StrFormat("drift: last 7 days RMSSE %.4f above TSB's %.4f", score.rmsse_model, score.rmsse_tsb);
  } else if (score.coverage80 < options_.drift_coverage_low || score.coverage80 > options_.drift_coverage_high) {
    why = absl::StrFormat("drift: last 7 days 80%% interval coverage %.3f", score.coverage80);
  }
  if (why.empty()) return absl::OkStatus();
  core::LogInfo("champion drifted; training a challenger", {{"version", champion.version}, {"why", why}});
  auto started = Train("drift", why);
  return started.ok() || started.status().code() == absl::StatusCode::kFailedPrecondition ? absl::OkStatus()
                                                                                          : started.status();
}

absl::Status PredictionCore::TrainIfDue(absl::Duration max_age) {
  if (training_) return absl::OkStatus();
  CF_ASSIGN_OR_RETURN(db::Result r, pool_.Exec("SELECT coalesce(extract(epoch from now() - max(created_at)), -1) "
                                               "FROM prediction.models"));
  double age = r[0].Double(0);
  if (age >= 0 && age < absl::ToDoubleSeconds(max_age)) return absl::OkStatus();
  auto started = Train("schedule", age < 0 ? "first model" : "scheduled retraining");
  return started.ok() || started.status().code() == absl::StatusCode::kFailedPrecondition ? absl::OkStatus()
                                                                                          : started.status();
}

}  // namespace cloudflux::prediction
