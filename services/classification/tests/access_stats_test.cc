// AccessStatsStore against a real PostgreSQL (scratch database with the
// classification schema): every object event, batches folded per object,
// duplicates not double counted, windows by day.
#include <gtest/gtest.h>

#include <google/protobuf/util/time_util.h>

#include <functional>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "access_stats.h"
#include "classifier.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/core/uuid.h"
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

// Messages from the outbox relay carry their stream position: a redelivered
// batch and a resend (same stream and number, in a later batch) count for
// nothing, and no event id is stored for them; a new stream (a relay that
// took over) starts its own positions.
TEST_F(AccessStatsTest, RelayedMessagesCountOnceByTheirStreamPosition) {
  absl::Time t0 = clock_.Now();
  const std::string stream = core::NewId();
  int64_t next_seq = 0;
  auto relayed = [&](const events::v1::EventEnvelope& e, const std::string& in_stream, int64_t seq) {
    events::ConsumedMessage m;
    m.topic = "cloudflux.storage.objects";
    m.partition = 2;
    EXPECT_TRUE(e.SerializeToString(&m.value));
    m.headers = {{events::kStreamHeader, in_stream}, {events::kStreamSeqHeader, std::to_string(seq)}};
    return m;
  };
  std::vector<events::ConsumedMessage> batch = {relayed(Created("s.jpg", 100), stream, ++next_seq),
                                                relayed(Read("s.jpg", 2, 200, t0), stream, ++next_seq),
                                                relayed(Read("s.jpg", 3, 300, t0), stream, ++next_seq)};
  auto applied = store_->ApplyMessages(batch);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->applied, 3);
  applied = store_->ApplyMessages(batch);  // redelivered
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->applied, 0);
  EXPECT_EQ(applied->duplicates, 3);
  // A later batch: the last read resent by a relay, then a new read.
  std::vector<events::ConsumedMessage> later = {batch[2], relayed(Read("s.jpg", 5, 500, t0), stream, ++next_seq)};
  applied = store_->ApplyMessages(later);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->applied, 1);
  EXPECT_EQ(applied->duplicates, 1);
  // Another relay took over: its stream's numbers are its own.
  applied = store_->ApplyMessages({relayed(Read("s.jpg", 7, 700, t0), core::NewId(), 1)});
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->applied, 1);
  auto s = store_->Get("photos", "s.jpg", t0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reads_total, 2 + 3 + 5 + 7);
  auto ids = pool_->Exec("SELECT count(*) FROM classification.processed_events");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ((*ids)[0].Int(0), 0) << "no row per event";
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

// Keys are compared byte for byte whatever the database's locale: the key
// columns of the statistics, the policies and the processed-event ids use
// the "C" collation (memcmp in every index comparison).
TEST_F(AccessStatsTest, KeyColumnsCompareBytesNotLocaleText) {
  auto cols = pool_->Exec(
      "SELECT c.relname || '.' || a.attname, coalesce(co.collname, '') FROM pg_attribute a "
      "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
      "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
      "WHERE n.nspname = 'classification' AND c.relkind = 'r' AND a.attnum > 0 AND "
      "(c.relname || '.' || a.attname) = ANY('{object_stats.namespace,object_stats.key,"
      "object_reads_daily.namespace,object_reads_daily.key,policies.namespace,policies.prefix,"
      "processed_events.consumer,processed_events.event_id}'::text[])");
  ASSERT_TRUE(cols.ok()) << cols.status();
  ASSERT_EQ(cols->size(), 8u);
  for (const auto& row : *cols) EXPECT_EQ(row.Text(1), "C") << row.Text(0);
  // Byte order: upper case before lower case, 'Z' before 'a'.
  ASSERT_TRUE(pool_->Exec("INSERT INTO classification.object_stats (namespace, key) VALUES "
                          "('n', 'a'), ('n', 'Z'), ('n', 'B')").ok());
  auto order = pool_->Exec("SELECT string_agg(key, '' ORDER BY key) FROM classification.object_stats "
                           "WHERE namespace = 'n'");
  ASSERT_TRUE(order.ok());
  EXPECT_EQ((*order)[0].Text(0), "BZa");
}

// The statistics do not depend on how the stream was cut into batches: the
// same realistic event sequence (versions that grow, overwrites, tier
// changes, relocations, deletions followed by late reads, recreations)
// applied in one batch, one event at a time and in random batches ends in
// the same rows.
TEST_F(AccessStatsTest, BatchBoundariesDoNotChangeTheStatistics) {
  std::mt19937 rng(7);
  const absl::Time t0 = clock_.Now();
  struct Obj {
    int64_t version = 0;  // 0: not created yet
    bool live = false;
    int tier = cloudflux::common::v1::STORAGE_TIER_HOT;
  };
  std::vector<Obj> objects(40);
  // Events as (object index, payload builder for a namespace).
  std::vector<std::pair<int, std::function<events::v1::EventEnvelope(const std::string&)>>> stream;
  for (int step = 0; step < 1500; ++step) {
    int i = static_cast<int>(rng() % objects.size());
    Obj& o = objects[i];
    const std::string key = "k" + std::to_string(i);
    const int kind = static_cast<int>(rng() % 100);
    const absl::Time at = t0 - absl::Hours(static_cast<int>(rng() % (24 * 40)));
    const int64_t version = o.version;
    auto envelope = [key](const std::string& ns, const google::protobuf::Message& m) {
      return events::MakeEnvelope("cloudflux/storage-adapter", "objects/" + ns + "/" + key, ns + "/" + key, m);
    };
    const bool create = !o.live && (kind < 70 || o.version == 0);
    if (create || (o.live && kind < 8)) {  // a creation, or an overwrite of a live object
      const bool overwrite = o.live;
      const int64_t v = ++o.version;
      const int64_t size = 1000 + static_cast<int64_t>(rng() % 100000);
      o.live = true;
      o.tier = cloudflux::common::v1::STORAGE_TIER_HOT;
      stream.emplace_back(i, [=](const std::string& ns) {
        sv1::ObjectCreated c;
        auto* x = c.mutable_object();
        x->set_namespace_(ns);
        x->set_key(key);
        x->set_size(size);
        x->set_version(v);
        x->set_backend("s3");
        x->set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
        *x->mutable_created() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(at));
        c.set_overwrite(overwrite);
        return envelope(ns, c);
      });
    } else if (o.live && kind < 14) {  // tier change
      const int to = 1 + static_cast<int>(rng() % 4);
      o.tier = to;
      stream.emplace_back(i, [=](const std::string& ns) {
        sv1::ObjectTierChanged t;
        t.set_namespace_(ns);
        t.set_key(key);
        t.set_version(version);
        t.set_backend("s3");
        t.set_to_tier(static_cast<cloudflux::common::v1::StorageTier>(to));
        t.set_size(5);
        return envelope(ns, t);
      });
    } else if (o.live && kind < 17) {  // relocation
      stream.emplace_back(i, [=](const std::string& ns) {
        sv1::ObjectRelocated r;
        r.set_namespace_(ns);
        r.set_key(key);
        r.set_version(version);
        r.set_to_backend("gcs");
        r.set_to_tier(cloudflux::common::v1::STORAGE_TIER_COLD);
        r.set_size(7);
        return envelope(ns, r);
      });
    } else if (o.live && kind < 22) {  // deletion
      o.live = false;
      stream.emplace_back(i, [=](const std::string& ns) {
        sv1::ObjectDeleted d;
        d.set_namespace_(ns);
        d.set_key(key);
        d.set_version(version);
        return envelope(ns, d);
      });
    } else if (version > 0) {  // reads of the current (or, after a deletion, the deleted) version
      const int64_t reads = 1 + static_cast<int64_t>(rng() % 5);
      stream.emplace_back(i, [=](const std::string& ns) {
        sv1::ObjectRead r;
        r.set_namespace_(ns);
        r.set_key(key);
        r.set_version(version);
        r.set_reads(reads);
        r.set_bytes_read(reads * 100);
        r.set_size(1000);
        r.set_backend("s3");
        r.set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
        *r.mutable_first_read() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(at));
        *r.mutable_last_read() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(at));
        return envelope(ns, r);
      });
    }
  }
  // Namespace "whole": one batch; "single": one event a batch; "cut": random batches.
  auto events_of = [&](const std::string& ns) {
    std::vector<events::v1::EventEnvelope> out;
    for (auto& [i, make] : stream) out.push_back(make(ns));
    return out;
  };
  ASSERT_TRUE(store_->Apply(events_of("whole")).ok());
  for (const auto& e : events_of("single")) ASSERT_TRUE(store_->Apply({e}).ok());
  std::vector<events::v1::EventEnvelope> cut = events_of("cut");
  for (size_t at = 0; at < cut.size();) {
    size_t n = std::min(cut.size() - at, size_t{1} + rng() % 60);
    ASSERT_TRUE(store_->Apply({cut.begin() + at, cut.begin() + at + n}).ok());
    at += n;
  }
  auto describe = [&](const std::string& ns, const std::string& key) -> std::string {
    auto s = store_->Get(ns, key, t0);
    if (!s.ok()) return std::string(absl::StatusCodeToString(s.status().code()));
    return absl::StrCat("v", s->version, " size ", s->size, " ", s->backend, " tier ", s->tier, " reads ",
                        s->reads_total, "/", s->bytes_read, " windows ", s->reads_1d, ",", s->reads_7d, ",",
                        s->reads_30d, ",", s->reads_90d, " created ",
                        s->created ? absl::FormatTime(*s->created) : "-", " last read ",
                        s->last_read ? absl::FormatTime(*s->last_read) : "-");
  };
  int live = 0;
  for (size_t i = 0; i < objects.size(); ++i) {
    const std::string key = "k" + std::to_string(i);
    const std::string whole = describe("whole", key);
    EXPECT_EQ(describe("single", key), whole) << key;
    EXPECT_EQ(describe("cut", key), whole) << key;
    live += objects[i].live ? 1 : 0;
    EXPECT_EQ(whole != "NOT_FOUND", objects[i].live) << key << ": " << whole;
  }
  EXPECT_GT(live, 5);
}

// A forecast source (the prediction service's seam) that knows some objects
// and may be down.
class FixedForecasts final : public ForecastSource {
 public:
  std::map<std::string, pricing::Forecast> by_key;
  bool down = false;
  int calls = 0;
  absl::StatusOr<std::vector<std::optional<pricing::Forecast>>> Get(
      const std::vector<const ObjectStats*>& objects) override {
    ++calls;
    if (down) return absl::UnavailableError("prediction service unreachable");
    std::vector<std::optional<pricing::Forecast>> out;
    for (const ObjectStats* o : objects) {
      auto it = by_key.find(o->key);
      out.push_back(it == by_key.end() ? std::nullopt : std::optional<pricing::Forecast>(it->second));
    }
    return out;
  }
};

TEST_F(AccessStatsTest, ForecastsSteerDecisionsWhenAvailable) {
  ASSERT_TRUE(store_->Apply({Created("quiet", 64 << 20), Created("other", 64 << 20)}).ok());
  clock_.Advance(absl::Hours(24 * 60));  // 60 days without a read
  auto catalog = pricing::PriceCatalog::Parse(DefaultPriceCatalogJson(), "(built in)");
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  PolicyStore policies(*pool_, *catalog, clock_);
  FixedForecasts forecasts;
  ClassifierOptions options;
  options.backend_clouds = {{"s3", cloudflux::common::v1::CLOUD_PROVIDER_AWS}};
  options.forecasts = &forecasts;
  Classifier classifier(*pool_, *store_, policies, *catalog, options, clock_);
  v1::ClassifyRequest request;
  request.set_namespace_("photos");
  request.set_key("quiet");

  // No forecast for it: its counts say cold.
  auto counted = classifier.Classify(request);
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_TRUE(counted->move()) << counted->reason();
  EXPECT_EQ(counted->forecast_confidence(), 0);
  // A confident forecast of many reads keeps it where it is.
  forecasts.by_key["quiet"] = {.reads_next_7d = 500, .confidence = 1};
  auto forecast = classifier.Classify(request);
  ASSERT_TRUE(forecast.ok());
  EXPECT_FALSE(forecast->move()) << forecast->reason();
  EXPECT_EQ(forecast->storage_class(), "STANDARD");
  EXPECT_EQ(forecast->forecast_reads_7d(), 500);
  EXPECT_EQ(forecast->forecast_confidence(), 1);
  EXPECT_GT(forecast->expected_reads(), counted->expected_reads() + 1000);

  // A batch asks once for all its objects.
  forecasts.calls = 0;
  v1::ClassifyBatchRequest batch;
  batch.set_namespace_("photos");
  auto decided = classifier.ClassifyBatch(batch);
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_EQ(forecasts.calls, 1);
  ASSERT_EQ(decided->classifications_size(), 2);
  EXPECT_EQ(decided->classifications(0).key(), "other");
  EXPECT_TRUE(decided->classifications(0).move());
  EXPECT_EQ(decided->classifications(1).forecast_reads_7d(), 500);
  EXPECT_FALSE(decided->classifications(1).move());

  // The source down: decisions from the counts, not an error.
  forecasts.down = true;
  auto fallback = classifier.Classify(request);
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_TRUE(fallback->move());
  EXPECT_EQ(fallback->forecast_confidence(), 0);
}

TEST(PolicyCeiling, OverTheCeilingDecisionsDropTheHysteresisMargin) {
  pricing::TierPolicy base;
  base.hysteresis = 0.1;
  v1::Policy p;
  p.set_monthly_cost_ceiling(10);
  p.set_measured_monthly_cost(9);
  EXPECT_FALSE(PolicyStore::OverCeiling(p));
  EXPECT_EQ(PolicyStore::Apply(p, base).hysteresis, 0.1);
  p.set_measured_monthly_cost(11);
  EXPECT_TRUE(PolicyStore::OverCeiling(p));
  EXPECT_EQ(PolicyStore::Apply(p, base).hysteresis, 0);
  p.set_monthly_cost_ceiling(0);  // no ceiling
  EXPECT_FALSE(PolicyStore::OverCeiling(p));
}

}  // namespace
}  // namespace cloudflux::classification
