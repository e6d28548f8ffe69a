#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <random>

#include "sim.h"

namespace cloudflux::sim {
namespace {

const pricing::PriceCatalog& Catalog() {
  static const pricing::PriceCatalog c =
      *pricing::PriceCatalog::Load(std::string(CLOUDFLUX_SOURCE_DIR) + "/config/price_catalog.json");
  return c;
}

// A toy cloud with short minimum durations, so that brute force can try
// every schedule.
pricing::PriceCatalog ToyCatalog() {
  cloudflux::pricing::v1::PriceCatalog p;
  p.set_currency("USD");
  struct Row {
    const char* name;
    double storage, retrieval, put, get;
    int min_days;
    int64_t latency;
  };
  for (const Row& r : {Row{"HOT", 30, 0, 5, 1, 0, 100}, Row{"WARM", 12, 4, 10, 2, 2, 100},
                       Row{"COLD", 3, 20, 20, 5, 3, 100}, Row{"SLOW", 1, 1, 1, 1, 1, 5000}}) {
    auto* c = p.add_classes();
    c->set_cloud(cloudflux::common::v1::CLOUD_PROVIDER_AWS);
    c->set_storage_class(r.name);
    c->set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
    c->set_storage_per_gb_month(r.storage);
    c->set_retrieval_per_gb(r.retrieval);
    c->set_write_per_1000(r.put * 40);
    c->set_read_per_1000(r.get * 40);
    c->set_min_storage_days(r.min_days);
    c->set_first_byte_latency_ms(r.latency);
    c->set_source("test");
    c->set_as_of("2026-01-01");
  }
  // An auto-tiering class: HOT's price, WARM's after 2 idle days.
  auto* managed = p.add_classes();
  *managed = p.classes(0);
  managed->set_storage_class("AUTO");
  managed->set_managed_tiering("toy-auto");
  auto* fee = p.add_managed_tiering();
  fee->set_name("toy-auto");
  fee->set_cloud(cloudflux::common::v1::CLOUD_PROVIDER_AWS);
  fee->set_per_1000_objects_month(300);
  fee->set_source("test");
  fee->set_as_of("2026-01-01");
  auto* t0 = fee->add_tiers();
  t0->set_priced_as("HOT");
  auto* t1 = fee->add_tiers();
  t1->set_after_idle_days(2);
  t1->set_priced_as("WARM");
  auto catalog = pricing::PriceCatalog::FromProto(p);
  EXPECT_TRUE(catalog.ok()) << catalog.status();
  return std::move(*catalog);
}

TEST(Optimum, EqualsBruteForceOnSmallObjects) {
  auto toy = ToyCatalog();
  Classes classes = AwsClasses(toy);
  std::mt19937 rng(5);
  for (int trial = 0; trial < 60; ++trial) {
    ObjectTrace o;
    o.size = int64_t{1} << 30;
    o.max_latency_ms = 1000;  // SLOW is not allowed
    o.reads.resize(2 + rng() % 6);
    for (auto& r : o.reads) r = rng() % 3 == 0 ? rng() % 4 : 0;
    if (trial % 2 == 0) o.delete_day = o.life();
    double dp_cost = 0;
    Schedule dp = Optimum(classes, o, &dp_cost);
    EXPECT_NEAR(BillSchedule(classes, o, dp).total, dp_cost, 1e-9) << "the DP's cost is its bill";
    EXPECT_EQ(BillSchedule(classes, o, dp).sla_violations, 0);
    // Every schedule over the four allowed classes (SLOW is too slow).
    double best = 1e300;
    Schedule s(o.life(), 0);
    std::function<void(int)> all = [&](int d) {
      if (d == o.life()) {
        best = std::min(best, BillSchedule(classes, o, s).total);
        return;
      }
      for (int c : {0, 1, 2, 4}) {
        s[d] = c;
        all(d + 1);
      }
    };
    all(0);
    EXPECT_NEAR(dp_cost, best, 1e-9) << "trial " << trial;
  }
}

TEST(Billing, HandComputedScheduleWithEarlyDeletion) {
  const auto& c = Catalog();
  Classes classes = AwsClasses(c);
  ObjectTrace o;
  o.size = int64_t{1} << 30;
  o.reads = {2, 0, 0, 0, 0};
  o.delete_day = 5;
  int standard = classes.Index("STANDARD"), ia = classes.Index("STANDARD_IA");
  Bill b = BillSchedule(classes, o, {standard, standard, ia, ia, ia});
  EXPECT_NEAR(b.storage, 2 * 0.023 / 30 + 3 * 0.0125 / 30, 1e-12);
  EXPECT_NEAR(b.requests, 0.005 / 1000 + 2 * 0.0004 / 1000, 1e-12);
  EXPECT_NEAR(b.transitions, 0.0004 / 1000 + 0 + 0.01 / 1000, 1e-12);
  EXPECT_NEAR(b.early_deletion, 27 * 0.0125 / 30, 1e-12) << "deleted 3 days into a 30-day minimum";
  EXPECT_EQ(b.moves, 1);
}

TEST(Billing, AMoveBetweenCloudsPaysTheSourcesEgress) {
  const auto& c = Catalog();
  Classes all = AllClasses(c);
  ObjectTrace o;
  o.size = int64_t{1} << 30;
  o.reads.assign(4, 0);
  const int aws = all.Index(cloudflux::common::v1::CLOUD_PROVIDER_AWS, "STANDARD"),
            gcs = all.Index(cloudflux::common::v1::CLOUD_PROVIDER_GCP, "STANDARD");
  ASSERT_GE(aws, 0);
  ASSERT_GE(gcs, 0);
  Bill b = BillSchedule(all, o, {aws, aws, gcs, gcs});
  // A GET in S3, a PUT in GCS and 1 GiB of AWS egress.
  EXPECT_NEAR(b.transitions,
              all.list[aws]->read_per_1000() / 1000 + all.list[gcs]->write_per_1000() / 1000 +
                  static_cast<double>(o.size) / pricing::kBytesPerGb * c.EgressPerGb(all.list[aws]->cloud(), all.list[gcs]->cloud()),
              1e-12);
  EXPECT_GT(c.EgressPerGb(all.list[aws]->cloud(), all.list[gcs]->cloud()), 0);
  // Within one cloud there is none.
  const int ia = all.Index(cloudflux::common::v1::CLOUD_PROVIDER_AWS, "STANDARD_IA");
  EXPECT_NEAR(BillSchedule(all, o, {aws, aws, ia, ia}).transitions,
              all.list[aws]->read_per_1000() / 1000 + all.list[ia]->write_per_1000() / 1000, 1e-12);
}

TEST(Simulate, PerCloudOptimaBoundTheBestCloudAndCloudFluxAnyCloud) {
  auto t = GenerateTrace("mixed", 200, 120, 3);
  ASSERT_TRUE(t.ok());
  pricing::TierPolicy policy;
  policy.constraints.tier_classes_only = true;
  Report r = Simulate(Catalog(), *t, policy);
  const double best = r.Of("optimum-best-cloud").total;
  EXPECT_GT(best, 0);
  for (const char* each : {"optimum", "optimum-gcp", "optimum-azure"}) EXPECT_LE(best, r.Of(each).total + 1e-9) << each;
  // No policy that stays in one cloud beats the best cloud's optimum.
  for (const char* each : {"cloudflux", "s3-intelligent-tiering", "gcs-autoclass", "all-standard"}) {
    EXPECT_GE(r.Of(each).total, best - 1e-9) << each;
  }
  // Free to choose, CloudFlux pays no more than writing everything to S3
  // Standard and keeps every latency need.
  EXPECT_GT(r.Of("cloudflux-any-cloud").total, 0);
  EXPECT_LE(r.Of("cloudflux-any-cloud").total, r.Of("all-standard").total);
  EXPECT_EQ(r.Of("cloudflux-any-cloud").sla_violations, 0);
}

TEST(ManagedTiering, IntelligentTieringRulesAndThe128KbRule) {
  const auto& c = Catalog();
  ObjectTrace o;
  o.size = int64_t{1} << 30;
  o.reads.assign(100, 0);
  Classes aws = AwsClasses(c);
  auto it = [&] { return BillSchedule(aws, o, AllIn(aws, "INTELLIGENT_TIERING", o)); };
  Bill b = it();
  EXPECT_NEAR(b.storage, (30 * 0.023 + 60 * 0.0125 + 10 * 0.004) / 30, 1e-12);
  EXPECT_NEAR(b.monitoring, 100 * 0.0025 / 1000 / 30, 1e-12);
  EXPECT_NEAR(b.requests, 0.005 / 1000, 1e-12);
  // A read on day 40 brings it back to the frequent tier for 30 more days.
  o.reads[40] = 1;
  b = it();
  EXPECT_NEAR(b.storage, (30 * 0.023 + 10 * 0.0125 + 30 * 0.023 + 30 * 0.0125) / 30, 1e-12);
  // Under 128 KiB: always frequent, never monitored.
  o.size = 100000;
  b = it();
  EXPECT_NEAR(b.storage, 100 * 100000.0 / (1 << 30) * 0.023 / 30, 1e-15);
  EXPECT_EQ(b.monitoring, 0);
}

TEST(Trace, CsvReaderAndErrors) {
  std::string path = ::testing::TempDir() + "/trace.csv";
  std::ofstream(path) << "timestamp_seconds,object_id,size_bytes,op,max_latency_ms\n"
                         "# comment\n"
                         "0,a,1000,PUT,1000\n"
                         "100,b,2000,PUT,172800000\n"
                         "86500,a,1000,GET\n"
                         "86600,a,1000,GET\n"
                         "172900,b,2000,GET\n"
                         "259300,a,1000,DELETE\n"
                         "400000,b,2000,GET\n";
  auto t = ReadCsvTrace(path);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->days, 5);
  ASSERT_EQ(t->objects.size(), 2u);
  const ObjectTrace& a = t->objects[0];
  EXPECT_EQ(a.delete_day, 3);
  EXPECT_EQ(a.reads, (std::vector<uint32_t>{0, 2, 0}));
  const ObjectTrace& b = t->objects[1];
  EXPECT_EQ(b.max_latency_ms, 172800000);
  EXPECT_EQ(b.reads, (std::vector<uint32_t>{0, 0, 1, 0, 1}));
  std::ofstream(path) << "0,a,1000,COPY\n";
  EXPECT_EQ(ReadCsvTrace(path).status().code(), absl::StatusCode::kInvalidArgument);
  std::ofstream(path) << "0,a,-5,PUT\n";
  EXPECT_EQ(ReadCsvTrace(path).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Simulate, TheOptimumIsTheFloorAndLatencyNeedsAreKept) {
  auto t = GenerateTrace("mixed", 300, 200, 3);
  ASSERT_TRUE(t.ok());
  Report r = Simulate(Catalog(), *t, pricing::TierPolicy{}, /*perfect_forecast=*/true);
  const Bill& cf = r.Of("cloudflux");
  const Bill& foreseen = r.Of("cloudflux+perfect-forecast");
  const Bill& opt = r.Of("optimum");
  EXPECT_GT(cf.total, 0);
  EXPECT_LE(opt.total, cf.total + 1e-9) << "nothing beats the optimum";
  EXPECT_LE(opt.total, r.Of("s3-intelligent-tiering").total + 1e-9);
  EXPECT_LE(opt.total, r.Of("all-standard").total + 1e-9);
  EXPECT_EQ(opt.sla_violations, 0);
  EXPECT_EQ(cf.sla_violations, 0) << "CloudFlux only picks classes fast enough for each object";
  EXPECT_LT(cf.total, r.Of("all-standard").total);
  EXPECT_GT(r.Of("lifecycle-30-90").sla_violations, 0) << "GLACIER reads take hours";
  // Knowing each object's future reads, the same rule does better, and
  // still not better than the optimum.
  EXPECT_LT(foreseen.total, cf.total);
  EXPECT_LE(opt.total, foreseen.total + 1e-9);
  EXPECT_EQ(foreseen.sla_violations, 0);
  EXPECT_EQ(Simulate(Catalog(), *t, pricing::TierPolicy{}).Of("cloudflux+perfect-forecast").total, 0)
      << "only when asked for";
}

// Property: given perfect forecasts the decision rule never pays more than
// from counts alone, on every generated family (seeds vary), including many
// small rarely-read objects (request prices and minimum billable sizes
// outweigh storage) and large datasets idle for weeks then read heavily.
TEST(Simulate, PerfectForecastsNeverCostMoreThanCountsAlone) {
  for (const char* kind : {"mixed", "media", "backup", "analytics", "small-rare", "idle-burst"}) {
    for (uint64_t seed : {11, 12}) {
      auto t = GenerateTrace(kind, 300, 240, seed);
      ASSERT_TRUE(t.ok()) << kind;
      Report r = Simulate(Catalog(), *t, pricing::TierPolicy{}, /*perfect_forecast=*/true);
      EXPECT_LE(r.Of("cloudflux+perfect-forecast").total, r.Of("cloudflux").total * (1 + 1e-9))
          << kind << " seed " << seed;
      EXPECT_EQ(r.Of("cloudflux+perfect-forecast").sla_violations, 0) << kind;
    }
  }
}

// The generator's rates are what its reads are drawn from: over a trace the
// reads add up to the rates (audit reads aside), an archive's rate is 0,
// and the rate oracle forecasts their mean over the horizon, with the
// object's end cutting the window short.
TEST(Trace, GeneratedRatesAreTheReadsExpectedAndTheOraclesForecastThem) {
  auto t = GenerateTrace("mixed", 400, 200, 5);
  ASSERT_TRUE(t.ok());
  double reads = 0, expected = 0;
  for (const ObjectTrace& o : t->objects) {
    ASSERT_EQ(o.rate.size(), o.reads.size()) << o.id;
    for (size_t d = 0; d < o.reads.size(); ++d) {
      ASSERT_GE(o.rate[d], 0);
      reads += o.reads[d];
      expected += o.rate[d];
    }
  }
  ASSERT_GT(expected, 1e4);
  // At most one audit read per object on top of the Poisson draws.
  EXPECT_NEAR(reads, expected, 5 * std::sqrt(expected) + t->objects.size());

  ObjectTrace o;
  o.reads = {0, 0, 0, 0, 0};
  o.rate = {1, 2, 3, 4, 5};
  auto f = RateForecasts(o, 2);
  ASSERT_EQ(f.size(), 5u);
  EXPECT_DOUBLE_EQ(f[0]->reads_next_7d, 7 * 1.5);
  EXPECT_DOUBLE_EQ(f[3]->reads_next_7d, 7 * 4.5);
  EXPECT_DOUBLE_EQ(f[4]->reads_next_7d, 7 * 5.0) << "the last day: the window ends with the object";
  EXPECT_DOUBLE_EQ(f[4]->confidence, 1);

  // What could be known: a burst's days once it has begun, its expected
  // rate (or the quiet one) before; every other object's rate as it is.
  int bursts_checked = 0;
  for (const ObjectTrace& each : t->objects) {
    if (each.burst_from.empty()) {
      if (each.life() > 10) EXPECT_EQ(KnowableRate(each, 3, 10), each.rate[10]);
      continue;
    }
    ASSERT_EQ(each.burst_from.size(), each.reads.size());
    EXPECT_GT(each.unforeseen_rate, each.quiet_rate);
    for (int d = 1; d < each.life(); ++d) {
      const int began = each.burst_from[d];
      if (began < 1 || began != d) continue;  // the first day of a burst
      EXPECT_GT(each.rate[d], each.quiet_rate);
      EXPECT_FLOAT_EQ(KnowableRate(each, d, d), each.unforeseen_rate) << "begins on the origin: not foreseen";
      EXPECT_FLOAT_EQ(KnowableRate(each, d, d, true), each.quiet_rate);
      EXPECT_FLOAT_EQ(KnowableRate(each, d + 1, d), each.rate[d]) << "begun before the origin: known";
      ++bursts_checked;
    }
  }
  EXPECT_GT(bursts_checked, 10);
  auto known = KnowableRateForecasts(o, 2);
  EXPECT_DOUBLE_EQ(known[0]->reads_next_7d, 7 * 1.5) << "no bursts: the rate";

  // The oracle rows come with the perfect forecast's, on generated traces
  // only, and the optimum stays the floor.
  Report r = Simulate(Catalog(), *t, pricing::TierPolicy{}, /*perfect_forecast=*/true);
  EXPECT_GT(r.Of("cloudflux+rate-oracle").total, 0);
  EXPECT_LE(r.Of("optimum").total, r.Of("cloudflux+rate-oracle").total + 1e-9);
  EXPECT_EQ(r.Of("cloudflux+rate-oracle").sla_violations, 0);
  EXPECT_GT(r.Of("cloudflux+knowable-rate").total, 0);
  EXPECT_LE(r.Of("optimum").total, r.Of("cloudflux+knowable-rate").total + 1e-9);
  Trace csv = *t;
  for (ObjectTrace& each : csv.objects) each.rate.clear();
  EXPECT_EQ(Simulate(Catalog(), csv, pricing::TierPolicy{}, true).Of("cloudflux+rate-oracle").total, 0);
}

}  // namespace
}  // namespace cloudflux::sim
