#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

#include "baselines.h"
#include "conformal.h"
#include "forecast_features.h"
#include "forecaster.h"
#include "gbm.h"

namespace cloudflux::prediction {
namespace {

size_t Column(std::string_view name) { return FeatureIndex(name); }

TEST(Baselines, SeasonalNaiveRepeatsTheLastSeason) {
  std::vector<double> h = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(SeasonalNaive(h, 3), (std::vector<double>{3, 4, 5}));
  // Past one season ahead, the same weekday of the last observed season.
  EXPECT_EQ(SeasonalNaive(h, 9)[7], 3);
  EXPECT_EQ(SeasonalNaive(h, 9)[8], 4);
  // Shorter than a season: its mean.
  EXPECT_EQ(SeasonalNaive(std::vector<double>{2, 4}, 2), (std::vector<double>{3, 3}));
  EXPECT_EQ(SeasonalNaive(std::vector<double>{}, 2), (std::vector<double>{0, 0}));
}

TEST(Baselines, TsbAgainstHandComputedValues) {
  // First read on day 2: p = 1/3, z = 4. Day 3 (no read): p = 1/3 - 0.5/3 =
  // 1/6. Day 4 (2 reads): p = 1/6 + 0.5 * 5/6 = 7/12, z = 4 + 0.5 * (2 - 4) = 3.
  std::vector<double> h = {0, 0, 4, 0, 2};
  TsbState s = Tsb(h, {.alpha = 0.5, .beta = 0.5});
  EXPECT_NEAR(s.probability, 7.0 / 12, 1e-12);
  EXPECT_NEAR(s.size, 3, 1e-12);
  EXPECT_NEAR(s.forecast(), 1.75, 1e-12);
  // A run of zero days decays the forecast (Croston's would not).
  std::vector<double> quiet = h;
  quiet.insert(quiet.end(), 10, 0.0);
  EXPECT_LT(Tsb(quiet, {.alpha = 0.5, .beta = 0.5}).forecast(), 0.01);
  EXPECT_EQ(Tsb(std::vector<double>{0, 0, 0}).forecast(), 0);
  EXPECT_EQ(TsbForecast(h, 3, {.alpha = 0.5, .beta = 0.5}), (std::vector<double>(3, 1.75)));
}

TEST(Baselines, RmsseScalesByTheNaiveError) {
  std::vector<double> history = {1, 3};  // naive error: (3 - 1)^2 = 4
  std::vector<double> actual = {2}, forecast = {4};
  EXPECT_NEAR(Rmsse(history, actual, forecast), 1.0, 1e-12);
  EXPECT_EQ(Rmsse(std::vector<double>{5, 5, 5}, actual, forecast), -1) << "no variation to scale by";
}

TEST(Features, CraftedHistories) {
  ObjectContext c;
  c.size_bytes = 1000;
  c.age_days = 9;
  c.origin_weekday = 3;
  std::vector<double> h = {0, 0, 5, 0, 0, 0, 0, 0, 3};
  auto f = Features(h, c);
  ASSERT_EQ(f.size(), FeatureNames().size());
  EXPECT_EQ(f[Column("lag_1")], 3);
  EXPECT_EQ(f[Column("lag_7")], 5);
  EXPECT_EQ(f[Column("lag_28")], 0) << "before the object existed";
  EXPECT_EQ(f[Column("days_since_read")], 1);
  EXPECT_EQ(f[Column("zero_run")], 0);
  EXPECT_NEAR(f[Column("mean_7")], 8.0 / 7, 1e-6);
  EXPECT_NEAR(f[Column("mean_28")], 8.0 / 9, 1e-6) << "over the days it existed";
  EXPECT_NEAR(f[Column("nonzero_share_7")], 2.0 / 7, 1e-6);
  EXPECT_EQ(f[Column("weekday")], 3);
  EXPECT_NEAR(f[Column("log_size")], std::log1p(1000.0), 1e-4);
  EXPECT_EQ(f[Column("observed_days")], 9);

  std::vector<double> ended = {2, 0, 0};
  auto g = Features(ended, c);
  EXPECT_EQ(g[Column("days_since_read")], 3);
  EXPECT_EQ(g[Column("zero_run")], 2);
  EXPECT_EQ(Features(std::vector<double>{0, 0}, c)[Column("days_since_read")], 1000);

  EXPECT_EQ(ClassifyActivity(std::vector<double>(100, 0)), Activity::kNeverRead);
  std::vector<double> rare(28, 0);
  rare[3] = 1;
  EXPECT_EQ(ClassifyActivity(rare), Activity::kIntermittent);
  EXPECT_EQ(ClassifyActivity(std::vector<double>(28, 2)), Activity::kSteady);
}

TEST(Conformal, CoversTheChosenShareOfNewOutcomes) {
  std::mt19937 rng(3);
  std::poisson_distribution<int> reads(6);
  ConformalCalibrator c;
  for (int i = 0; i < 3000; ++i) c.Add(0, Activity::kSteady, 6, reads(rng));
  c.Finish();
  int in80 = 0, in95 = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    int y = reads(rng);
    Interval a = c.Bounds(0, Activity::kSteady, 6, 0.8), b = c.Bounds(0, Activity::kSteady, 6, 0.95);
    in80 += y >= a.lower && y <= a.upper;
    in95 += y >= b.lower && y <= b.upper;
  }
  // Counts are discrete: conformal coverage is at least the level, and close.
  EXPECT_GE(in80 / double(n), 0.78);
  EXPECT_LE(in80 / double(n), 0.92);
  EXPECT_GE(in95 / double(n), 0.93);
  EXPECT_LE(in95 / double(n), 0.99);
  // A cell with too few residuals borrows its target's.
  EXPECT_EQ(c.count(0, Activity::kNeverRead), 0u);
  EXPECT_GT(c.Bounds(0, Activity::kNeverRead, 6, 0.8).upper, 6);

  // Round trip.
  auto parsed = ConformalCalibrator::Parse(c.Serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->Bounds(0, Activity::kSteady, 6, 0.95).upper, c.Bounds(0, Activity::kSteady, 6, 0.95).upper);
  EXPECT_FALSE(ConformalCalibrator::Parse("conformal v1\n0 0 x").ok());
  EXPECT_FALSE(ConformalCalibrator::Parse("something else").ok());
}

TEST(Conformal, AdaptiveUpdatesRecoverCoverageAfterADrift) {
  std::mt19937 rng(4);
  std::normal_distribution<double> noise(0, 1);
  ConformalCalibrator fixed, adaptive;
  for (int i = 0; i < 2000; ++i) {
    double y = 10 + noise(rng);
    fixed.Add(0, Activity::kSteady, 10, y);
    adaptive.Add(0, Activity::kSteady, 10, y);
  }
  fixed.Finish();
  adaptive.Finish();
  // The workload drifts: outcomes spread three times wider.
  int fixed_in = 0, adaptive_in = 0, scored = 0;
  for (int i = 0; i < 6000; ++i) {
    double y = 10 + 3 * noise(rng);
    Interval f = fixed.Bounds(0, Activity::kSteady, 10, 0.8);
    Interval a = adaptive.Bounds(0, Activity::kSteady, 10, 0.8);
    bool covered = y >= a.lower && y <= a.upper;
    adaptive.Update(0, Activity::kSteady, 0.8, covered, 0.01);
    if (i >= 3000) {
      ++scored;
      fixed_in += y >= f.lower && y <= f.upper;
      adaptive_in += covered;
    }
  }
  EXPECT_LT(fixed_in / double(scored), 0.6) << "a fixed table under-covers after the drift";
  EXPECT_NEAR(adaptive_in / double(scored), 0.8, 0.04);
}

TEST(Gbm, SavedAndLoadedModelsPredictTheSame) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0, 1);
  FeatureMatrix x;
  x.cols = 3;
  std::vector<float> y;
  for (int i = 0; i < 2000; ++i) {
    float a = u(rng), b = u(rng), c = u(rng);
    x.AddRow({a, b, c});
    y.push_back(a > 0.5 ? 10 * b : 0);
  }
  auto model = GbmModel::Train(x, y, {.rounds = 30, .threads = 1});
  ASSERT_TRUE(model.ok()) << model.status();
  auto before = model->Predict(x);
  ASSERT_TRUE(before.ok());
  auto bytes = model->Save();
  ASSERT_TRUE(bytes.ok());
  auto loaded = GbmModel::Load(*bytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto after = loaded->Predict(x);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*before, *after);
  // It learned the pattern.
  double err = 0;
  for (size_t i = 0; i < y.size(); ++i) err += std::abs((*after)[i] - y[i]);
  EXPECT_LT(err / y.size(), 1.0);
  EXPECT_EQ(GbmModel::Load("not a model").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GbmModel::Train(x, {1, 2}, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

// Objects read only on one weekday, steady ones and silent ones, over 140
// days.
std::vector<ObjectHistory> Synthetic(int objects, int days, uint64_t seed) {
  std::mt19937 rng(seed);
  std::vector<ObjectHistory> out;
  for (int i = 0; i < objects; ++i) {
    ObjectHistory o;
    o.id = "o" + std::to_string(i);
    o.ns = "ns";
    o.group = std::to_string(i % 3);
    o.size_bytes = 1 << 20;
    o.first_day = i % 10;
    std::poisson_distribution<int> steady(5);
    for (int d = o.first_day; d < days; ++d) {
      double r = 0;
      if (i % 3 == 0) r = (d % 7 == 1) ? 20 : 0;  // weekly on one weekday
      if (i % 3 == 1) r = steady(rng);
      o.reads.push_back(r);
    }
    out.push_back(std::move(o));
  }
  return out;
}

TEST(Forecaster, LearnsWeeklyAndSteadyPatternsAndBeatsTheBaselines) {
  auto objects = Synthetic(300, 140, 6);
  const int as_of = 134;  // day 134 % 7 == 1: the weekly objects' read day
  TrainingOptions options;
  options.params.threads = 2;
  auto f = Forecaster::Train(objects, as_of, options);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->learned_targets(), kDailyHorizons + 2) << "the 180-day sum lacks history";
  const BacktestMetrics& m = (*f)->metrics();
  EXPECT_GT(m.scored, 100);
  EXPECT_LT(m.rmsse_model, m.rmsse_tsb);
  std::vector<const ObjectHistory*> batch = {&objects[0], &objects[1], &objects[2]};
  GroupMeans groups = GroupMeans::At(objects, as_of);
  auto out = (*f)->ForecastBatch(batch, as_of, groups);
  ASSERT_TRUE(out.ok()) << out.status();
  const ObjectForecast& weekly = (*out)[0];
  EXPECT_GT(weekly.mean[0], 10) << "its read day";
  EXPECT_LT(weekly.mean[1], 5) << "the day after";
  const ObjectForecast& steady = (*out)[1];
  for (int h = 0; h < kDailyHorizons; ++h) EXPECT_NEAR(steady.mean[h], 5, 1.5) << h;
  EXPECT_LE(steady.p80[0].lower, steady.mean[0]);
  EXPECT_GE(steady.p95[0].upper, steady.p80[0].upper);
  const ObjectForecast& silent = (*out)[2];
  EXPECT_LT(silent.next_7_days(), 0.5);
  EXPECT_GT(silent.p_zero[0], 0.9);
  EXPECT_LT(steady.p_zero[0], 0.1);
  for (const auto& o : *out) {
    EXPECT_GE(o.confidence, 0);
    EXPECT_LE(o.confidence, 1);
    EXPECT_TRUE(o.learned);
  }
}

// The long sums need origins from far enough back that their windows end
// by the training day: with 260 days of history every target is learned,
// the 180-day sum included, and it follows each pattern.
TEST(Forecaster, LearnsTheLongSumsFromOlderOrigins) {
  auto objects = Synthetic(300, 260, 7);
  const int as_of = 253;
  TrainingOptions options;
  options.params.threads = 2;
  auto f = Forecaster::Train(objects, as_of, options);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->learned_targets(), kTargets);
  std::vector<const ObjectHistory*> batch = {&objects[0], &objects[1], &objects[2]};
  auto out = (*f)->ForecastBatch(batch, as_of, GroupMeans::At(objects, as_of));
  ASSERT_TRUE(out.ok()) << out.status();
  const int t180 = kDailyHorizons + 2;
  EXPECT_NEAR((*out)[0].mean[t180], 20.0 * 180 / 7, 0.1 * 20 * 180 / 7) << "weekly";
  EXPECT_NEAR((*out)[1].mean[t180], 5.0 * 180, 0.1 * 5 * 180) << "steady";
  EXPECT_LT((*out)[2].mean[t180], 1) << "silent";
  EXPECT_GT((*out)[2].p_zero[3], 0.9);
  EXPECT_LT((*out)[1].p_zero[3], 0.1);
  // Fewer sparse origins than the 180-day window needs: no 180-day model.
  options.long_origins = 0;
  auto short_reach = Forecaster::Train(objects, as_of, options);
  ASSERT_TRUE(short_reach.ok()) << short_reach.status();
  EXPECT_LT((*short_reach)->learned_targets(), kTargets);
  options.long_origin_stride_days = 0;
  EXPECT_EQ(Forecaster::Train(objects, as_of, options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Forecaster, TrainingStopsWhenCancelled) {
  auto objects = Synthetic(300, 140, 8);
  TrainingOptions options;
  options.params.threads = 2;
  std::atomic<bool> cancel{true};
  options.cancel = &cancel;
  EXPECT_EQ(Forecaster::Train(objects, 134, options).status().code(), absl::StatusCode::kCancelled);
  // Cancelled while the models are being boosted: it stops within a round,
  // well before the whole run (thousands of rounds) would end.
  cancel = false;
  options.params.rounds = options.zero_params.rounds = 5000;
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(300));
    cancel = true;
  });
  const absl::Time start = absl::Now();
  auto stopped = Forecaster::Train(objects, 134, options);
  const absl::Duration took = absl::Now() - start;
  canceller.join();
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
  EXPECT_LT(took, absl::Seconds(10));
  // The same flag, never set, changes nothing.
  cancel = false;
  options.params.rounds = options.zero_params.rounds = 20;
  EXPECT_TRUE(Forecaster::Train(objects, 134, options).ok());
}

TEST(Forecaster, AdaptsItsIntervalsToAShiftAndCarriesTheLevelsOver) {
  auto objects = Synthetic(300, 140, 9);
  const int as_of = 100;
  TrainingOptions options;
  options.params.threads = 2;
  auto trained = Forecaster::Train(objects, as_of, options);
  ASSERT_TRUE(trained.ok()) << trained.status();
  auto saved = (*trained)->Save();
  ASSERT_TRUE(saved.ok());
  // After the training day the steady objects turn bursty: a day in three
  // brings four times the reads. Their intervals, calibrated before, miss.
  for (size_t i = 1; i < objects.size(); i += 3) {
    auto& o = objects[i];
    for (int d = as_of; d < o.first_day + static_cast<int>(o.reads.size()); ++d) {
      if (d % 3 == 0) o.reads[d - o.first_day] *= 4;
    }
  }
  auto fresh = Forecaster::Load(*saved);
  ASSERT_TRUE(fresh.ok());
  auto adapted = Forecaster::Load(*saved);
  ASSERT_TRUE(adapted.ok());
  const int first = as_of + 7;
  auto before = (*fresh)->ScoreAt(objects, first);
  ASSERT_TRUE(before.ok());
  EXPECT_LT(before->coverage80, 0.75) << "the shift is visible";
  // The score Adapt answers is the one before its step.
  auto seen = (*adapted)->Adapt(objects, first);
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_DOUBLE_EQ(seen->coverage80, before->coverage80);
  for (int origin = first + 7; origin <= first + 14; origin += 7) ASSERT_TRUE((*adapted)->Adapt(objects, origin).ok());
  // A week none of them observed: the adapted intervals cover more of it.
  const int later = first + 21;
  auto unadapted = (*fresh)->ScoreAt(objects, later);
  auto followed = (*adapted)->ScoreAt(objects, later);
  ASSERT_TRUE(unadapted.ok() && followed.ok());
  EXPECT_GT(followed->coverage80, unadapted->coverage80 + 0.05)
      << unadapted->coverage80 << " -> " << followed->coverage80;
  // The levels alone carry the adaptation to another instance of the model.
  auto other = Forecaster::Load(*saved);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->SetAdaptiveLevels((*adapted)->AdaptiveLevels()).ok());
  auto carried = (*other)->ScoreAt(objects, later);
  ASSERT_TRUE(carried.ok());
  EXPECT_DOUBLE_EQ(carried->coverage80, followed->coverage80);
  EXPECT_DOUBLE_EQ(carried->coverage95, followed->coverage95);
  // Junk levels are refused and change nothing.
  EXPECT_EQ((*other)->SetAdaptiveLevels("levels v1\n0 0 x y\n").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*other)->SetAdaptiveLevels("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*other)->AdaptiveLevels(), (*adapted)->AdaptiveLevels());
}

TEST(Forecaster, TrainingNeverLooksPastItsDayAndSurvivesASaveAndLoad) {
  auto full = Synthetic(90, 120, 7);
  const int as_of = 100;
  // The same objects with everything from as_of on replaced by other reads.
  auto changed = full;
  for (auto& o : changed) {
    for (int d = as_of; d < o.first_day + static_cast<int>(o.reads.size()); ++d) o.reads[d - o.first_day] += 17;
  }
  TrainingOptions options;
  options.params.threads = 1;
  options.zero_params.threads = 1;
  options.min_training_rows = 50;
  auto a = Forecaster::Train(full, as_of, options);
  auto b = Forecaster::Train(changed, as_of, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*(*a)->Save(), *(*b)->Save()) << "the future changed the model";

  auto bytes = (*a)->Save();
  ASSERT_TRUE(bytes.ok());
  auto loaded = Forecaster::Load(*bytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->metrics().rmsse_model, (*a)->metrics().rmsse_model);
  std::vector<const ObjectHistory*> batch;
  for (const auto& o : full) batch.push_back(&o);
  GroupMeans groups = GroupMeans::At(full, as_of);
  auto x = (*a)->ForecastBatch(batch, as_of, groups);
  auto y = (*loaded)->ForecastBatch(batch, as_of, groups);
  ASSERT_TRUE(x.ok() && y.ok());
  for (size_t i = 0; i < batch.size(); ++i) {
    for (int t = 0; t < kTargets; ++t) {
      EXPECT_EQ((*x)[i].mean[t], (*y)[i].mean[t]);
      EXPECT_EQ((*x)[i].p95[t].upper, (*y)[i].p95[t].upper);
    }
  }
  EXPECT_FALSE(Forecaster::Load("cloudflux-forecaster v1\nconformal 99999\nshort").ok());
  EXPECT_FALSE(Forecaster::Load("nonsense").ok());

  // A model trained on other features (another build's), or one that does
  // not name them, is refused as needing retraining, not read wrongly.
  const std::string names = absl::StrJoin(FeatureNames(), ",");
  const std::string section = absl::StrCat("features ", names.size(), "\n", names);
  ASSERT_NE(bytes->find(section), std::string::npos);
  std::string other = *bytes;
  other.replace(other.find(section), section.size(),
                absl::StrCat("features ", names.size() + 4, "\n", names, ",new"));
  EXPECT_EQ(Forecaster::Load(other).status().code(), absl::StatusCode::kFailedPrecondition);
  std::string unnamed = *bytes;
  unnamed.erase(unnamed.find(section), section.size());
  EXPECT_EQ(Forecaster::Load(unnamed).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace cloudflux::prediction
