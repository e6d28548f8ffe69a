// HistoryStore against a real PostgreSQL (scratch database with the
// prediction schema): daily histories from object events, one row per
// object, exactly once, overwrites and deletes, late and early days.
#include <gtest/gtest.h>

#include <google/protobuf/util/time_util.h>

#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/object_events.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/storage/v1/events.pb.h"
#include "cloudflux/testing/testing.h"
#include "history_store.h"

namespace cloudflux::prediction {
namespace {

namespace sv1 = cloudflux::storage::v1;
using google::protobuf::util::TimeUtil;

class HistoryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = testing::ScratchDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto pool = db::Pool::Create({.url = db_->url(), .max_connections = 2});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    auto migrations = db::LoadMigrations(std::string(CLOUDFLUX_SOURCE_DIR) + "/services/prediction/schema");
    ASSERT_TRUE(migrations.ok()) << migrations.status();
    ASSERT_TRUE(db::ApplyMigrations(*pool_, "prediction", *migrations).ok());
    ASSERT_TRUE(events::MigrateEventTables(*pool_, "prediction").ok());
    store_ = std::make_unique<HistoryStore>(*pool_);
  }

  static google::protobuf::Timestamp Ts(absl::Time t) {
    return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
  }
  events::v1::EventEnvelope Event(const std::string& ns, const std::string& key,
                                  const google::protobuf::Message& payload) {
    return events::MakeEnvelope("cloudflux/storage-adapter", key, ns + "/" + key, payload, clock_);
  }
  events::v1::EventEnvelope Created(const std::string& key, int64_t version, absl::Time created,
                                    const std::string& ns = "photos") {
    sv1::ObjectCreated c;
    auto* o = c.mutable_object();
    o->set_namespace_(ns);
    o->set_key(key);
    o->set_size(4096);
    o->set_version(version);
    o->set_backend("local");
    o->set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
    *o->mutable_created() = Ts(created);
    c.set_overwrite(version > 1);
    return Event(ns, key, c);
  }
  events::v1::EventEnvelope Read(const std::string& key, int64_t reads, absl::Time at, int64_t version = 1) {
    sv1::ObjectRead r;
    r.set_namespace_("photos");
    r.set_key(key);
    r.set_version(version);
    r.set_reads(reads);
    r.set_bytes_read(reads * 100);
    r.set_size(4096);
    r.set_backend("local");
    r.set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
    *r.mutable_first_read() = Ts(at);
    *r.mutable_last_read() = Ts(at);
    return Event("photos", key, r);
  }
  events::v1::EventEnvelope Deleted(const std::string& key, int64_t version) {
    sv1::ObjectDeleted d;
    d.set_namespace_("photos");
    d.set_key(key);
    d.set_version(version);
    return Event("photos", key, d);
  }
  absl::Time Day(int offset) const { return now_ + absl::Hours(24 * offset); }
  int Today() const { return static_cast<int>(events::UnixDay(now_)); }

  absl::Time now_ = absl::FromCivil(absl::CivilSecond(2026, 11, 20, 12, 0, 0), absl::UTCTimeZone());
  core::ManualClock clock_{now_};
  std::unique_ptr<testing::ScratchDatabase> db_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<HistoryStore> store_;
};

TEST_F(HistoryStoreTest, DailyReadsLandInOneRowPerObjectExactlyOnce) {
  std::vector<events::v1::EventEnvelope> batch = {Created("logs/a", 1, Day(-10)), Read("logs/a", 3, Day(-9)),
                                                  Read("logs/a", 2, Day(-9)), Read("logs/a", 5, Day(-2))};
  auto applied = store_->Apply(batch);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->applied, 4);
  // Redelivered: nothing counts twice.
  applied = store_->Apply(batch);
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(applied->duplicates, 4);
  EXPECT_EQ(applied->applied, 0);
  // A read arriving in a later batch adds to its day.
  ASSERT_TRUE(store_->Apply({Read("logs/a", 1, Day(-2))}).ok());

  auto h = store_->Get("photos", "logs/a");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->first_day, Today() - 10);
  ASSERT_EQ(h->reads.size(), 9u);  // days -10 .. -2
  EXPECT_EQ(h->reads[0], 0);
  EXPECT_EQ(h->reads[1], 5);
  EXPECT_EQ(h->reads[8], 6);
  EXPECT_EQ(h->version, 1);
  EXPECT_EQ(h->backend, "local");
  auto rows = pool_->Exec("SELECT count(*) FROM prediction.histories");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int(0), 1);

  ObjectHistory model = h->ToModel(Today());
  EXPECT_EQ(model.group, "logs");
  // Zeros after the last read, up to the day asked for.
  ASSERT_EQ(model.reads.size(), 10u);
  EXPECT_EQ(model.reads[9], 0);
  EXPECT_EQ(model.reads[8], 6);
  EXPECT_EQ(model.ns, "photos");
  EXPECT_EQ(model.first_day, Today() - 10);
}

TEST_F(HistoryStoreTest, AnOlderCreationOrALateReadExtendsTheHistoryBack) {
  ASSERT_TRUE(store_->Apply({Created("x", 1, Day(0)), Read("x", 4, Day(0))}).ok());
  // An imported object (created before) and a read reported late.
  ASSERT_TRUE(store_->Apply({Read("x", 2, Day(-3))}).ok());
  auto h = store_->Get("photos", "x");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->first_day, Today() - 3);
  EXPECT_EQ(h->reads, (std::vector<int32_t>{2, 0, 0, 4}));
  ASSERT_TRUE(store_->Apply({Created("x", 1, Day(-5))}).ok());
  h = store_->Get("photos", "x");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->first_day, Today() - 5);
  EXPECT_EQ(h->reads, (std::vector<int32_t>{0, 0, 2, 0, 0, 4}));
}

TEST_F(HistoryStoreTest, AnOverwriteStartsANewHistoryAndADeleteEndsIt) {
  ASSERT_TRUE(store_->Apply({Created("k", 1, Day(-20)), Read("k", 7, Day(-5))}).ok());
  // Overwritten: version 2's history starts at its write; reads of
  // version 1 reported late count for nothing.
  ASSERT_TRUE(store_->Apply({Created("k", 2, Day(-1)), Read("k", 9, Day(-4), 1)}).ok());
  auto h = store_->Get("photos", "k");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->version, 2);
  EXPECT_EQ(h->first_day, Today() - 1);
  EXPECT_EQ(h->reads, (std::vector<int32_t>{}));
  ASSERT_TRUE(store_->Apply({Read("k", 1, Day(0), 2)}).ok());
  ASSERT_TRUE(store_->Apply({Deleted("k", 2)}).ok());
  EXPECT_EQ(store_->Get("photos", "k").status().code(), absl::StatusCode::kNotFound);
  // Late reads of the deleted version do not bring it back.
  ASSERT_TRUE(store_->Apply({Read("k", 3, Day(0), 2)}).ok());
  EXPECT_EQ(store_->Get("photos", "k").status().code(), absl::StatusCode::kNotFound);
  auto listed = store_->List("photos", "", "", 10);
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
  // A new object under the key is a new history.
  ASSERT_TRUE(store_->Apply({Created("k", 3, Day(0))}).ok());
  h = store_->Get("photos", "k");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->version, 3);
}

TEST_F(HistoryStoreTest, ModelArtifactsAreNotTracked) {
  ASSERT_TRUE(store_->Apply({Created("prediction/v1.model", 1, Day(0), kModelNamespace)}).ok());
  EXPECT_EQ(store_->Get(kModelNamespace, "prediction/v1.model").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(HistoryStoreTest, ListingPagesAndGroupMeansMatchTheModelsOwn) {
  std::vector<events::v1::EventEnvelope> batch;
  for (int i = 0; i < 12; ++i) {
    std::string key = (i % 2 == 0 ? "hot/" : "cold/") + std::to_string(i);
    batch.push_back(Created(key, 1, Day(-40)));
    for (int d = -30; d < 0; ++d) {
      if (i % 2 == 0) batch.push_back(Read(key, 1 + (i + d + 40) % 3, Day(d)));
    }
  }
  ASSERT_TRUE(store_->Apply(batch).ok());
  std::vector<std::string> keys;
  std::string after;
  for (;;) {
    auto page = store_->List("photos", "", after, 5);
    ASSERT_TRUE(page.ok());
    for (const auto& h : *page) keys.push_back(h.key);
    if (page->size() < 5) break;
    after = page->back().key;
  }
  EXPECT_EQ(keys.size(), 12u);
  auto hot = store_->List("photos", "hot/", "", 100);
  ASSERT_TRUE(hot.ok());
  EXPECT_EQ(hot->size(), 6u);

  std::vector<ObjectHistory> all;
  ASSERT_TRUE(store_->ForEach(5, [&](std::vector<StoredHistory>& page) {
                      for (const auto& h : page) all.push_back(h.ToModel(Today()));
                      return absl::OkStatus();
                    }).ok());
  ASSERT_EQ(all.size(), 12u);
  GroupMeans expected = GroupMeans::At(all, Today());
  auto got = store_->GroupMeansAt(Today());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->group.size(), expected.group.size());
  for (const auto& [k, v] : expected.group) {
    ASSERT_TRUE(got->group.count(k)) << k;
    EXPECT_NEAR(got->group.at(k).first, v.first, 1e-9) << k;
    EXPECT_NEAR(got->group.at(k).second, v.second, 1e-9) << k;
  }
  EXPECT_NEAR(got->ns.at("photos").second, expected.ns.at("photos").second, 1e-9);
}

}  // namespace
}  // namespace cloudflux::prediction
