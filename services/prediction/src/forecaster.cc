#include "forecaster.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <cmath>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "baselines.h"
#include "cloudflux/core/status.h"

namespace cloudflux::prediction {

std::span<const double> HistoryBefore(const ObjectHistory& o, int day) {
  int n = std::clamp(day - o.first_day, 0, static_cast<int>(o.reads.size()));
  return std::span<const double>(o.reads.data(), static_cast<size_t>(n));
}

namespace {

// Reads of `o` on days [from, from + days); days past its data count as 0.
double WindowSum(const ObjectHistory& o, int from, int days) {
  double sum = 0;
  for (int d = from; d < from + days; ++d) {
    int i = d - o.first_day;
    if (i >= 0 && i < static_cast<int>(o.reads.size())) sum += o.reads[i];
  }
  return sum;
}

int Weekday(int day) { return ((day % 7) + 7) % 7; }

ObjectContext Context(const ObjectHistory& o, int origin, const GroupMeans& groups) {
  ObjectContext c;
  c.size_bytes = o.size_bytes;
  c.age_days = origin - o.first_day;
  c.origin_weekday = Weekday(origin);
  groups.Fill(o, c);
  return c;
}

// Labels are never read past the end of the training data.
int TargetEnd(int t) { return TargetStart(t) + TargetDays(t); }

// The rows of one training set: features in origin order, with where each
// row came from.
struct Rows {
  FeatureMatrix x;
  std::vector<int> object, origin;
  std::vector<Activity> activity;
};

FeatureMatrix Slice(const FeatureMatrix& x, size_t from, size_t to) {
  FeatureMatrix out;
  out.cols = x.cols;
  out.values.assign(x.values.begin() + static_cast<std::ptrdiff_t>(from * x.cols),
                    x.values.begin() + static_cast<std::ptrdiff_t>(to * x.cols));
  return out;
}

// The first row whose origin is after `last_origin` (rows are in origin
// order).
size_t RowsUpTo(const Rows& rows, int last_origin) {
  return static_cast<size_t>(std::upper_bound(rows.origin.begin(), rows.origin.end(), last_origin) -
                             rows.origin.begin());
}

// A length-prefixed bundle of named sections.
void PutSection(std::string& out, const std::string& name, const std::string& bytes) {
  absl::StrAppend(&out, name, " ", bytes.size(), "\n", bytes);
}

}  // namespace

GroupMeans GroupMeans::At(const std::vector<ObjectHistory>& objects, int day) {
  std::map<std::string, std::array<double, 3>> g, n;  // sum7, sum28, objects
  for (const ObjectHistory& o : objects) {
    if (o.first_day >= day) continue;
    double s7 = WindowSum(o, day - 7, 7), s28 = WindowSum(o, day - 28, 28);
    for (auto* m : {&g, &n}) {
      auto& a = (*m)[m == &g ? o.ns + "/" + o.group : o.ns];
      a[0] += s7;
      a[1] += s28;
      a[2] += 1;
    }
  }
  GroupMeans out;
  for (auto& [k, a] : g) out.group[k] = {a[0] / (7 * a[2]), a[1] / (28 * a[2])};
  for (auto& [k, a] : n) out.ns[k] = {a[0] / (7 * a[2]), a[1] / (28 * a[2])};
  return out;
}

void GroupMeans::Fill(const ObjectHistory& o, ObjectContext& c) const {
  if (auto it = group.find(o.ns + "/" + o.group); it != group.end()) {
    c.group_mean_7 = it->second.first;
    c.group_mean_28 = it->second.second;
  }
  if (auto it = ns.find(o.ns); it != ns.end()) {
    c.namespace_mean_7 = it->second.first;
    c.namespace_mean_28 = it->second.second;
  }
}

double ObjectForecast::next_7_days() const {
  double s = 0;
  for (int h = 0; h < kDailyHorizons; ++h) s += mean[h];
  return s;
}

absl::StatusOr<std::unique_ptr<Forecaster>> Forecaster::Train(const std::vector<ObjectHistory>& objects,
                                                              int as_of, const TrainingOptions& options) {
  if (options.origin_stride_days < 1 || options.calibration_origins < 1 || options.max_origins < 2 ||
      options.long_origins < 0 || options.long_origin_stride_days < 1) {
    return absl::InvalidArgumentError("training needs positive strides and at least two origins");
  }
  auto f = std::unique_ptr<Forecaster>(new Forecaster());
  f->as_of_ = as_of;
  int first = as_of;
  for (const ObjectHistory& o : objects) first = std::min(first, o.first_day);
  // Origins every few days back from where the 1-day target's window ends
  // by as_of, then sparser ones for the long sums.
  std::vector<int> origins;
  int d = as_of - 1;
  for (; d > first && static_cast<int>(origins.size()) < options.max_origins; d -= options.origin_stride_days) {
    origins.push_back(d);
  }
  for (int extra = 0; d > first && extra < options.long_origins; d -= options.long_origin_stride_days, ++extra) {
    origins.push_back(d);
  }
  std::reverse(origins.begin(), origins.end());
  Rows rows;
  rows.x.cols = FeatureNames().size();
  auto cancelled = [&] { return options.cancel != nullptr && options.cancel->load(); };
  for (int origin : origins) {
    if (cancelled()) return absl::CancelledError("training cancelled");
    GroupMeans groups = GroupMeans::At(objects, origin);
    for (size_t i = 0; i < objects.size(); ++i) {
      const ObjectHistory& o = objects[i];
      if (o.first_day >= origin || origin - o.first_day > static_cast<int>(o.reads.size())) continue;
      auto history = HistoryBefore(o, origin);
      rows.x.AddRow(Features(history, Context(o, origin, groups)));
      rows.object.push_back(static_cast<int>(i));
      rows.origin.push_back(origin);
      rows.activity.push_back(ClassifyActivity(history));
    }
  }
  auto label = [&](size_t r, int from, int days) {
    return WindowSum(objects[rows.object[r]], rows.origin[r] + from, days);
  };

  // Per target: rows whose window ends by as_of, from its last max_origins
  // origins; of those, the last calibration_origins origins are held out.
  // The first row of the max_origins-th origin before the row `end`.
  auto recent_from = [&](size_t end) -> size_t {
    if (end == 0) return 0;
    auto last = std::find(origins.begin(), origins.end(), rows.origin[end - 1]);
    auto oldest = last - std::min<std::ptrdiff_t>(last - origins.begin(), options.max_origins - 1);
    return RowsUpTo(rows, *oldest - 1);
  };
  std::array<std::vector<float>, kTargets> held_out_forecast;
  std::array<size_t, kTargets> cal_from{}, cal_to{};
  // One job per model (each target, each zero window), run on
  // params.threads workers with one XGBoost thread each: OpenMP's spinning
  // threads cost more than they give on small machines.
  std::vector<std::function<absl::Status()>> jobs;
  for (int t = 0; t < kTargets; ++t) {
    const size_t valid = RowsUpTo(rows, as_of - TargetEnd(t));
    int last_valid_origin = valid == 0 ? first : rows.origin[valid - 1];
    const size_t train_to =
        RowsUpTo(rows, last_valid_origin - options.calibration_origins * options.origin_stride_days);
    const size_t train_from = std::min(recent_from(valid), train_to);
    cal_from[t] = train_to;
    cal_to[t] = valid;
    if (train_to - train_from < options.min_training_rows || valid == train_to) continue;
    if (t == 0) {
      f->metrics_.training_rows = static_cast<int64_t>(train_to - train_from);
      f->metrics_.calibration_rows = static_cast<int64_t>(valid - train_to);
    }
    jobs.push_back([&, t, train_from, train_to, valid]() -> absl::Status {
      std::vector<float> y(train_to - train_from);
      for (size_t r = train_from; r < train_to; ++r) {
        y[r - train_from] = static_cast<float>(label(r, TargetStart(t), TargetDays(t)));
      }
      GbmParams params = options.params;
      params.threads = 1;
      auto model = GbmModel::Train(rows.x.values.data() + train_from * rows.x.cols, train_to - train_from,
                                   rows.x.cols, y, params, options.cancel);
      if (!model.ok()) return model.status();
      auto predicted = model->Predict(Slice(rows.x, train_to, valid));
      if (!predicted.ok()) return predicted.status();
      held_out_forecast[t] = std::move(*predicted);
      f->models_[t] = std::move(*model);
      return absl::OkStatus();
    });
  }
  for (size_t w = 0; w < kZeroWindows.size(); ++w) {
    const size_t valid = RowsUpTo(rows, as_of - kZeroWindows[w]);
    int last_valid_origin = valid == 0 ? first : rows.origin[valid - 1];
    const size_t train_to =
        RowsUpTo(rows, last_valid_origin - options.calibration_origins * options.origin_stride_days);
    const size_t train_from = std::min(recent_from(valid), train_to);
    if (train_to - train_from < options.min_training_rows) continue;
    jobs.push_back([&, w, train_from, train_to]() -> absl::Status {
      std::vector<float> y(train_to - train_from);
      bool both = false;
      for (size_t r = train_from; r < train_to; ++r) {
        y[r - train_from] = label(r, 0, kZeroWindows[w]) == 0 ? 1.f : 0.f;
        both = both || y[r - train_from] != y[0];
      }
      if (!both) return absl::OkStatus();  // one class only: nothing to learn
      GbmParams params = options.zero_params;
      params.threads = 1;
      auto model = GbmModel::Train(rows.x.values.data() + train_from * rows.x.cols, train_to - train_from,
                                   rows.x.cols, y, params, options.cancel);
      if (!model.ok()) return model.status();
      f->zero_models_[w] = std::move(*model);
      return absl::OkStatus();
    });
  }
  std::atomic<size_t> next{0};
  std::vector<absl::Status> results(jobs.size());
  auto work = [&] {
    for (size_t j = next++; j < jobs.size(); j = next++) {
      results[j] = cancelled() ? absl::CancelledError("training cancelled") : jobs[j]();
    }
  };
  std::vector<std::thread> workers;
  for (int i = 1; i < std::max(1, options.params.threads); ++i) workers.emplace_back(work);
  work();
  for (auto& w : workers) w.join();
  for (const absl::Status& s : results) {
    if (!s.ok()) return s;
  }

  // Conformal calibration on the held-out rows (the fallback where a target
  // has no model).
  const size_t tsb_col = FeatureIndex("tsb");
  for (int t = 0; t < kTargets; ++t) {
    for (size_t r = cal_from[t]; r < cal_to[t]; ++r) {
      double forecast = f->models_[t].has_value()
                            ? held_out_forecast[t][r - cal_from[t]]
                            : rows.x.values[r * rows.x.cols + tsb_col] * TargetDays(t);
      f->conformal_.Add(t, rows.activity[r], forecast, label(r, TargetStart(t), TargetDays(t)));
    }
  }
  f->conformal_.Finish();

  // Backtest of the 7 daily forecasts on the rows held out for all of them.
  const size_t from = cal_from[kDailyHorizons - 1], to = cal_to[kDailyHorizons - 1];
  double sum_model = 0, sum_tsb = 0, sum_naive = 0;
  int64_t scored = 0;
  for (size_t r = std::max(from, cal_from[0]); r < to; ++r) {
    const ObjectHistory& o = objects[rows.object[r]];
    auto history = HistoryBefore(o, rows.origin[r]);
    std::vector<double> actual(kDailyHorizons), model(kDailyHorizons);
    for (int h = 0; h < kDailyHorizons; ++h) {
      actual[h] = label(r, h, 1);
      model[h] = f->models_[h].has_value() ? held_out_forecast[h][r - cal_from[h]]
                                           : rows.x.values[r * rows.x.cols + tsb_col];
    }
    double m = Rmsse(history, actual, model);
    if (m < 0) continue;
    sum_model += m;
    sum_tsb += Rmsse(history, actual, TsbForecast(history, kDailyHorizons));
    sum_naive += Rmsse(history, actual, SeasonalNaive(history, kDailyHorizons));
    ++scored;
  }
  if (scored > 0) {
    f->metrics_.rmsse_model = sum_model / scored;
    f->metrics_.rmsse_tsb = sum_tsb / scored;
    f->metrics_.rmsse_seasonal_naive = sum_naive / scored;
  }
  f->metrics_.scored = scored;
  return f;
}

std::unique_ptr<Forecaster> Forecaster::Baseline() { return std::unique_ptr<Forecaster>(new Forecaster()); }

absl::StatusOr<OriginScore> Forecaster::ScoreAt(const std::vector<ObjectHistory>& objects, int origin,
                                                int threads) const {
  return Score(objects, origin, threads, nullptr);
}

absl::StatusOr<OriginScore> Forecaster::Adapt(const std::vector<ObjectHistory>& objects, int origin, int threads) {
  return Score(objects, origin, threads, this);
}

absl::StatusOr<OriginScore> Forecaster::Score(const std::vector<ObjectHistory>& objects, int origin, int threads,
                                              Forecaster* observer) const {
  std::vector<const ObjectHistory*> known;
  for (const ObjectHistory& o : objects) {
    if (o.first_day < origin && o.first_day + static_cast<int>(o.reads.size()) >= origin + kDailyHorizons) {
      known.push_back(&o);
    }
  }
  OriginScore out;
  CF_ASSIGN_OR_RETURN(std::vector<ObjectForecast> forecasts,
                      ForecastBatch(known, origin, GroupMeans::At(objects, origin), threads));
  double sum_model = 0, sum_tsb = 0, sum_naive = 0;
  int64_t days = 0, in80 = 0, in95 = 0;
  for (size_t i = 0; i < known.size(); ++i) {
    auto history = HistoryBefore(*known[i], origin);
    std::vector<double> actual(kDailyHorizons), model(kDailyHorizons);
    for (int h = 0; h < kDailyHorizons; ++h) {
      actual[h] = known[i]->reads[origin - known[i]->first_day + h];
      model[h] = forecasts[i].mean[h];
      ++days;
      in80 += actual[h] >= forecasts[i].p80[h].lower && actual[h] <= forecasts[i].p80[h].upper;
      in95 += actual[h] >= forecasts[i].p95[h].lower && actual[h] <= forecasts[i].p95[h].upper;
    }
    if (observer != nullptr) {
      const Activity activity = ClassifyActivity(history);
      for (int h = 0; h < kDailyHorizons; ++h) observer->Observe(forecasts[i], activity, h, actual[h]);
    }
    double m = Rmsse(history, actual, model);
    if (m < 0) continue;
    sum_model += m;
    sum_tsb += Rmsse(history, actual, TsbForecast(history, kDailyHorizons));
    sum_naive += Rmsse(history, actual, SeasonalNaive(history, kDailyHorizons));
    ++out.scored;
  }
  if (out.scored > 0) {
    out.rmsse_model = sum_model / out.scored;
    out.rmsse_tsb = sum_tsb / out.scored;
    out.rmsse_seasonal_naive = sum_naive / out.scored;
  }
  if (days > 0) {
    out.coverage80 = static_cast<double>(in80) / days;
    out.coverage95 = static_cast<double>(in95) / days;
  }
  return out;
}

int Forecaster::learned_targets() const {
  int n = 0;
  for (const auto& m : models_) n += m.has_value();
  return n;
}

absl::StatusOr<std::vector<ObjectForecast>> Forecaster::ForecastBatch(
    const std::vector<const ObjectHistory*>& objects, int as_of, const GroupMeans& groups, int threads) const {
  std::vector<ObjectForecast> out(objects.size());
  if (objects.empty()) return out;
  // Chunks of objects on `threads` workers: features, then every model.
  constexpr size_t kChunk = 4096;
  const size_t tsb_col = FeatureIndex("tsb");
  std::atomic<size_t> next{0};
  std::mutex mu;
  absl::Status failed;
  auto work = [&] {
    FeatureMatrix x;
    x.cols = FeatureNames().size();
    std::vector<Activity> activity;
    std::vector<double> tsb;
    std::vector<int> observed;
    for (size_t from = next.fetch_add(kChunk); from < objects.size(); from = next.fetch_add(kChunk)) {
      const size_t to = std::min(objects.size(), from + kChunk);
      x.values.clear();
      activity.clear();
      tsb.clear();
      observed.clear();
      for (size_t i = from; i < to; ++i) {
        auto history = HistoryBefore(*objects[i], as_of);
        x.AddRow(Features(history, Context(*objects[i], as_of, groups)));
        activity.push_back(ClassifyActivity(history));
        tsb.push_back(x.values[x.values.size() - x.cols + tsb_col]);  // TSB, computed by Features
        observed.push_back(static_cast<int>(history.size()));
      }
      absl::Status s = FillForecasts(x, activity, tsb, &out[from]);
      // Little history, little confidence: an object seen for a few days
      // (a new one above all) has not shown its pattern yet.
      for (size_t i = from; i < to; ++i) {
        out[i].confidence *= std::min(1.0, observed[i - from] / static_cast<double>(kConfidentAfterDays));
      }
      if (!s.ok()) {
        std::lock_guard lock(mu);
        failed = s;
        return;
      }
    }
  };
  std::vector<std::thread> workers;
  for (int i = 1; i < std::max(1, threads); ++i) workers.emplace_back(work);
  work();
  for (auto& w : workers) w.join();
  if (!failed.ok()) return failed;
  return out;
}

absl::Status Forecaster::FillForecasts(const FeatureMatrix& x, const std::vector<Activity>& activity,
                                       const std::vector<double>& tsb, ObjectForecast* out) const {
  const size_t n = activity.size();
  // A model's predictions of x, or none without a model.
  auto predict = [&](const std::optional<GbmModel>& model) -> absl::StatusOr<std::vector<float>> {
    if (!model.has_value()) return std::vector<float>{};
    return model->Predict(x);
  };
  for (int t = 0; t < kTargets; ++t) {
    CF_ASSIGN_OR_RETURN(std::vector<float> predicted, predict(models_[t]));
    for (size_t i = 0; i < n; ++i) {
      double m = predicted.empty() ? tsb[i] * TargetDays(t) : std::max(0.0f, predicted[i]);
      out[i].mean[t] = m;
      out[i].p80[t] = conformal_.Bounds(t, activity[i], m, kIntervalLevels[0]);
      out[i].p95[t] = conformal_.Bounds(t, activity[i], m, kIntervalLevels[1]);
      out[i].learned = out[i].learned || !predicted.empty();
    }
  }
  for (size_t w = 0; w < kZeroWindows.size(); ++w) {
    CF_ASSIGN_OR_RETURN(std::vector<float> predicted, predict(zero_models_[w]));
    for (size_t i = 0; i < n; ++i) {
      // Without a model: a Poisson day count with the TSB rate.
      out[i].p_zero[w] = predicted.empty() ? std::exp(-tsb[i] * kZeroWindows[w])
                                           : std::clamp(static_cast<double>(predicted[i]), 0.0, 1.0);
    }
  }
  const int t30 = kDailyHorizons;  // the 30-day sum
  for (size_t i = 0; i < n; ++i) {
    double width = out[i].p80[t30].upper - out[i].p80[t30].lower;
    // No learned model for it: the TSB fallback claims no confidence.
    out[i].confidence = std::isfinite(width) && models_[t30].has_value()
                            ? 1.0 / (1.0 + width / (out[i].mean[t30] + 1.0))
                            : 0.0;
  }
  return absl::OkStatus();
}

void Forecaster::Observe(const ObjectForecast& forecast, Activity activity, int target, double actual) {
  conformal_.Update(target, activity, kIntervalLevels[0],
                    actual >= forecast.p80[target].lower && actual <= forecast.p80[target].upper);
  conformal_.Update(target, activity, kIntervalLevels[1],
                    actual >= forecast.p95[target].lower && actual <= forecast.p95[target].upper);
}

absl::StatusOr<std::string> Forecaster::Save() const {
  std::string out = "cloudflux-forecaster v1\n";
  PutSection(out, "features", absl::StrJoin(FeatureNames(), ","));
  PutSection(out, "as_of", std::to_string(as_of_));
  PutSection(out, "metrics",
             absl::StrFormat("%.17g %.17g %.17g %d %d %d", metrics_.rmsse_model, metrics_.rmsse_tsb,
                             metrics_.rmsse_seasonal_naive, metrics_.scored, metrics_.training_rows,
                             metrics_.calibration_rows));
  PutSection(out, "conformal", conformal_.Serialize());
  for (int t = 0; t < kTargets; ++t) {
    if (!models_[t].has_value()) continue;
    auto bytes = models_[t]->Save();
    if (!bytes.ok()) return bytes.status();
    PutSection(out, absl::StrCat("target_", t), *bytes);
  }
  for (size_t w = 0; w < kZeroWindows.size(); ++w) {
    if (!zero_models_[w].has_value()) continue;
    auto bytes = zero_models_[w]->Save();
    if (!bytes.ok()) return bytes.status();
    PutSection(out, absl::StrCat("zero_", w), *bytes);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Forecaster>> Forecaster::Load(std::string_view bytes) {
  constexpr std::string_view kMagic = "cloudflux-forecaster v1\n";
  if (bytes.substr(0, kMagic.size()) != kMagic) return absl::InvalidArgumentError("not a forecaster");
  auto f = std::unique_ptr<Forecaster>(new Forecaster());
  size_t pos = kMagic.size();
  bool conformal = false, features = false;
  while (pos < bytes.size()) {
    size_t nl = bytes.find('\n', pos);
    if (nl == std::string_view::npos) return absl::InvalidArgumentError("truncated forecaster");
    std::string_view head = bytes.substr(pos, nl - pos);
    size_t space = head.find(' ');
    size_t len = 0;
    if (space == std::string_view::npos ||
        !absl::SimpleAtoi(absl::string_view(head.data() + space + 1, head.size() - space - 1), &len) ||
        nl + 1 + len > bytes.size()) {
      return absl::InvalidArgumentError("bad forecaster section");
    }
    std::string name(head.substr(0, space));
    std::string_view body = bytes.substr(nl + 1, len);
    pos = nl + 1 + len;
    if (name == "features") {
      if (body != absl::StrJoin(FeatureNames(), ",")) {
        return absl::FailedPreconditionError(
            "the model was trained on other features than this build computes: it needs retraining");
      }
      features = true;
    } else if (name == "as_of") {
      if (!absl::SimpleAtoi(absl::string_view(body.data(), body.size()), &f->as_of_)) {
        return absl::InvalidArgumentError("bad as_of");
      }
    } else if (name == "metrics") {
      std::istringstream in{std::string(body)};
      BacktestMetrics& m = f->metrics_;
      in >> m.rmsse_model >> m.rmsse_tsb >> m.rmsse_seasonal_naive >> m.scored >> m.training_rows >>
          m.calibration_rows;
    } else if (name == "conformal") {
      auto c = ConformalCalibrator::Parse(body);
      if (!c.ok()) return c.status();
      f->conformal_ = std::move(*c);
      conformal = true;
    } else {
      int index = -1;
      bool zero = name.rfind("zero_", 0) == 0;
      if ((!zero && name.rfind("target_", 0) != 0) ||
          !absl::SimpleAtoi(name.substr(zero ? 5 : 7), &index) || index < 0 ||
          index >= (zero ? static_cast<int>(kZeroWindows.size()) : kTargets)) {
        return absl::InvalidArgumentError(absl::StrCat("unknown forecaster section '", name, "'"));
      }
      auto model = GbmModel::Load(body);
      if (!model.ok()) return model.status();
      (zero ? f->zero_models_[index] : f->models_[index]) = std::move(*model);
    }
  }
  if (!conformal) return absl::InvalidArgumentError("forecaster without a conformal table");
  if (!features) {
    return absl::FailedPreconditionError(
        "the model does not name its features (an older build's): it needs retraining");
  }
  return f;
}

}  // namespace cloudflux::prediction
