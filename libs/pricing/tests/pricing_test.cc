#include <gtest/gtest.h>

#include <set>

#include <cmath>
#include <fstream>

#include "cloudflux/pricing/catalog.h"
#include "cloudflux/pricing/cost_model.h"
#include "cloudflux/pricing/decide.h"

namespace cloudflux::pricing {
namespace {

constexpr auto AWS = cloudflux::common::v1::CLOUD_PROVIDER_AWS;
constexpr auto GCP = cloudflux::common::v1::CLOUD_PROVIDER_GCP;
constexpr int64_t GiB = int64_t{1} << 30;

const PriceCatalog& Catalog() {
  static const PriceCatalog catalog = [] {
    auto c = PriceCatalog::Load(std::string(CLOUDFLUX_SOURCE_DIR) + "/config/price_catalog.json");
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }();
  return catalog;
}

const CostBreakdown& For(const std::vector<CostBreakdown>& all, const ClassPrice* cls) {
  for (const auto& c : all) {
    if (c.cls == cls) return c;
  }
  static CostBreakdown none;
  ADD_FAILURE() << "candidate missing";
  return none;
}

TEST(PriceCatalog, TheShippedFileLoadsWithEveryCloudAndFee) {
  const auto& c = Catalog();
  EXPECT_EQ(c.classes().size(), 15u);
  ASSERT_NE(c.Find(AWS, "STANDARD_IA"), nullptr);
  EXPECT_DOUBLE_EQ(c.Find(AWS, "STANDARD_IA")->storage_per_gb_month(), 0.0125);
  EXPECT_EQ(c.ForTier(GCP, cloudflux::common::v1::STORAGE_TIER_COLD)->storage_class(), "COLDLINE");
  EXPECT_DOUBLE_EQ(c.EgressPerGb(AWS, GCP), 0.09);
  EXPECT_DOUBLE_EQ(c.EgressPerGb(AWS, AWS), 0);
  ASSERT_NE(c.Managed("s3-intelligent-tiering"), nullptr);
  EXPECT_EQ(c.Managed("s3-intelligent-tiering")->min_monitored_bytes(), 131072);
}

TEST(PriceCatalog, BadFilesGetClearErrors) {
  auto load = [](const std::string& json) {
    std::string path = ::testing::TempDir() + "/catalog.json";
    std::ofstream(path) << json;
    return PriceCatalog::Load(path).status();
  };
  const std::string good_class =
      R"({"cloud": "CLOUD_PROVIDER_AWS", "storageClass": "STANDARD", "tier": "STORAGE_TIER_HOT",
          "storagePerGbMonth": 0.023, "firstByteLatencyMs": 100, "source": "s", "asOf": "2026-06-01"})";
  EXPECT_TRUE(load(R"({"currency": "USD", "classes": [)" + good_class + "]}").ok());
  auto expect_error = [&](const std::string& json, const std::string& text) {
    absl::Status s = load(json);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << json;
    EXPECT_NE(s.message().find(text), std::string::npos) << s;
  };
  expect_error(R"({"currency": "USD", "classes": [)" + good_class + "," + good_class + "]}", "listed twice");
  std::string negative = good_class;
  negative.replace(negative.find("0.023"), 5, "-1");
  expect_error(R"({"currency": "USD", "classes": [)" + negative + "]}", "storage_per_gb_month");
  std::string undated = good_class;
  undated.replace(undated.find("2026-06-01"), 10, "mid-2026");
  expect_error(R"({"currency": "USD", "classes": [)" + undated + "]}", "as_of");
  std::string no_source = good_class;
  no_source.replace(no_source.find(R"("source": "s")"), 13, R"("source": "")");
  expect_error(R"({"currency": "USD", "classes": [)" + no_source + "]}", "source is required");
  std::string no_tier = good_class;
  no_tier.replace(no_tier.find("STORAGE_TIER_HOT"), 16, "STORAGE_TIER_UNSPECIFIED");
  expect_error(R"({"currency": "USD", "classes": [)" + no_tier + "]}", "tier must be");
  expect_error(R"({"classes": [)" + good_class + "]}", "currency");
  expect_error(R"({"currency": "USD", "classes": [{"cloud": "NOPE"}]})", "catalog");
  EXPECT_EQ(PriceCatalog::Load("/no/such/file").status().code(), absl::StatusCode::kNotFound);
}

// Bills worked out by hand from the catalog's list prices.
TEST(CostModel, MatchesHandComputedBills) {
  const auto& c = Catalog();
  const ClassPrice* standard = c.Find(AWS, "STANDARD");
  const ClassPrice* ia = c.Find(AWS, "STANDARD_IA");
  const ClassPrice* deep = c.Find(AWS, "DEEP_ARCHIVE");
  const ClassPrice* nearline = c.Find(GCP, "NEARLINE");
  // 1 GiB, 10 reads of the whole object over 30 days, sitting in STANDARD for a year.
  Usage use{.reads = 10, .bytes_read = 10.0 * GiB};
  auto all = PriceCandidates(c, GiB, {standard, 365}, use, 30, {});
  const auto& stay = For(all, standard);
  EXPECT_TRUE(stay.is_current);
  EXPECT_NEAR(stay.storage, 0.023, 1e-12);
  EXPECT_NEAR(stay.requests, 10 * 0.0004 / 1000, 1e-12);
  EXPECT_NEAR(stay.retrieval, 0, 1e-12);
  EXPECT_NEAR(stay.move(), 0, 1e-12);
  EXPECT_NEAR(stay.monthly, 0.023004, 1e-9);
  // STANDARD_IA: cheaper storage, but 10 GiB retrieved at $0.01.
  const auto& to_ia = For(all, ia);
  EXPECT_NEAR(to_ia.storage, 0.0125, 1e-12);
  EXPECT_NEAR(to_ia.retrieval, 0.1, 1e-12);
  EXPECT_NEAR(to_ia.move_requests, 0.0004 / 1000 + 0.01 / 1000, 1e-12);
  EXPECT_NEAR(to_ia.move_egress, 0, 1e-12);
  EXPECT_NEAR(to_ia.early_deletion, 0, 1e-12);
  EXPECT_NEAR(to_ia.total, 0.0125 + 10 * 0.001 / 1000 + 0.1 + 0.0104 / 1000, 1e-12);
  // Cross-cloud: egress out of AWS at $0.09/GB.
  EXPECT_NEAR(For(all, nearline).move_egress, 0.09, 1e-12);
  // Into DEEP_ARCHIVE for a 30-day horizon: 180 days are committed, plus
  // 40 KiB of overhead per object.
  const auto& to_deep = For(all, deep);
  double deep_gb = (GiB + 40960.0) / GiB;
  EXPECT_NEAR(to_deep.storage, deep_gb * 0.00099, 1e-12);
  EXPECT_NEAR(to_deep.min_duration_commit, deep_gb * 0.00099 * 150 / 30, 1e-12);
  // Cheapest first.
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LE(all[i - 1].total, all[i].total);
}

TEST(CostModel, EarlyDeletionAndThe128KbRule) {
  const auto& c = Catalog();
  const ClassPrice* standard = c.Find(AWS, "STANDARD");
  const ClassPrice* ia = c.Find(AWS, "STANDARD_IA");
  // 10 days into STANDARD_IA (30-day minimum): leaving bills 20 more days.
  auto all = PriceCandidates(c, GiB, {ia, 10}, {}, 30, {});
  EXPECT_NEAR(For(all, standard).early_deletion, 0.0125 * 20 / 30, 1e-12);
  EXPECT_NEAR(For(all, standard).move_retrieval, 0.01, 1e-12);
  // A 10 KB object is billed as 128 KiB in STANDARD_IA, as itself in STANDARD.
  EXPECT_NEAR(BillableGb(*ia, 10000), 131072.0 / GiB, 1e-15);
  EXPECT_NEAR(BillableGb(*standard, 10000), 10000.0 / GiB, 1e-15);
  auto small = PriceCandidates(c, 10000, {standard, 100}, {}, 30, {});
  EXPECT_GT(For(small, ia).storage, For(small, standard).storage) << "IA costs more for tiny objects";
}

// S3 Intelligent-Tiering as a class: its tier by days idle, and the
// expected price for Poisson reads.
TEST(CostModel, ManagedTieringPricesByIdleDays) {
  const auto& c = Catalog();
  const ClassPrice* it = c.Find(AWS, "INTELLIGENT_TIERING");
  ASSERT_NE(it, nullptr);
  const ManagedTiers* tiers = c.TiersOf(*it);
  ASSERT_NE(tiers, nullptr);
  EXPECT_EQ(c.TiersOf(*c.Find(AWS, "STANDARD")), nullptr);
  EXPECT_DOUBLE_EQ(tiers->PriceAfterIdle(GiB, 0), 0.023);
  EXPECT_DOUBLE_EQ(tiers->PriceAfterIdle(GiB, 30), 0.0125);
  EXPECT_DOUBLE_EQ(tiers->PriceAfterIdle(GiB, 400), 0.004);
  EXPECT_DOUBLE_EQ(tiers->PriceAfterIdle(100000, 400), 0.023) << "under 128 KiB: never tiered";
  EXPECT_NEAR(tiers->fee_per_object_month, 0.0025 / 1000, 1e-15);
  double rate = 1.0 / 30;
  EXPECT_NEAR(tiers->ExpectedPrice(GiB, rate),
              0.023 * (1 - std::exp(-1.0)) + 0.0125 * (std::exp(-1.0) - std::exp(-3.0)) + 0.004 * std::exp(-3.0),
              1e-12);
  EXPECT_NEAR(tiers->ExpectedPrice(GiB, 0), 0.004, 1e-12);
  // As a candidate: 1 read a month on 1 GiB, no retrieval fee, the monitoring fee.
  auto all = PriceCandidates(c, GiB, {c.Find(AWS, "STANDARD"), 100}, {.reads = 1, .bytes_read = 1.0 * GiB}, 30, {});
  const auto& b = For(all, it);
  EXPECT_NEAR(b.storage, tiers->ExpectedPriceFrom(GiB, rate, 0, 30) + 0.0025 / 1000, 1e-12);
  // Entering counts as an access: 30 days ahead all in the first tier when
  // never read; an object idle for 200 days stays at the last tier.
  EXPECT_NEAR(tiers->ExpectedPriceFrom(GiB, 0, 0, 30), 0.023, 1e-12);
  EXPECT_NEAR(tiers->ExpectedPriceFrom(GiB, 0, 200, 30), 0.004, 1e-12);
  EXPECT_NEAR(tiers->ExpectedPriceFrom(GiB, 0, 20, 20), (10 * 0.023 + 10 * 0.0125) / 20, 1e-12);
  EXPECT_EQ(b.retrieval, 0);
}

TEST(CostModel, ConstraintsFilterCandidatesButKeepTheCurrentOne) {
  const auto& c = Catalog();
  const ClassPrice* deep = c.Find(AWS, "DEEP_ARCHIVE");
  Constraints fast{.max_first_byte_latency_ms = 1000, .allowed_clouds = {AWS}};
  auto all = PriceCandidates(c, GiB, {deep, 400}, {}, 30, fast);
  bool has_current = false;
  for (const auto& x : all) {
    EXPECT_EQ(x.cls->cloud(), AWS);
    if (x.is_current) has_current = true;
    if (!x.is_current) EXPECT_LE(x.cls->first_byte_latency_ms(), 1000);
  }
  EXPECT_TRUE(has_current);
  // STANDARD, STANDARD_IA, GLACIER_IR, INTELLIGENT_TIERING + the current DEEP_ARCHIVE
  EXPECT_EQ(all.size(), 5u);
  // Moved by tier: only the class each tier stands for, which is the one
  // the storage adapter writes (ARCHIVE is DEEP_ARCHIVE, not GLACIER; AUTO
  // is Intelligent-Tiering).
  Constraints slow{.max_first_byte_latency_ms = 48LL * 3600 * 1000, .allowed_clouds = {AWS}};
  const ClassPrice* standard = c.Find(AWS, "STANDARD");
  // GLACIER (ARCHIVE_FLEXIBLE) is opt-in: held back unless allowed_tiers
  // names it, or nothing is held back.
  EXPECT_EQ(PriceCandidates(c, GiB, {standard, 400}, {}, 30, slow).size(), 5u);
  Constraints any = slow;
  any.opt_in_tiers.clear();
  EXPECT_EQ(PriceCandidates(c, GiB, {standard, 400}, {}, 30, any).size(), 6u);
  Constraints named = slow;
  named.allowed_tiers = {cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE};
  auto flexible = PriceCandidates(c, GiB, {standard, 400}, {}, 30, named);
  ASSERT_EQ(flexible.size(), 2u);  // the current class stays a candidate
  EXPECT_EQ(flexible[0].cls->storage_class() == "GLACIER" ? flexible[0].cls : flexible[1].cls,
            c.Find(AWS, "GLACIER"));
  // An object already in GLACIER keeps it as a candidate (it may stay).
  auto staying = PriceCandidates(c, GiB, {c.Find(AWS, "GLACIER"), 400}, {}, 30, slow);
  EXPECT_TRUE(std::any_of(staying.begin(), staying.end(), [](const auto& x) { return x.is_current; }));
  slow.tier_classes_only = true;
  auto by_tier = PriceCandidates(c, GiB, {standard, 400}, {}, 30, slow);
  std::set<std::string> names;
  for (const auto& x : by_tier) {
    names.insert(x.cls->storage_class());
    EXPECT_EQ(c.ForTier(AWS, x.cls->tier()), x.cls) << x.cls->storage_class();
  }
  EXPECT_EQ(names, (std::set<std::string>{"STANDARD", "STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE",
                                          "INTELLIGENT_TIERING"}));
  EXPECT_EQ(c.ForTier(AWS, cloudflux::common::v1::STORAGE_TIER_AUTO)->storage_class(), "INTELLIGENT_TIERING");
  EXPECT_EQ(c.ForTier(AWS, cloudflux::common::v1::STORAGE_TIER_ARCHIVE)->storage_class(), "DEEP_ARCHIVE");
  EXPECT_EQ(c.ForTier(GCP, cloudflux::common::v1::STORAGE_TIER_AUTO), nullptr);
  EXPECT_EQ(c.ForTier(AWS, cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE)->storage_class(), "GLACIER");
  EXPECT_EQ(c.ForTier(GCP, cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE), nullptr);
  EXPECT_TRUE(IsArchiveTier(cloudflux::common::v1::STORAGE_TIER_ARCHIVE));
  EXPECT_TRUE(IsArchiveTier(cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE));
  EXPECT_FALSE(IsArchiveTier(cloudflux::common::v1::STORAGE_TIER_COLD));
}

TierPolicy AwsPolicy(int64_t latency_ms) {
  TierPolicy p;
  p.constraints.allowed_clouds = {AWS};
  p.constraints.max_first_byte_latency_ms = latency_ms;
  return p;
}

TEST(Decide, HotStaysColdMovesWithinTheLatencyNeed) {
  const auto& c = Catalog();
  const ClassPrice* standard = c.Find(AWS, "STANDARD");
  AccessStats hot{.size = 64 << 20, .age_days = 200, .days_in_class = 200,
                  .reads_1d = 40, .reads_7d = 300, .reads_30d = 1200, .reads_90d = 3600};
  auto d = Decide(c, hot, {standard, 200}, AwsPolicy(1000));
  EXPECT_FALSE(d.move) << d.reason;
  EXPECT_EQ(d.target, standard);

  // Quiet for 200 days: out of STANDARD, into the cheapest class with
  // millisecond reads for its expected rate (the prior of a read a month
  // over 30 days of evidence keeps a few reads expected).
  AccessStats cold{.size = 64 << 20, .age_days = 200, .days_in_class = 200};
  d = Decide(c, cold, {standard, 200}, AwsPolicy(1000));
  ASSERT_TRUE(d.move) << d.reason;
  EXPECT_NE(d.target, standard);
  EXPECT_LE(d.target->first_byte_latency_ms(), 1000);
  EXPECT_EQ(d.target, d.candidates.front().cls) << "the cheapest candidate";
  EXPECT_GT(d.saving, 0);
  EXPECT_LT(d.target_monthly, d.current_monthly);
  EXPECT_NE(d.reason.find(d.target->storage_class()), std::string::npos);

  // A large object quiet for years whose reads may take hours: the deepest archive.
  AccessStats frozen{.size = int64_t{50} << 30, .age_days = 1000, .days_in_class = 1000,
                     .days_since_last_read = 1000};
  d = Decide(c, frozen, {standard, 1000}, AwsPolicy(48 * 3600 * 1000));
  ASSERT_TRUE(d.move) << d.reason;
  EXPECT_EQ(d.target->storage_class(), "DEEP_ARCHIVE") << d.reason;
}

TEST(Decide, HysteresisPolicyAndLatencyOverrides) {
  const auto& c = Catalog();
  const ClassPrice* standard = c.Find(AWS, "STANDARD");
  const ClassPrice* ia = c.Find(AWS, "STANDARD_IA");
  const ClassPrice* deep = c.Find(AWS, "DEEP_ARCHIVE");
  AccessStats cold{.size = 64 << 20, .age_days = 200, .days_in_class = 200};
  // A margin larger than any saving keeps the object where it is.
  TierPolicy sticky = AwsPolicy(1000);
  sticky.hysteresis = 0.99;
  EXPECT_FALSE(Decide(c, cold, {standard, 200}, sticky).move);
  // A just-moved object is not moved back for one read: 10 days into IA the
  // early-deletion charge and the copy outweigh going back...
  AccessStats one_read{.size = 64 << 20, .age_days = 60, .days_in_class = 10, .reads_1d = 1,
                       .reads_7d = 1, .reads_30d = 1, .reads_90d = 1};
  auto d = Decide(c, one_read, {ia, 10}, AwsPolicy(1000));
  EXPECT_FALSE(d.move) << d.reason;
  // ...but it is when it is read every few days (retrieval fees dominate):
  // into a class without them.
  AccessStats warm{.size = 64 << 20, .age_days = 60, .days_in_class = 10, .reads_7d = 2, .reads_30d = 6,
                   .reads_90d = 10};
  d = Decide(c, warm, {ia, 10}, AwsPolicy(1000));
  ASSERT_TRUE(d.move) << d.reason;
  EXPECT_EQ(d.target->retrieval_per_gb(), 0) << d.reason;

  TierPolicy off = AwsPolicy(1000);
  off.auto_tiering = false;
  EXPECT_FALSE(Decide(c, cold, {standard, 200}, off).move);
  TierPolicy tiny = AwsPolicy(1000);
  tiny.min_object_size = 1 << 30;
  EXPECT_FALSE(Decide(c, cold, {standard, 200}, tiny).move);
  TierPolicy pinned = AwsPolicy(1000);
  pinned.pinned_tier = cloudflux::common::v1::STORAGE_TIER_WARM;
  d = Decide(c, cold, {standard, 200}, pinned);
  EXPECT_TRUE(d.move);
  EXPECT_EQ(d.target, ia);
  // A pin names its tier: the opt-in ARCHIVE_FLEXIBLE too (hours allowed).
  TierPolicy glacier = AwsPolicy(48LL * 3600 * 1000);
  glacier.pinned_tier = cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE;
  d = Decide(c, cold, {standard, 200}, glacier);
  EXPECT_TRUE(d.move);
  EXPECT_EQ(d.target, c.Find(AWS, "GLACIER"));
  // An object in DEEP_ARCHIVE whose need became 1 s must come out, even at a cost.
  d = Decide(c, cold, {deep, 30}, AwsPolicy(1000));
  EXPECT_TRUE(d.move);
  EXPECT_LE(d.target->first_byte_latency_ms(), 1000);
  EXPECT_NE(d.reason.find("latency"), std::string::npos);
}

TEST(Decide, ForecastOutweighsCountsByItsConfidence) {
  // Quiet for 100 days (unknown before the window): the prior's read a
  // month over 90 + 30 days; known to be quiet for 570 days: over 600.
  AccessStats long_quiet{.size = 1 << 20, .age_days = 600, .days_since_last_read = 570};
  EXPECT_NEAR(EstimateUsage(long_quiet, 30, std::nullopt).reads, 30.0 / 600, 1e-12);
  AccessStats quiet{.size = 1 << 20, .age_days = 100};
  EXPECT_NEAR(EstimateUsage(quiet, 30, std::nullopt).reads, 30.0 / 120, 1e-12);
  EXPECT_NEAR(EstimateUsage(quiet, 30, Forecast{.reads_next_7d = 70, .confidence = 1}).reads, 300, 1e-9);
  EXPECT_NEAR(EstimateUsage(quiet, 30, Forecast{.reads_next_7d = 70, .confidence = 0.5}).reads,
              150 + 0.5 * 30.0 / 120, 1e-9);
  // Steady: the 90-day rate; a burst: the last week's.
  AccessStats busy{.size = 1 << 20, .age_days = 100, .reads_7d = 70, .reads_30d = 300, .reads_90d = 900};
  EXPECT_NEAR(EstimateUsage(busy, 30, std::nullopt).reads, 30 * 901.0 / 120, 1e-9);
  // A burst: the last week's rate for two weeks, then the long-run rate.
  AccessStats burst{.size = 1 << 20, .age_days = 100, .reads_7d = 140, .reads_30d = 140, .reads_90d = 140};
  EXPECT_NEAR(EstimateUsage(burst, 30, std::nullopt).reads, 14 * 140.0 / 14 + 16 * 141.0 / 120, 1e-9);
}

// Forecasts that may only stop (vetoes) or also redirect (confirms) the
// counts' moves never start one; deciding, they do.
TEST(Decide, AForecastsRoleLimitsWhatItCanDoToAPlacedObject) {
  const auto& c = Catalog();
  const ClassPrice* standard = c.Find(AWS, "STANDARD");
  TierPolicy policy = AwsPolicy(48 * 3600 * 1000);
  const Forecast busy{.reads_next_7d = 500, .confidence = 1};
  const Forecast never_read{.reads_next_7d = 0, .confidence = 1};
  // Quiet for 200 days: the counts move it out of STANDARD.
  AccessStats cold{.size = 64 << 20, .age_days = 200, .days_in_class = 200, .days_since_last_read = 200};
  const Decision counts = Decide(c, cold, {standard, 200}, policy);
  ASSERT_TRUE(counts.move) << counts.reason;
  // Busy: read every day; the counts keep it where it is.
  AccessStats hot{.size = 64 << 20, .age_days = 200, .days_in_class = 200,
                  .reads_1d = 40, .reads_7d = 300, .reads_30d = 1200, .reads_90d = 3600};
  ASSERT_FALSE(Decide(c, hot, {standard, 200}, policy).move);
  for (auto role : {TierPolicy::ForecastRole::kVetoes, TierPolicy::ForecastRole::kConfirms}) {
    policy.forecast_role = role;
    // A forecast of many reads stops the counts' move.
    Decision d = Decide(c, cold, {standard, 200}, policy, busy);
    EXPECT_FALSE(d.move) << d.reason;
    EXPECT_EQ(d.target, standard);
    EXPECT_NE(d.reason.find("does not confirm"), std::string::npos) << d.reason;
    // A forecast of no reads cannot move a busy object.
    d = Decide(c, hot, {standard, 200}, policy, never_read);
    EXPECT_FALSE(d.move) << d.reason;
    // Agreeing, the move goes on: vetoes keeps the counts' class, confirms
    // takes the forecast's (for no reads at all, the deepest archive).
    d = Decide(c, cold, {standard, 200}, policy, never_read);
    ASSERT_TRUE(d.move) << d.reason;
    if (role == TierPolicy::ForecastRole::kVetoes) {
      EXPECT_EQ(d.target, counts.target) << d.reason;
    } else {
      EXPECT_EQ(d.target, Decide(c, cold, {standard, 200}, AwsPolicy(48 * 3600 * 1000), never_read).target);
    }
  }
  // Deciding, the forecast does both: it keeps the quiet object where many
  // reads are coming, and moves the busy one it expects never to be read.
  policy.forecast_role = TierPolicy::ForecastRole::kDecides;
  EXPECT_FALSE(Decide(c, cold, {standard, 200}, policy, busy).move);
  EXPECT_TRUE(Decide(c, hot, {standard, 200}, policy, never_read).move);

  EXPECT_EQ(*ParseForecastRole("vetoes"), TierPolicy::ForecastRole::kVetoes);
  EXPECT_EQ(*ParseForecastRole("confirms"), TierPolicy::ForecastRole::kConfirms);
  EXPECT_EQ(*ParseForecastRole("decides"), TierPolicy::ForecastRole::kDecides);
  EXPECT_EQ(ParseForecastRole(std::string("veto\0es", 7)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Decide, AConfidentForecastLiftsTheCautionForNewAndYoungObjects) {
  const auto& c = Catalog();
  const ClassPrice* standard = c.Find(AWS, "STANDARD");
  const TierPolicy relaxed = AwsPolicy(48 * 3600 * 1000);
  const AccessStats fresh{.size = 4 * GiB};
  const Forecast never_read{.reads_next_7d = 0, .confidence = 0.9};
  // Without a forecast a new object goes where reads cost nothing extra and
  // nothing is committed; with a confident one that it will not be read,
  // straight into the deepest archive its latency need allows.
  auto d = Decide(c, fresh, {}, relaxed);
  EXPECT_EQ(d.target->retrieval_per_gb(), 0) << d.reason;
  EXPECT_EQ(d.target->min_storage_days(), 0) << d.reason;
  d = Decide(c, fresh, {}, relaxed, never_read);
  EXPECT_EQ(d.target->storage_class(), "DEEP_ARCHIVE") << d.reason;
  // A forecast of little confidence changes neither rule.
  EXPECT_EQ(Decide(c, fresh, {}, relaxed, Forecast{.reads_next_7d = 0, .confidence = 0.2}).target->min_storage_days(),
            0);
  // Three quiet days are too few to judge by counts, not with the forecast.
  const AccessStats young{.size = 4 * GiB, .age_days = 3, .days_in_class = 3, .days_since_last_read = 3};
  d = Decide(c, young, {standard, 3}, relaxed);
  EXPECT_FALSE(d.move) << d.reason;
  EXPECT_NE(d.reason.find("too young"), std::string::npos) << d.reason;
  d = Decide(c, young, {standard, 3}, relaxed, never_read);
  ASSERT_TRUE(d.move) << d.reason;
  EXPECT_EQ(d.target->storage_class(), "DEEP_ARCHIVE") << d.reason;
  // A confident forecast of many reads keeps the new object out of classes
  // with retrieval fees.
  d = Decide(c, fresh, {}, relaxed, Forecast{.reads_next_7d = 50, .confidence = 0.9});
  EXPECT_EQ(d.target->retrieval_per_gb(), 0) << d.reason;

  // A small object that will not be read: writing it into an archive class
  // costs more in PUT price (and in minimum billable size) than its storage
  // could ever save, so it is written to STANDARD.
  const AccessStats tiny{.size = 30 * 1024};
  d = Decide(c, tiny, {}, relaxed, never_read);
  EXPECT_EQ(d.target->storage_class(), "STANDARD") << d.reason;
  auto priced = PriceCandidates(c, 30 * 1024, {}, {}, 90, {});
  for (const auto& candidate : priced) {
    EXPECT_NEAR(candidate.move_requests, candidate.cls->write_per_1000() / 1000, 1e-15)
        << "a new object's first write is priced: " << candidate.cls->storage_class();
  }
}

}  // namespace
}  // namespace cloudflux::pricing
