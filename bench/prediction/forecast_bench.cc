// forecast_bench: the prediction service's forecasts on the tiering
// simulator's generated traces, walk-forward (train on what was known before
// day d, forecast d..d+6, score, move on a week), against its two baselines
// in the same run:
//   - pooled RMSSE of the 7 daily forecasts: the learned model, TSB and
//     seasonal naive (target: learned <= 0.9x the better baseline);
//   - coverage of the 80 % and 95 % intervals of the daily forecasts
//     (targets 78-82 % and 93-97 %), with adaptive conformal updates as the
//     outcomes arrive;
//   - `bias`: the daily forecasts' sum over the reads' sum (1: unbiased);
//   - the Brier score of the probability of no read in the next 7 days
//     (`brier7`), against the TSB rate's Poisson probability (`brier7_tsb`);
//   - training time per training set size (object-days) and ForecastBatch
//     throughput (objects/s) of a model with every target learned;
//   - the rate oracle, what no forecaster can beat: the generator's own
//     expected reads as the forecast (`oracle`, `o_ratio` = oracle / the
//     better baseline) and, as its intervals, each day's smallest set of
//     whole reads holding 80 % / 95 % of the Poisson draw (`o_cov80`,
//     `o_cov95`: whole reads cover more than the level wherever one count,
//     zero above all, holds most of the probability); and the knowable
//     rate (`known`, `k_ratio`): the same, except that bursts not begun by
//     the origin are not foreseen (sim::KnowableRate: of its two readings,
//     the expected rate and the quiet one, the lower RMSSE per roll).
//
//   forecast_bench --traces=mixed,media,backup,analytics --objects=2000 --days=240 --rolls=4
#include <chrono>
#include <cmath>
#include <numeric>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_format.h"
#include "baselines.h"
#include "forecaster.h"
#include "sim.h"

ABSL_FLAG(std::string, traces, "mixed,media,backup,analytics", "Generated trace kinds.");
ABSL_FLAG(int, objects, 2000, "Objects per trace.");
ABSL_FLAG(int, days, 240, "Days per trace.");
ABSL_FLAG(int, rolls, 4, "Walk-forward weeks scored per trace (the last ones).");
ABSL_FLAG(int, threads, 2, "XGBoost threads.");
ABSL_FLAG(int, rounds, cloudflux::prediction::GbmParams{}.rounds, "Boosting rounds per model of reads.");
ABSL_FLAG(int, zero_rounds, cloudflux::prediction::TrainingOptions{}.zero_params.rounds,
          "Boosting rounds per model of the probability of no read.");
ABSL_FLAG(int, max_depth, cloudflux::prediction::GbmParams{}.max_depth, "Tree depth of every model.");
ABSL_FLAG(double, learning_rate, cloudflux::prediction::GbmParams{}.learning_rate,
          "Learning rate (eta) of every model.");
ABSL_FLAG(double, min_child_weight, cloudflux::prediction::GbmParams{}.min_child_weight,
          "Least hessian weight in a leaf, every model.");
ABSL_FLAG(double, tweedie_power, cloudflux::prediction::GbmParams{}.tweedie_variance_power,
          "Tweedie variance power of the models of reads (1: Poisson, 2: gamma).");
ABSL_FLAG(int, throughput_objects, 200000, "Objects in the ForecastBatch throughput run (0: skip).");
ABSL_FLAG(uint64_t, seed, 1, "Trace seed.");

namespace cp = cloudflux::prediction;

namespace {

// The smallest set of whole reads holding at least `level` of a
// Poisson(lambda) draw: from the mode outwards, the likelier neighbour first
// (the distribution is unimodal, so the set is an interval).
std::pair<int64_t, int64_t> PoissonSet(double lambda, double level) {
  if (lambda <= 0) return {0, 0};
  auto pmf = [lambda](int64_t k) { return std::exp(k * std::log(lambda) - lambda - std::lgamma(k + 1.0)); };
  int64_t lo = static_cast<int64_t>(std::floor(lambda)), hi = lo;
  double mass = pmf(lo);
  while (mass < level) {
    double left = lo > 0 ? pmf(lo - 1) : -1, right = pmf(hi + 1);
    if (left >= right) {
      mass += left;
      --lo;
    } else {
      mass += right;
      ++hi;
    }
  }
  return {lo, hi};
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

std::vector<cp::ObjectHistory> Histories(const cloudflux::sim::Trace& trace) {
  std::vector<cp::ObjectHistory> out;
  out.reserve(trace.objects.size());
  for (const auto& o : trace.objects) {
    cp::ObjectHistory h;
    h.id = o.id;
    h.ns = trace.name;
    // Groups of 50 consecutive objects stand for a prefix (the generator
    // writes related objects together).
    h.group = std::to_string(out.size() / 50);
    h.size_bytes = o.size;
    h.first_day = o.create_day;
    h.reads.assign(o.reads.begin(), o.reads.end());
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  cp::TrainingOptions options;
  options.params.threads = options.zero_params.threads = absl::GetFlag(FLAGS_threads);
  options.params.rounds = absl::GetFlag(FLAGS_rounds);
  options.zero_params.rounds = absl::GetFlag(FLAGS_zero_rounds);
  options.params.min_child_weight = options.zero_params.min_child_weight = absl::GetFlag(FLAGS_min_child_weight);
  options.params.tweedie_variance_power = absl::GetFlag(FLAGS_tweedie_power);
  options.params.max_depth = options.zero_params.max_depth = absl::GetFlag(FLAGS_max_depth);
  options.params.learning_rate = options.zero_params.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  const int days = absl::GetFlag(FLAGS_days);
  std::cout << absl::StrFormat("%-10s %5s %9s %9s %9s %7s %7s %7s %7s %8s %10s %9s %7s %7s %7s %7s %7s %9s %7s %6s\n", "trace", "as_of",
                               "model", "tsb", "snaive", "ratio", "cov80", "cov95", "scored", "train_s", "obj_days",
                               "oracle", "o_ratio", "o_cov80", "o_cov95", "brier7", "b7_tsb", "known", "k_ratio", "bias");
  for (absl::string_view kind : absl::StrSplit(absl::GetFlag(FLAGS_traces), ',')) {
    auto trace = cloudflux::sim::GenerateTrace(std::string(kind), absl::GetFlag(FLAGS_objects), days,
                                               absl::GetFlag(FLAGS_seed));
    if (!trace.ok()) {
      std::cerr << trace.status() << "\n";
      return 1;
    }
    auto objects = Histories(*trace);
    double sum_model = 0, sum_tsb = 0, sum_naive = 0, sum_oracle = 0, sum_brier = 0, sum_brier_tsb = 0,
           sum_known = 0, all_forecast = 0, all_actual = 0;
    int64_t scored_all = 0, in80 = 0, in95 = 0, intervals = 0, oracle80 = 0, oracle95 = 0;
    for (int roll = absl::GetFlag(FLAGS_rolls); roll >= 1; --roll) {
      const int as_of = days - 7 * roll;
      int64_t object_days = 0;
      for (const auto& o : objects) object_days += static_cast<int64_t>(cp::HistoryBefore(o, as_of).size());
      auto start = std::chrono::steady_clock::now();
      auto f = cp::Forecaster::Train(objects, as_of, options);
      double train_s = Seconds(start);
      if (!f.ok()) {
        std::cerr << f.status() << "\n";
        return 1;
      }
      std::vector<const cp::ObjectHistory*> live;
      for (const auto& o : objects) {
        if (o.first_day < as_of && o.first_day + static_cast<int>(o.reads.size()) >= as_of + 7) live.push_back(&o);
      }
      auto forecasts = (*f)->ForecastBatch(live, as_of, cp::GroupMeans::At(objects, as_of));
      if (!forecasts.ok()) {
        std::cerr << forecasts.status() << "\n";
        return 1;
      }
      double m = 0, t = 0, n = 0, orc = 0, brier = 0, brier_tsb = 0, kn_mean = 0, kn_quiet = 0;
      double forecast_sum = 0, actual_sum = 0;  // the daily forecasts' bias
      int64_t scored = 0, c80 = 0, c95 = 0, total = 0, o80 = 0, o95 = 0;
      for (size_t i = 0; i < live.size(); ++i) {
        const auto& o = *live[i];
        const auto& generated = trace->objects[live[i] - objects.data()];
        const auto& rate = generated.rate;
        auto history = cp::HistoryBefore(o, as_of);
        std::vector<double> actual(cp::kDailyHorizons), model(cp::kDailyHorizons), oracle(cp::kDailyHorizons),
            known(cp::kDailyHorizons), quiet(cp::kDailyHorizons);
        for (int h = 0; h < cp::kDailyHorizons; ++h) {
          actual[h] = o.reads[as_of + h - o.first_day];
          model[h] = (*forecasts)[i].mean[h];
          oracle[h] = rate[as_of + h - o.first_day];
          known[h] = cloudflux::sim::KnowableRate(generated, as_of - o.first_day, as_of + h - o.first_day);
          quiet[h] = cloudflux::sim::KnowableRate(generated, as_of - o.first_day, as_of + h - o.first_day, true);
          auto [lo80, hi80] = PoissonSet(oracle[h], 0.8);
          auto [lo95, hi95] = PoissonSet(oracle[h], 0.95);
          o80 += actual[h] >= lo80 && actual[h] <= hi80;
          o95 += actual[h] >= lo95 && actual[h] <= hi95;
          const auto& a = (*forecasts)[i].p80[h];
          const auto& b = (*forecasts)[i].p95[h];
          forecast_sum += model[h];
          actual_sum += actual[h];
          c80 += actual[h] >= a.lower && actual[h] <= a.upper;
          c95 += actual[h] >= b.lower && actual[h] <= b.upper;
          ++total;
          (*f)->Observe((*forecasts)[i], cp::ClassifyActivity(history), h, actual[h]);
        }
        const double none = std::accumulate(actual.begin(), actual.end(), 0.0) == 0 ? 1 : 0;
        const double tsb_zero = std::exp(-cp::TsbForecast(history, 1)[0] * cp::kZeroWindows[0]);
        brier += std::pow((*forecasts)[i].p_zero[0] - none, 2);
        brier_tsb += std::pow(tsb_zero - none, 2);
        double r = cp::Rmsse(history, actual, model);
        if (r < 0) continue;
        m += r;
        t += cp::Rmsse(history, actual, cp::TsbForecast(history, cp::kDailyHorizons));
        n += cp::Rmsse(history, actual, cp::SeasonalNaive(history, cp::kDailyHorizons));
        orc += cp::Rmsse(history, actual, oracle);
        kn_mean += cp::Rmsse(history, actual, known);
        kn_quiet += cp::Rmsse(history, actual, quiet);
        ++scored;
      }
      sum_model += m, sum_tsb += t, sum_naive += n, sum_oracle += orc, scored_all += scored;
      const double kn = std::min(kn_mean, kn_quiet);
      sum_brier += brier, sum_brier_tsb += brier_tsb, sum_known += kn;
      all_forecast += forecast_sum, all_actual += actual_sum;
      in80 += c80, in95 += c95, intervals += total, oracle80 += o80, oracle95 += o95;
      const double better = std::min(t, n) / scored;
      std::cout << absl::StrFormat("%-10s %5d %9.4f %9.4f %9.4f %7.3f %7.3f %7.3f %7d %8.1f %10d %9.4f %7.3f %7.3f %7.3f %7.4f %7.4f %9.4f %7.3f %6.3f\n",
                                   std::string(kind), as_of, m / scored, t / scored, n / scored, (m / scored) / better,
                                   c80 / double(total), c95 / double(total), scored, train_s, object_days,
                                   orc / scored, (orc / scored) / better, o80 / double(total), o95 / double(total),
                                   brier / live.size(), brier_tsb / live.size(), kn / scored, (kn / scored) / better, forecast_sum / actual_sum);
    }
    const double better = std::min(sum_tsb, sum_naive) / scored_all;
    std::cout << absl::StrFormat("%-10s %5s %9.4f %9.4f %9.4f %7.3f %7.3f %7.3f %7d %8s %10s %9.4f %7.3f %7.3f %7.3f %7.4f %7.4f %9.4f %7.3f %6.3f\n",
                                 std::string(kind), "all", sum_model / scored_all, sum_tsb / scored_all,
                                 sum_naive / scored_all, (sum_model / scored_all) / better, in80 / double(intervals),
                                 in95 / double(intervals), scored_all, "", "", sum_oracle / scored_all,
                                 (sum_oracle / scored_all) / better, oracle80 / double(intervals),
                                 oracle95 / double(intervals), sum_brier / (intervals / cp::kDailyHorizons),
                                 sum_brier_tsb / (intervals / cp::kDailyHorizons), sum_known / scored_all,
                                 (sum_known / scored_all) / better, all_forecast / all_actual);
  }

  const int n = absl::GetFlag(FLAGS_throughput_objects);
  if (n > 0) {
    // Long enough that every target, the 180-day sum's included, is learned.
    constexpr int kDays = 300, kAsOf = kDays - 7;
    auto trace = cloudflux::sim::GenerateTrace("mixed", 2000, kDays, 9);
    auto objects = Histories(*trace);
    auto f = cp::Forecaster::Train(objects, kAsOf, options);
    if (!f.ok()) {
      std::cerr << f.status() << "\n";
      return 1;
    }
    std::vector<const cp::ObjectHistory*> batch;
    for (int i = 0; i < n; ++i) batch.push_back(&objects[i % objects.size()]);
    auto groups = cp::GroupMeans::At(objects, kAsOf);
    // As a replica serves it: the model saved and loaded back.
    auto bytes = (*f)->Save();
    auto loaded = bytes.ok() ? cp::Forecaster::Load(*bytes) : bytes.status();
    if (!loaded.ok()) {
      std::cerr << loaded.status() << "\n";
      return 1;
    }
    for (const auto* model : {f->get(), loaded->get()}) {
      auto start = std::chrono::steady_clock::now();
      auto out = model->ForecastBatch(batch, kAsOf, groups, absl::GetFlag(FLAGS_threads));
      double s = Seconds(start);
      if (!out.ok()) {
        std::cerr << out.status() << "\n";
        return 1;
      }
      std::cout << absl::StrFormat("ForecastBatch (%s model): %d objects in %.2f s = %.0f objects/s (%d learned targets)\n",
                                   model == f->get() ? "trained" : "loaded", n, s, n / s, model->learned_targets());
    }
  }
  return 0;
}
