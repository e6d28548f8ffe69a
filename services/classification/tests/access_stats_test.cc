// AccessStatsStore against a real PostgreSQL (scratch database with the
// classification schema): every object event, batches folded per object,
// duplicates not double counted, windows by day.
#include <gtest/gtest.h>

#include <google/protobuf/util/time_util.h>

#include "access_stats.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/storage/v1/events.pb.h"
#include "cloudflux/testing/testing.h"

namespace cloudflux::classification {
namespace {

namespace sv1 = cloudflux::storage::v1;
using google::protobuf::util::TimeUtil;
constexpr auto WARM = cloudflux::common::v1::STORAGE_TIER_WARM;
constexpr auto COLD = cloudflux::common::v1::STORAGE_TIER_COLD;

class AccessStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = testing::ScratchDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto pool = db::Pool::Create({.url = db_->url(), .max_connections = 2});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    auto migrations = db::LoadMigrations(std::string(CLOUDFLUX_SOURCE_DIR) + "/services/classification/schema");
    ASSERT_TRUE(migrations.ok()) << migrations.status();
    ASSERT_TRUE(db::ApplyMigrations(*pool_, "classification", *migrations).ok());
    ASSERT_TRUE(events::MigrateEventTables(*pool_, "classification").ok());
    store_ = std::make_unique<AccessStatsStore>(*pool_);
  }

  events::v1::EventEnvelope Event(const std::string& key, const google::protobuf::Message& payload) {
    return events::MakeEnvelope("cloudflux/storage-adapter", "objects/photos/" + key, "photos/" + key,
                                payload, clock_);
  }
  events::v1::EventEnvelope Created(const std::string& key, int64_t size, int64_t version = 1) {
    sv1::ObjectCreated c;
    auto* o = c.mutable_object();
    o->set_namespace_("photos");
    o->set_key(key);
    o->set_size(size);
    o->set_version(version);
    o->set_backend("s3");
    o->set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
    *o->mutable_created() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(clock_.Now()));
    c.set_overwrite(version > 1);
    return Event(key, c);
  }
  events::v1::EventEnvelope Read(const std::string& key, int64_t reads, int64_t bytes, absl::Time at,
                                 int64_t version = 1) {
    sv1::ObjectRead r;
    r.set_namespace_("photos");
    r.set_key(key);
    r.set_version(version);
    r.set_reads(reads);
    r.set_bytes_read(bytes);
    r.set_size(1000);
    r.set_backend("local");
    r.set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
    *r.mutable_first_read() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(at));
    *r.mutable_last_read() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(at));
    return Event(key, r);
  }

  std::unique_ptr<testing::ScratchDatabase> db_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<AccessStatsStore> store_;
  core::ManualClock clock_{absl::FromCivil(absl::CivilSecond(2026, 11, 1, 12, 0, 0), absl::UTCTimeZone())};
};

TEST_F(AccessStatsTest, EventsBuildWindowsAndDuplicatesCountOnce) {
  absl::Time t0 = clock_.Now();
  std::vector<events::v1::EventEnvelope> batch = {Created("a.jpg", 5000), Read("a.jpg", 3, 15000, t0),
                                                  Read("a.jpg", 2, 10000, t0 - absl::Hours(24 * 10)),
                                                  Read("a.jpg", 4, 20000, t0 - absl::Hours(24 * 60))};
  auto applied = store_->Apply(batch);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->applied, 4);
  // The same events again (redelivery) and one twice in a batch: no effect.
  std::vector<events::v1::EventEnvelope> again = batch;
  again.push_back(batch[1]);
  applied = store_->Apply(again);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->applied, 0);
  EXPECT_EQ(applied->duplicates, 5);

  auto s = store_->Get("photos", "a.jpg", t0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->size, 5000);
  EXPECT_EQ(s->backend, "s3") << "the creation, not the reads, describes the object";
  EXPECT_EQ(s->reads_total, 9);
  EXPECT_EQ(s->bytes_read, 45000);
  EXPECT_EQ(s->reads_1d, 3);
  EXPECT_EQ(s->reads_7d, 3);
  EXPECT_EQ(s->reads_30d, 5);
  EXPECT_EQ(s->reads_90d, 9);
  ASSERT_TRUE(s->last_read.has_value());
  EXPECT_EQ(absl::ToUnixSeconds(*s->last_read), absl::ToUnixSeconds(t0));
}

TEST_F(AccessStatsTest, TierChangesRelocationsOverwritesAndDeletes) {
  ASSERT_TRUE(store_->Apply({Created("b", 100), Read("b", 1, 100, clock_.Now())}).ok());
  clock_.Advance(absl::Hours(1));
  sv1::ObjectTierChanged t;
  t.set_namespace_("photos");
  t.set_key("b");
  t.set_version(1);
  t.set_backend("s3");
  t.set_from_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
  t.set_to_tier(WARM);
  t.set_size(100);
  ASSERT_TRUE(store_->Apply({Event("b", t)}).ok());
  auto s = store_->Get("photos", "b", clock_.Now());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->tier, WARM);
  EXPECT_EQ(absl::ToUnixSeconds(*s->placed), absl::ToUnixSeconds(clock_.Now()));
  EXPECT_EQ(s->reads_total, 1) << "history kept across a tier change";

  sv1::ObjectRelocated r;
  r.set_namespace_("photos");
  r.set_key("b");
  r.set_version(1);
  r.set_from_backend("s3");
  r.set_to_backend("azure");
  r.set_to_tier(COLD);
  r.set_size(100);
  ASSERT_TRUE(store_->Apply({Event("b", r)}).ok());
  s = store_->Get("photos", "b", clock_.Now());
  EXPECT_EQ(s->backend, "azure");
  EXPECT_EQ(s->tier, COLD);

  // An overwrite is a new object: its history starts over.
  ASSERT_TRUE(store_->Apply({Created("b", 700, 2)}).ok());
  s = store_->Get("photos", "b", clock_.Now());
  EXPECT_EQ(s->version, 2);
  EXPECT_EQ(s->size, 700);
  EXPECT_EQ(s->reads_total, 0);
  EXPECT_EQ(s->reads_90d, 0);

  sv1::ObjectDeleted d;
  d.set_namespace_("photos");
  d.set_key("b");
  d.set_version(2);
  ASSERT_TRUE(store_->Apply({Event("b", d)}).ok());
  EXPECT_EQ(store_->Get("photos", "b", clock_.Now()).status().code(), absl::StatusCode::kNotFound);

  // Created, read and deleted within one batch: nothing stays; deleted then
  // created again: only the new one.
  sv1::ObjectDeleted dc = d;
  dc.set_key("c");
  ASSERT_TRUE(store_->Apply({Created("c", 1), Read("c", 5, 5, clock_.Now()), Event("c", dc)}).ok());
  EXPECT_EQ(store_->Get("photos", "c", clock_.Now()).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->Apply({Created("e", 1), Read("e", 5, 5, clock_.Now()), Event("e", [&] {
                               sv1::ObjectDeleted de = d;
                               de.set_key("e");
                               return de;
                             }()),
                             Created("e", 42)})
                  .ok());
  auto e = store_->Get("photos", "e", clock_.Now());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size, 42);
  EXPECT_EQ(e->reads_total, 0);
}

TEST_F(AccessStatsTest, LateReadsOfADeletedVersionDoNotBringItBack) {
  ASSERT_TRUE(store_->Apply({Created("t", 10), Read("t", 2, 20, clock_.Now())}).ok());
  sv1::ObjectDeleted d;
  d.set_namespace_("photos");
  d.set_key("t");
  d.set_version(1);
  ASSERT_TRUE(store_->Apply({Event("t", d)}).ok());
  // The storage adapter flushes read counts after the deletion was published.
  ASSERT_TRUE(store_->Apply({Read("t", 3, 30, clock_.Now())}).ok());
  EXPECT_EQ(store_->Get("photos", "t", clock_.Now()).status().code(), absl::StatusCode::kNotFound);
  auto daily = pool_->Exec("SELECT count(*) FROM classification.object_reads_daily WHERE key = 't'");
  EXPECT_EQ((*daily)[0].Int(0), 0);
  // Within one batch too.
  ASSERT_TRUE(store_->Apply({Created("u", 10), Event("u", [&] {
                               sv1::ObjectDeleted du = d;
                               du.set_key("u");
                               return du;
                             }()),
                             Read("u", 1, 10, clock_.Now())})
                  .ok());
  EXPECT_EQ(store_->Get("photos", "u", clock_.Now()).status().code(), absl::StatusCode::kNotFound);
  // A new version under the same key: reads of it count (even before its
  // creation event), and its creation clears the tombstone.
  ASSERT_TRUE(store_->Apply({Read("t", 4, 40, clock_.Now(), /*version=*/2)}).ok());
  auto s = store_->Get("photos", "t", clock_.Now());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reads_total, 4);
  ASSERT_TRUE(store_->Apply({Created("t", 99, 2)}).ok());
  s = store_->Get("photos", "t", clock_.Now());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->size, 99);
}

TEST_F(AccessStatsTest, ReadsOfAnObjectNeverSeenCreatedDescribeIt) {
  ASSERT_TRUE(store_->Apply({Read("old", 2, 2000, clock_.Now())}).ok());
  auto s = store_->Get("photos", "old", clock_.Now());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->size, 1000);
  EXPECT_EQ(s->backend, "local");
  // A later creation event replaces those guesses; reads keep adding up.
  ASSERT_TRUE(store_->Apply({Read("old", 1, 1000, clock_.Now())}).ok());
  EXPECT_EQ(store_->Get("photos", "old", clock_.Now())->reads_total, 3);
}

TEST_F(AccessStatsTest, OtherEventsAndGarbageAreSkipped) {
  events::ConsumedMessage garbage;
  garbage.value = "not an envelope";
  sv1::PutObjectHeader unrelated;
  events::ConsumedMessage other;
  ASSERT_TRUE(Event("x", unrelated).SerializeToString(&other.value));
  auto applied = store_->ApplyMessages({garbage, other});
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->skipped, 2);
  EXPECT_EQ(applied->applied, 0);
}

}  // namespace
}  // namespace cloudflux::classification
