// forecast_bench: the prediction service's forecasts on the tiering
// simulator's generated traces, walk-forward (train on what was known before
// day d, forecast d..d+6, score, move on a week), against its two baselines
// in the same run:
//   - pooled RMSSE of the 7 daily forecasts: the learned model, TSB and
//     seasonal naive (target: learned <= 0.9x the better baseline);
//   - coverage of the 80 % and 95 % intervals of the daily forecasts
//     (targets 78-82 % and 93-97 %), with adaptive conformal updates as the
//     outcomes arrive;
//   - training time per training set size (object-days) and ForecastBatch
//     throughput (objects/s).
//
//   forecast_bench --traces=mixed,media,backup,analytics --objects=2000 --days=240 --rolls=4
#include <chrono>
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
ABSL_FLAG(int, rounds, 100, "Boosting rounds per model.");
ABSL_FLAG(int, max_depth, 6, "Tree depth of every model.");
ABSL_FLAG(double, learning_rate, 0.1, "Learning rate (eta) of every model.");
ABSL_FLAG(int, throughput_objects, 200000, "Objects in the ForecastBatch throughput run (0: skip).");
ABSL_FLAG(uint64_t, seed, 1, "Trace seed.");

namespace cp = cloudflux::prediction;

namespace {

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
  options.params.max_depth = options.zero_params.max_depth = absl::GetFlag(FLAGS_max_depth);
  options.params.learning_rate = options.zero_params.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  const int days = absl::GetFlag(FLAGS_days);
  std::cout << absl::StrFormat("%-10s %5s %9s %9s %9s %7s %7s %7s %7s %8s %10s\n", "trace", "as_of", "model",
                               "tsb", "snaive", "ratio", "cov80", "cov95", "scored", "train_s", "obj_days");
  for (absl::string_view kind : absl::StrSplit(absl::GetFlag(FLAGS_traces), ',')) {
    auto trace = cloudflux::sim::GenerateTrace(std::string(kind), absl::GetFlag(FLAGS_objects), days,
                                               absl::GetFlag(FLAGS_seed));
    if (!trace.ok()) {
      std::cerr << trace.status() << "\n";
      return 1;
    }
    auto objects = Histories(*trace);
    double sum_model = 0, sum_tsb = 0, sum_naive = 0;
    int64_t scored_all = 0, in80 = 0, in95 = 0, intervals = 0;
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
      double m = 0, t = 0, n = 0;
      int64_t scored = 0, c80 = 0, c95 = 0, total = 0;
      for (size_t i = 0; i < live.size(); ++i) {
        const auto& o = *live[i];
        auto history = cp::HistoryBefore(o, as_of);
        std::vector<double> actual(cp::kDailyHorizons), model(cp::kDailyHorizons);
        for (int h = 0; h < cp::kDailyHorizons; ++h) {
          actual[h] = o.reads[as_of + h - o.first_day];
          model[h] = (*forecasts)[i].mean[h];
          const auto& a = (*forecasts)[i].p80[h];
          const auto& b = (*forecasts)[i].p95[h];
          c80 += actual[h] >= a.lower && actual[h] <= a.upper;
          c95 += actual[h] >= b.lower && actual[h] <= b.upper;
          ++total;
          (*f)->Observe((*forecasts)[i], cp::ClassifyActivity(history), h, actual[h]);
        }
        double r = cp::Rmsse(history, actual, model);
        if (r < 0) continue;
        m += r;
        t += cp::Rmsse(history, actual, cp::TsbForecast(history, cp::kDailyHorizons));
        n += cp::Rmsse(history, actual, cp::SeasonalNaive(history, cp::kDailyHorizons));
        ++scored;
      }
      sum_model += m, sum_tsb += t, sum_naive += n, scored_all += scored;
      in80 += c80, in95 += c95, intervals += total;
      std::cout << absl::StrFormat("%-10s %5d %9.4f %9.4f %9.4f %7.3f %7.3f %7.3f %7d %8.1f %10d\n",
                                   std::string(kind), as_of, m / scored, t / scored, n / scored,
                                   (m / scored) / std::min(t / scored, n / scored), c80 / double(total),
                                   c95 / double(total), scored, train_s, object_days);
    }
    std::cout << absl::StrFormat("%-10s %5s %9.4f %9.4f %9.4f %7.3f %7.3f %7.3f %7d\n", std::string(kind),
                                 "all", sum_model / scored_all, sum_tsb / scored_all, sum_naive / scored_all,
                                 (sum_model / scored_all) / std::min(sum_tsb / scored_all, sum_naive / scored_all),
                                 in80 / double(intervals), in95 / double(intervals), scored_all);
  }

  const int n = absl::GetFlag(FLAGS_throughput_objects);
  if (n > 0) {
    auto trace = cloudflux::sim::GenerateTrace("mixed", 2000, 120, 9);
    auto objects = Histories(*trace);
    auto f = cp::Forecaster::Train(objects, 113, options);
    if (!f.ok()) {
      std::cerr << f.status() << "\n";
      return 1;
    }
    std::vector<const cp::ObjectHistory*> batch;
    for (int i = 0; i < n; ++i) batch.push_back(&objects[i % objects.size()]);
    auto groups = cp::GroupMeans::At(objects, 113);
    auto start = std::chrono::steady_clock::now();
    auto out = (*f)->ForecastBatch(batch, 113, groups, absl::GetFlag(FLAGS_threads));
    double s = Seconds(start);
    std::cout << absl::StrFormat("ForecastBatch: %d objects in %.2f s = %.0f objects/s (%d learned targets)\n", n, s,
                                 n / s, (*f)->learned_targets());
  }
  return 0;
}
