// Tier decisions per second, pure compute (pricing::Decide on varied
// objects: sizes, ages, read counts, current classes, latency needs):
//   build/release/bench/classification/decide_bench [--benchmark_min_time=2]
// Peer: the same decisions with the simplest rule engine (Intelligent-
// Tiering's idle-days thresholds), to show what the cost model costs.
#include <benchmark/benchmark.h>

#include <random>

#include "cloudflux/pricing/decide.h"

namespace {

using namespace cloudflux::pricing;  // NOLINT

struct Case {
  AccessStats stats;
  Placement current;
  TierPolicy policy;
};

const PriceCatalog& Catalog() {
  static const PriceCatalog c = *PriceCatalog::Load(CLOUDFLUX_SOURCE_DIR "/config/price_catalog.json");
  return c;
}

std::vector<Case> Cases() {
  std::mt19937_64 rng(7);
  std::vector<const ClassPrice*> aws;
  for (const ClassPrice* c : Catalog().classes()) {
    if (c->cloud() == cloudflux::common::v1::CLOUD_PROVIDER_AWS) aws.push_back(c);
  }
  std::vector<Case> out(10000);
  for (auto& k : out) {
    k.stats.size = int64_t{1} << (10 + rng() % 24);
    k.stats.age_days = 1 + rng() % 720;
    k.stats.days_in_class = std::min<double>(k.stats.age_days, rng() % 200);
    k.stats.reads_90d = rng() % 4 == 0 ? 0 : rng() % 500;
    k.stats.reads_30d = k.stats.reads_90d / (1 + rng() % 4);
    k.stats.reads_7d = k.stats.reads_30d / (1 + rng() % 5);
    k.stats.reads_1d = k.stats.reads_7d / (1 + rng() % 7);
    k.stats.days_since_last_read = k.stats.reads_90d == 0 ? k.stats.age_days : rng() % 30;
    k.current = {aws[rng() % aws.size()], k.stats.days_in_class, static_cast<double>(rng() % 120)};
    k.policy.constraints.allowed_clouds = {cloudflux::common::v1::CLOUD_PROVIDER_AWS};
    k.policy.constraints.max_first_byte_latency_ms = rng() % 4 == 0 ? 48LL * 3600 * 1000 : 1000;
  }
  return out;
}

void BM_Decide(benchmark::State& state) {
  const auto cases = Cases();
  size_t i = 0, moves = 0;
  for (auto _ : state) {
    const Case& k = cases[i++ % cases.size()];
    Decision d = Decide(Catalog(), k.stats, k.current, k.policy);
    moves += d.move;
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["moved"] = benchmark::Counter(static_cast<double>(moves) / state.iterations());
}
BENCHMARK(BM_Decide)->ThreadRange(1, 2)->UseRealTime();

// The peer: Intelligent-Tiering's rule (class by days since the last read).
void BM_IdleDaysRule(benchmark::State& state) {
  const auto cases = Cases();
  const PriceCatalog& c = Catalog();
  const auto aws = cloudflux::common::v1::CLOUD_PROVIDER_AWS;
  const ClassPrice* tiers[] = {c.Find(aws, "STANDARD"), c.Find(aws, "STANDARD_IA"), c.Find(aws, "GLACIER_IR")};
  size_t i = 0;
  for (auto _ : state) {
    const Case& k = cases[i++ % cases.size()];
    double idle = k.stats.days_since_last_read;
    const ClassPrice* target = tiers[idle >= 90 ? 2 : idle >= 30 ? 1 : 0];
    benchmark::DoNotOptimize(target);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IdleDaysRule)->ThreadRange(1, 2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
