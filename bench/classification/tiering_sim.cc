// Replays access traces and bills them under every placement policy (see
// sim.h), printing a Markdown table per trace:
//   build/release/bench/classification/tiering_sim [--workloads=mixed,media,backup,analytics]
//       [--objects=3000] [--days=365] [--seed=1] [--trace_csv=FILE] [--catalog=FILE]
//       [--perfect_forecast] [--learned_forecast] [--explain=N]
#include <algorithm>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cloudflux/core/config.h"
#include "forecaster.h"
#include "sim.h"

ABSL_FLAG(std::string, workloads, "mixed,media,backup,analytics", "Synthetic traces to generate.");
ABSL_FLAG(int32_t, objects, 3000, "Objects per synthetic trace.");
ABSL_FLAG(int32_t, days, 365, "Days per synthetic trace.");
ABSL_FLAG(int64_t, seed, 1, "Random seed of the synthetic traces.");
ABSL_FLAG(std::string, trace_csv, "", "Also replay this CSV trace (format in sim.h).");
ABSL_FLAG(std::string, catalog, CLOUDFLUX_SOURCE_DIR "/config/price_catalog.json", "Price catalog.");
ABSL_FLAG(double, horizon_days, 90, "CloudFlux decision horizon.");
ABSL_FLAG(double, hysteresis, 0.1, "CloudFlux hysteresis margin.");
ABSL_FLAG(bool, tier_classes_only, true,
          "CloudFlux chooses only the class each tier stands for, as classification and prediction do (objects "
          "are moved by tier); false lets it choose any class of the cloud (S3 Intelligent-Tiering among them).");
ABSL_FLAG(std::string, allowed_tiers, "",
          "CloudFlux's allowed tiers (comma-separated names such as ARCHIVE_FLEXIBLE; empty = any but the "
          "opt-in ones). With --tier_classes_only=false every class is a candidate.");
ABSL_FLAG(bool, perfect_forecast, true,
          "Also bill CloudFlux given each object's real future reads as its forecast (a bound, not a policy).");
ABSL_FLAG(bool, learned_forecast, false,
          "Also bill CloudFlux given the prediction service's forecasts, retrained every week of the "
          "simulation on what was known before that day (--learned_first_day, then weekly).");
ABSL_FLAG(std::string, learned_rate, "mean",
          "Which figure of the learned 90-day sum is the expected reads: mean, p80 or p95 (the interval's upper "
          "bound).");
ABSL_FLAG(int32_t, learned_first_day, 28, "First day the learned forecaster is trained.");
ABSL_FLAG(std::string, forecast_role, "vetoes",
          "How the learned forecast weighs in on placed objects (TierPolicy::ForecastRole), as classification's flag "
          "of that name: decides, confirms (stops or redirects the counts' moves) or vetoes (only stops them). The "
          "perfect forecast always decides.");
ABSL_FLAG(int32_t, learned_threads, 2, "Threads training and forecasting.");
ABSL_FLAG(int32_t, explain, 0,
          "Print the N objects of each trace where CloudFlux loses most against the optimum.");

// The objects where CloudFlux's bill exceeds the optimum's most: size,
// reads per day and both schedules as runs of "class x days".
void Explain(const cloudflux::pricing::PriceCatalog& catalog, const cloudflux::sim::Trace& t, const cloudflux::pricing::TierPolicy& policy,
             int n) {
  using namespace cloudflux;  // NOLINT
  sim::Classes classes = sim::AwsClasses(catalog);
  std::vector<std::pair<double, const sim::ObjectTrace*>> gaps;
  for (const auto& o : t.objects) {
    double cf = sim::BillSchedule(classes, o, sim::CloudFlux(catalog, classes, o, policy)).total;
    double opt = sim::BillSchedule(classes, o, sim::Optimum(classes, o, nullptr)).total;
    gaps.emplace_back(cf - opt, &o);
  }
  std::sort(gaps.begin(), gaps.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  auto runs = [&](const sim::Schedule& s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      size_t j = i;
      while (j < s.size() && s[j] == s[i]) ++j;
      absl::StrAppend(&out, classes.list[s[i]]->storage_class(), "x", j - i, " ");
      i = j;
    }
    return out;
  };
  for (int i = 0; i < n && i < static_cast<int>(gaps.size()); ++i) {
    const auto& o = *gaps[i].second;
    std::string reads;
    for (size_t d = 0; d < o.reads.size() && d < 120; ++d) absl::StrAppend(&reads, o.reads[d], " ");
    std::printf("\n%s: %.1f MiB, latency %lld ms, gap $%.4f\n  reads: %s\n  cloudflux: %s\n  optimum:   %s\n",
                o.id.c_str(), o.size / 1048576.0, static_cast<long long>(o.max_latency_ms), gaps[i].first,
                reads.c_str(), runs(sim::CloudFlux(catalog, classes, o, policy)).c_str(),
                runs(sim::Optimum(classes, o, nullptr)).c_str());
  }
}

using namespace cloudflux;  // NOLINT

// The forecast each object would have got each day from the prediction
// service's Forecaster: retrained every 7 days on everything known before
// the training day, then asked each day about the days from then on. The
// 90-day sum (the decision horizon) becomes Decide's rate, with the
// forecast's confidence.
sim::ForecastTable LearnedForecasts(const sim::Trace& t, double horizon_days) {
  namespace cp = cloudflux::prediction;
  std::vector<cp::ObjectHistory> histories;
  for (size_t i = 0; i < t.objects.size(); ++i) {
    const auto& o = t.objects[i];
    cp::ObjectHistory h;
    h.id = o.id;
    h.ns = t.name;
    h.group = std::to_string(i / 50);  // objects written together stand for a prefix
    h.size_bytes = o.size;
    h.first_day = o.create_day;
    h.reads.assign(o.reads.begin(), o.reads.end());
    histories.push_back(std::move(h));
  }
  sim::ForecastTable table(t.objects.size());
  for (size_t i = 0; i < t.objects.size(); ++i) table[i].resize(t.objects[i].reads.size());
  cp::TrainingOptions options;
  options.params.threads = absl::GetFlag(FLAGS_learned_threads);
  const int first = absl::GetFlag(FLAGS_learned_first_day);
  std::unique_ptr<cp::Forecaster> model;
  const int sum_target = cp::kDailyHorizons + 1;  // the 90-day sum
  for (int day = first; day < t.days; ++day) {
    if ((day - first) % 7 == 0) {
      auto trained = cp::Forecaster::Train(histories, day, options);
      if (!trained.ok()) {
        std::fprintf(stderr, "training at day %d: %s\n", day, std::string(trained.status().message()).c_str());
        return table;
      }
      model = std::move(*trained);
    }
    std::vector<const cp::ObjectHistory*> live;
    std::vector<size_t> index;
    for (size_t i = 0; i < histories.size(); ++i) {
      const auto& h = histories[i];
      if (h.first_day <= day && day < h.first_day + static_cast<int>(h.reads.size())) {
        live.push_back(&h);
        index.push_back(i);
      }
    }
    auto out = model->ForecastBatch(live, day, cp::GroupMeans::At(histories, day), options.params.threads);
    if (!out.ok()) return table;
    for (size_t k = 0; k < live.size(); ++k) {
      const auto& f = (*out)[k];
      const std::string rate = absl::GetFlag(FLAGS_learned_rate);
      const double sum = rate == "p80"   ? f.p80[sum_target].upper
                         : rate == "p95" ? f.p95[sum_target].upper
                                         : f.mean[sum_target];
      double reads = sum * horizon_days / cp::kSumWindows[1];
      table[index[k]][day - live[k]->first_day] =
          pricing::Forecast{.reads_next_7d = reads * 7 / horizon_days, .confidence = f.confidence};
    }
  }
  return table;
}

void Print(const sim::Report& r, double seconds) {
  const sim::Bill& it = r.Of("s3-intelligent-tiering");
  const sim::Bill& opt = r.Of("optimum");
  std::printf("\n### %s (%d objects, simulated in %.1f s)\n\n", r.trace.c_str(), r.objects, seconds);
  std::printf("| policy | bill $ | vs Intelligent-Tiering | vs optimum | SLA violations | moves | "
              "storage | requests | retrieval | transitions | early deletion | monitoring |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& [name, b] : r.bills) {
    std::printf("| %s | %.2f | %.3f | %.3f | %lld | %lld | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                name.c_str(), b.total, b.total / it.total, b.total / opt.total,
                static_cast<long long>(b.sla_violations), static_cast<long long>(b.moves), b.storage,
                b.requests, b.retrieval, b.transitions, b.early_deletion, b.monitoring);
  }
  // On equal footing: the clouds' own auto-tiering, each at its own prices,
  // against CloudFlux free to choose the cloud.
  const double managed = std::min(it.total, r.Of("gcs-autoclass").total);
  std::printf("\ncloudflux-any-cloud / the cheaper of Intelligent-Tiering and Autoclass: %.3f; "
              "optimum-best-cloud / the same: %.3f\n",
              r.Of("cloudflux-any-cloud").total / managed, r.Of("optimum-best-cloud").total / managed);
}

int main(int argc, char** argv) {
  core::ParseFlags(argc, argv, "tiering policies billed on access traces");
  auto catalog = pricing::PriceCatalog::Load(absl::GetFlag(FLAGS_catalog));
  if (!catalog.ok()) {
    std::fprintf(stderr, "%s\n", std::string(catalog.status().message()).c_str());
    return 2;
  }
  pricing::TierPolicy policy;
  policy.horizon_days = absl::GetFlag(FLAGS_horizon_days);
  policy.hysteresis = absl::GetFlag(FLAGS_hysteresis);
  policy.constraints.tier_classes_only = absl::GetFlag(FLAGS_tier_classes_only);
  if (!policy.constraints.tier_classes_only) policy.constraints.opt_in_tiers.clear();  // any class
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_allowed_tiers), ',', absl::SkipEmpty())) {
    cloudflux::common::v1::StorageTier tier;
    if (!cloudflux::common::v1::StorageTier_Parse(absl::StrCat("STORAGE_TIER_", name), &tier)) {
      std::fprintf(stderr, "--allowed_tiers: unknown tier %s\n", std::string(name).c_str());
      return 2;
    }
    policy.constraints.allowed_tiers.insert(tier);
  }
  auto role = pricing::ParseForecastRole(absl::GetFlag(FLAGS_forecast_role));
  if (!role.ok()) {
    std::fprintf(stderr, "--forecast_role: %s\n", std::string(role.status().message()).c_str());
    return 2;
  }
  policy.forecast_role = *role;
  std::vector<sim::Trace> traces;
  for (const auto& kind : absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',', absl::SkipEmpty())) {
    auto t = sim::GenerateTrace(std::string(kind), absl::GetFlag(FLAGS_objects), absl::GetFlag(FLAGS_days),
                                absl::GetFlag(FLAGS_seed));
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", std::string(t.status().message()).c_str());
      return 2;
    }
    traces.push_back(std::move(*t));
  }
  if (!absl::GetFlag(FLAGS_trace_csv).empty()) {
    auto t = sim::ReadCsvTrace(absl::GetFlag(FLAGS_trace_csv));
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", std::string(t.status().message()).c_str());
      return 2;
    }
    traces.push_back(std::move(*t));
  }
  for (const auto& t : traces) {
    absl::Time start = absl::Now();
    sim::ForecastTable learned;
    if (absl::GetFlag(FLAGS_learned_forecast)) learned = LearnedForecasts(t, policy.horizon_days);
    sim::Report r = sim::Simulate(*catalog, t, policy, absl::GetFlag(FLAGS_perfect_forecast),
                                  absl::GetFlag(FLAGS_learned_forecast) ? &learned : nullptr);
    Print(r, absl::ToDoubleSeconds(absl::Now() - start));
    if (absl::GetFlag(FLAGS_explain) > 0) Explain(*catalog, t, policy, absl::GetFlag(FLAGS_explain));
  }
  return 0;
}
