// Replays access traces and bills them under every placement policy (see
// sim.h), printing a Markdown table per trace:
//   build/release/bench/classification/tiering_sim [--workloads=mixed,media,backup,analytics]
//       [--objects=3000] [--days=365] [--seed=1] [--trace_csv=FILE] [--catalog=FILE]
//       [--perfect_forecast] [--explain=N]
#include <algorithm>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cloudflux/core/config.h"
#include "sim.h"

ABSL_FLAG(std::string, workloads, "mixed,media,backup,analytics", "Synthetic traces to generate.");
ABSL_FLAG(int32_t, objects, 3000, "Objects per synthetic trace.");
ABSL_FLAG(int32_t, days, 365, "Days per synthetic trace.");
ABSL_FLAG(int64_t, seed, 1, "Random seed of the synthetic traces.");
ABSL_FLAG(std::string, trace_csv, "", "Also replay this CSV trace (format in sim.h).");
ABSL_FLAG(std::string, catalog, CLOUDFLUX_SOURCE_DIR "/config/price_catalog.json", "Price catalog.");
ABSL_FLAG(double, horizon_days, 90, "CloudFlux decision horizon.");
ABSL_FLAG(double, hysteresis, 0.1, "CloudFlux hysteresis margin.");
ABSL_FLAG(bool, perfect_forecast, true,
          "Also bill CloudFlux given each object's real future reads as its forecast (a bound, not a policy).");
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
    sim::Report r = sim::Simulate(*catalog, t, policy, absl::GetFlag(FLAGS_perfect_forecast));
    Print(r, absl::ToDoubleSeconds(absl::Now() - start));
    if (absl::GetFlag(FLAGS_explain) > 0) Explain(*catalog, t, policy, absl::GetFlag(FLAGS_explain));
  }
  return 0;
}
