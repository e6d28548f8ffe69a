// The prediction service end to end: objects written through the
// storage-adapter binary, their read histories (imported as backdated
// object events through the dev broker), a training run whose artifact is
// stored through the storage adapter, forecasts that follow the pattern,
// classification deciding with them, and classification falling back to
// access counts while prediction is down.
#include <gtest/gtest.h>
#include <signal.h>

#include <google/protobuf/util/time_util.h>

#include <random>
#include <set>

#include "absl/strings/match.h"
#include "cloudflux/classification/v1/classification.grpc.pb.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/db/db.h"
#include "cloudflux/diagnostics/v1/diagnostics.grpc.pb.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/prediction/v1/events.pb.h"
#include "cloudflux/prediction/v1/prediction.grpc.pb.h"
#include "cloudflux/server/grpc_status.h"
#include "cloudflux/storage/v1/events.pb.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "service_process.h"

namespace cloudflux {
namespace {

namespace sv1 = cloudflux::storage::v1;
namespace pv1 = cloudflux::prediction::v1;
namespace cv1 = cloudflux::classification::v1;
using google::protobuf::util::TimeUtil;

constexpr int kObjects = 30;  // of each kind
constexpr int kDays = 84;

google::protobuf::Timestamp Ts(absl::Time t) { return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t)); }

class PredictionLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = testing::ScratchDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    storage_ = StartService("storage-adapter", db_->url(),
                            {{"CLOUDFLUX_DATA_DIR", ::testing::TempDir() + "/prediction-" + core::NewId()},
                             {"CLOUDFLUX_READ_EVENT_INTERVAL", "100ms"}});
    ASSERT_TRUE(WaitForHealth(storage_, HealthCheckResponse::SERVING)) << storage_.process->Output();
    StartPrediction();
    classification_ = StartService("classification", db_->url(),
                                   {{"CLOUDFLUX_BACKEND_CLOUDS", "local=aws"},
                                    {"CLOUDFLUX_MIN_OBSERVED_DAYS", "0"},
                                    {"CLOUDFLUX_PREDICTION_ADDRESS", prediction_.target()},
                                    {"CLOUDFLUX_PREDICTION_TIMEOUT", "2s"}});
    ASSERT_TRUE(WaitForHealth(classification_, HealthCheckResponse::SERVING)) << classification_.process->Output();
    storage_stub_ = sv1::StorageService::NewStub(server::MakeChannel(storage_.target()));
    classification_stub_ = cv1::ClassificationService::NewStub(server::MakeChannel(classification_.target()));
    ns_ = "pred-" + core::NewId().substr(24);
  }

  // A restart keeps the address classification was given.
  void StartPrediction() {
    int port = prediction_.port != 0 ? prediction_.port : testing::PickFreePort();
    prediction_ = StartService("prediction", db_->url(),
                               {{"CLOUDFLUX_LISTEN_ADDRESS", absl::StrCat("127.0.0.1:", port)},
                                {"CLOUDFLUX_STORAGE_ADDRESS", storage_.target()},
                                {"CLOUDFLUX_BACKEND_CLOUDS", "local=aws"},
                                {"CLOUDFLUX_MIN_OBJECTS_TO_TRAIN", min_objects_to_train_},
                                {"CLOUDFLUX_MODEL_ROUNDS", model_rounds_},
                                {"CLOUDFLUX_TRAIN_INTERVAL", "0s"},
                                {"CLOUDFLUX_DRIFT_CHECK_INTERVAL", drift_check_interval_}});
    ASSERT_TRUE(WaitForHealth(prediction_, HealthCheckResponse::SERVING)) << prediction_.process->Output();
    server::ChannelOptions o;
    o.max_attempts = 1;
    o.max_reconnect_backoff = absl::Milliseconds(300);
    prediction_stub_ = pv1::PredictionService::NewStub(server::MakeChannel(prediction_.target(), o));
  }

  bool Put(const std::string& key, const std::string& bytes) {
    return PutThroughStorage(*storage_stub_, ns_, key, bytes);
  }

  // Hot objects: read every day, many on weekdays and few at weekends (with
  // noise); cold ones: never. The histories go back kDays days (the objects
  // were imported: their creation time is that old). The events enter the
  // storage adapter's outbox, so its relay publishes them as it publishes
  // its own (numbered in its stream).
  void ImportHistories() {
    db::PoolOptions options;
    options.url = db_->url();
    options.max_connections = 1;
    auto pool = db::Pool::Create(options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> noise(-2, 2);
    absl::Time today = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) / 86400 * 86400);
    std::vector<events::v1::EventEnvelope> envelopes;
    auto add = [&](const std::string& key, const google::protobuf::Message& payload, absl::Time at) {
      core::ManualClock clock(at);
      envelopes.push_back(events::MakeEnvelope("cloudflux/storage-adapter", key, ns_ + "/" + key, payload, clock));
    };
    for (int i = 0; i < 2 * kObjects; ++i) {
      bool hot = i < kObjects;
      std::string key = Key(hot, i % kObjects);
      sv1::ObjectCreated created;
      auto* o = created.mutable_object();
      o->set_namespace_(ns_);
      o->set_key(key);
      o->set_version(1);
      o->set_size(1 << 20);
      o->set_backend("local");
      o->set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
      *o->mutable_created() = Ts(today - absl::Hours(24 * kDays));
      add(key, created, today - absl::Hours(24 * kDays));
      if (!hot) continue;
      for (int d = kDays; d >= 1; --d) {
        absl::Time at = today - absl::Hours(24 * d) + absl::Hours(12);
        int weekday = static_cast<int>((absl::ToUnixSeconds(at) / 86400 + 3) % 7);  // 0 = Monday
        sv1::ObjectRead read;
        read.set_namespace_(ns_);
        read.set_key(key);
        read.set_version(1);
        read.set_reads(std::max(1, (weekday < 5 ? 12 : 3) + noise(rng)));
        read.set_size(1 << 20);
        read.set_backend("local");
        read.set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
        *read.mutable_first_read() = Ts(at);
        *read.mutable_last_read() = Ts(at);
        add(key, read, at);
      }
    }
    events::Outbox outbox("storage");
    ASSERT_TRUE((*pool)
                    ->InTransaction([&](db::Transaction& tx) {
                      return outbox.EnqueueAll(tx, "cloudflux.storage.objects", envelopes);
                    })
                    .ok());
  }

  static std::string Key(bool hot, int i) { return absl::StrCat(hot ? "hot/" : "cold/", i); }

  absl::StatusOr<pv1::ObjectForecast> Forecast(const std::string& key, int horizon = 0) {
    pv1::ForecastRequest r;
    r.set_namespace_(ns_);
    r.set_key(key);
    r.set_horizon_days(horizon);
    return CallUnary(*prediction_stub_, &pv1::PredictionService::Stub::Forecast, r);
  }
  absl::StatusOr<pv1::ForecastBatchResponse> Batch(const pv1::ForecastBatchRequest& r) {
    return CallUnary(*prediction_stub_, &pv1::PredictionService::Stub::ForecastBatch, r);
  }
  absl::StatusOr<pv1::Model> GetModel(const std::string& version) {
    pv1::GetModelRequest r;
    r.set_version(version);
    return CallUnary(*prediction_stub_, &pv1::PredictionService::Stub::GetModel, r);
  }
  absl::StatusOr<pv1::Model> Train() {
    return CallUnary(*prediction_stub_, &pv1::PredictionService::Stub::Train, pv1::TrainRequest());
  }
  // Trains and waits for the run to end.
  pv1::Model TrainAndWait() {
    auto started = Train();
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return {};
    EXPECT_EQ(started->state(), pv1::MODEL_STATE_TRAINING);
    pv1::Model done;
    EXPECT_TRUE(WaitFor(
        [&] {
          auto m = GetModel(started->version());
          if (m.ok() && m->state() != pv1::MODEL_STATE_TRAINING) done = *m;
          return m.ok() && m->state() != pv1::MODEL_STATE_TRAINING;
        },
        absl::Seconds(180), absl::Milliseconds(200)))
        << prediction_.process->Output();
    return done;
  }
  absl::StatusOr<pv1::Model> Promote(const std::string& version) {
    pv1::PromoteModelRequest r;
    r.set_version(version);
    return CallUnary(*prediction_stub_, &pv1::PredictionService::Stub::PromoteModel, r, absl::Seconds(30));
  }
  absl::StatusOr<pv1::Model> Rollback() {
    return CallUnary(*prediction_stub_, &pv1::PredictionService::Stub::RollbackModel, pv1::RollbackModelRequest(),
                     absl::Seconds(30));
  }
  absl::StatusOr<cv1::Classification> Classify(const std::string& key) {
    cv1::ClassifyRequest req;
    req.set_namespace_(ns_);
    req.set_key(key);
    return CallUnary(*classification_stub_, &cv1::ClassificationService::Stub::Classify, req);
  }
  // Classification's view of its optional "prediction" dependency.
  diagnostics::v1::DependencyState PredictionDependency() {
    auto stub = diagnostics::v1::Diagnostics::NewStub(server::MakeChannel(classification_.target()));
    diagnostics::v1::GetServerInfoResponse info;
    stub->GetServerInfo(server::MakeClientContext(absl::Seconds(5)).get(), {}, &info);
    for (const auto& d : info.dependencies()) {
      if (d.name() == "prediction") return d;
    }
    return {};
  }

  std::unique_ptr<testing::ScratchDatabase> db_;
  Service storage_, prediction_, classification_;
  std::unique_ptr<sv1::StorageService::Stub> storage_stub_;
  std::unique_ptr<pv1::PredictionService::Stub> prediction_stub_;
  std::unique_ptr<cv1::ClassificationService::Stub> classification_stub_;
  std::string ns_;
  std::string min_objects_to_train_ = "10";
  std::string model_rounds_ = "40";
  std::string drift_check_interval_ = "0s";

  // Puts the hot and cold objects, imports their histories and waits until
  // prediction has every one.
  void PutAndImport() {
    for (int i = 0; i < kObjects; ++i) {
      ASSERT_TRUE(Put(Key(true, i), std::string(1000, 'h')));
      ASSERT_TRUE(Put(Key(false, i), std::string(1000, 'c')));
    }
    ImportHistories();
    // Every history is in (events of different objects arrive in different
    // partitions, in any order): each object seen for kDays days, each hot
    // one with last week's reads.
    ASSERT_TRUE(WaitFor(
        [&] {
          pv1::ForecastBatchRequest all;
          all.set_namespace_(ns_);
          all.mutable_page()->set_page_size(1000);
          auto got = Batch(all);
          if (!got.ok() || got->forecasts_size() != 2 * kObjects) return false;
          for (const auto& f : got->forecasts()) {
            bool hot = absl::StartsWith(f.key(), "hot/");
            if (f.days_observed() != kDays || (hot && f.reads_last_7_days() < 40)) return false;
          }
          return true;
        },
        absl::Seconds(90), absl::Milliseconds(300)))
        << prediction_.process->Output();
  }
};

TEST_F(PredictionLoop, ForecastsFollowThePatternAndSteerClassification) {
  PutAndImport();
  if (HasFatalFailure()) return;
  // Classification knows every object too (its own consumer group).
  ASSERT_TRUE(WaitFor(
      [&] {
        cv1::AnalyticsRequest r;
        r.set_namespace_(ns_);
        cv1::Distribution d;
        return classification_stub_->GetDistribution(server::MakeClientContext(absl::Seconds(5)).get(), r, &d).ok() &&
               d.objects() == 2 * kObjects;
      },
      absl::Seconds(60), absl::Milliseconds(300)));
  // Before any model: the TSB baseline, no confidence.
  auto baseline = Forecast(Key(true, 0));
  ASSERT_TRUE(baseline.ok());
  EXPECT_EQ(baseline->method(), "tsb");
  EXPECT_EQ(baseline->model_version(), "");
  EXPECT_EQ(baseline->confidence(), 0);
  auto none = GetModel("");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);

  pv1::Model first = TrainAndWait();
  ASSERT_TRUE(first.state() == pv1::MODEL_STATE_CHAMPION || first.state() == pv1::MODEL_STATE_TRAINED)
      << first.DebugString();
  // Its objects and those of other tests on the shared broker's topic.
  EXPECT_GE(first.objects(), 2 * kObjects);
  // 84 days of history: every daily target and the 30-day sum are learned;
  // the 90- and 180-day sums have no complete window yet (TSB serves them).
  EXPECT_EQ(first.learned_targets(), 8);
  EXPECT_GT(first.metrics().scored(), 0);
  EXPECT_GT(first.metrics().rmsse_tsb(), 0);
  EXPECT_FALSE(first.artifact_sha256().empty());
  EXPECT_EQ(first.artifact_namespace(), "cloudflux-models");
  EXPECT_FALSE(first.features().empty());
  if (first.state() == pv1::MODEL_STATE_TRAINED) {  // did not beat a baseline on its own: promote by hand
    auto promoted = Promote(first.version());
    ASSERT_TRUE(promoted.ok()) << promoted.status();
  }
  auto champion = GetModel("");
  ASSERT_TRUE(champion.ok()) << champion.status();
  EXPECT_EQ(champion->version(), first.version());
  EXPECT_EQ(champion->state(), pv1::MODEL_STATE_CHAMPION);

  // Forecasts follow the pattern: about 66 reads a week for the hot ones,
  // none for the cold ones.
  auto hot = Forecast(Key(true, 0));
  ASSERT_TRUE(hot.ok()) << hot.status();
  EXPECT_EQ(hot->method(), "learned");
  EXPECT_EQ(hot->model_version(), first.version());
  ASSERT_EQ(hot->daily_size(), 7);
  double week = 0;
  for (const auto& d : hot->daily()) {
    week += d.mean();
    EXPECT_LE(d.p80().lower(), d.mean() + 1e-9);
    EXPECT_GE(d.p95().upper(), d.p80().upper() - 1e-9);
  }
  EXPECT_GT(week, 40) << hot->DebugString();
  EXPECT_LT(week, 95) << hot->DebugString();
  ASSERT_EQ(hot->sums_size(), 3);
  EXPECT_EQ(hot->sums(0).days(), 30);
  EXPECT_GT(hot->sums(0).mean(), 150);
  EXPECT_GT(hot->confidence(), 0);
  auto cold = Forecast(Key(false, 0), 3);
  ASSERT_TRUE(cold.ok());
  EXPECT_EQ(cold->daily_size(), 3);
  double cold_week = 0;
  for (const auto& d : cold->daily()) cold_week += d.mean();
  EXPECT_LT(cold_week, 1);
  ASSERT_EQ(cold->p_zero_size(), 4);
  EXPECT_GT(cold->p_zero(0).probability(), 0.8);

  // Batches: named objects (unknown ones listed), and a namespace by pages.
  pv1::ForecastBatchRequest named;
  for (const std::string& k : {Key(true, 1), std::string("no-such-key"), Key(false, 1)}) {
    auto* ref = named.add_objects();
    ref->set_namespace_(ns_);
    ref->set_key(k);
  }
  auto batch = Batch(named);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->forecasts_size(), 2);
  EXPECT_EQ(batch->forecasts(0).key(), Key(true, 1));
  EXPECT_EQ(batch->forecasts(1).key(), Key(false, 1));
  ASSERT_EQ(batch->not_found_size(), 1);
  EXPECT_EQ(batch->not_found(0).key(), "no-such-key");
  EXPECT_EQ(batch->model_version(), first.version());
  std::set<std::string> paged;
  pv1::ForecastBatchRequest by_ns;
  by_ns.set_namespace_(ns_);
  by_ns.mutable_page()->set_page_size(25);
  for (int pages = 0;; ++pages) {
    ASSERT_LT(pages, 5);
    auto page = Batch(by_ns);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& f : page->forecasts()) paged.insert(f.key());
    if (page->page().next_page_token().empty()) break;
    by_ns.mutable_page()->set_page_token(page->page().next_page_token());
  }
  EXPECT_EQ(paged.size(), 2u * kObjects);
  by_ns.clear_page();
  by_ns.set_prefix("cold/");
  auto cold_only = Batch(by_ns);
  ASSERT_TRUE(cold_only.ok());
  EXPECT_EQ(cold_only->forecasts_size(), kObjects);

  // RecommendTier: the same rule as classification, with the forecast.
  pv1::RecommendTierRequest rec;
  rec.set_namespace_(ns_);
  rec.set_key(Key(true, 2));
  pv1::RecommendTierResponse recommended;
  ASSERT_TRUE(prediction_stub_->RecommendTier(server::MakeClientContext(absl::Seconds(10)).get(), rec, &recommended)
                  .ok());
  EXPECT_EQ(recommended.tier(), cloudflux::common::v1::STORAGE_TIER_HOT);
  EXPECT_FALSE(recommended.move());
  EXPECT_EQ(recommended.forecast().key(), Key(true, 2));

  // Classification decides with the forecast.
  absl::StatusOr<cv1::Classification> decided;
  ASSERT_TRUE(WaitFor(  // once its own statistics have the history too
      [&] {
        decided = Classify(Key(true, 3));
        return decided.ok() && decided->expected_reads() > 0;
      },
      absl::Seconds(30), absl::Milliseconds(200)))
      << decided.status();
  EXPECT_GT(decided->forecast_reads_7d(), 40);
  EXPECT_GT(decided->forecast_confidence(), 0);
  EXPECT_TRUE(PredictionDependency().healthy());

  // Prediction down: classification still decides, from counts, and says so.
  prediction_.process->Signal(SIGKILL);
  prediction_.process->Wait(absl::Seconds(10));
  auto fallback = Classify(Key(true, 4));
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_EQ(fallback->forecast_reads_7d(), 0);
  EXPECT_EQ(fallback->forecast_confidence(), 0);
  ASSERT_TRUE(WaitFor([&] { return !PredictionDependency().healthy(); }, absl::Seconds(10)));
  auto dep = PredictionDependency();
  EXPECT_FALSE(dep.required());
  EXPECT_TRUE(absl::StrContains(dep.last_error(), "access counts")) << dep.last_error();
  EXPECT_EQ(Health(classification_.target()), HealthCheckResponse::SERVING);

  // Back: a new process loads the champion through the storage adapter and
  // classification uses forecasts again.
  StartPrediction();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto f = Forecast(Key(true, 5));
        return f.ok() && f->model_version() == first.version();
      },
      absl::Seconds(30), absl::Milliseconds(200)))
      << prediction_.process->Output();
  int k = 5;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto c = Classify(Key(true, k++ % kObjects));
        return c.ok() && c->forecast_confidence() > 0;
      },
      absl::Seconds(30), absl::Milliseconds(300)));
  ASSERT_TRUE(WaitFor([&] { return PredictionDependency().healthy(); }, absl::Seconds(10)))
      << PredictionDependency().DebugString();

  // A second model, promoted by hand, then rolled back.
  pv1::Model second = TrainAndWait();
  ASSERT_TRUE(second.state() == pv1::MODEL_STATE_CHAMPION || second.state() == pv1::MODEL_STATE_TRAINED)
      << second.DebugString();
  if (second.state() == pv1::MODEL_STATE_TRAINED) {
    ASSERT_TRUE(Promote(second.version()).ok());
  }
  auto rolled = Rollback();
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  EXPECT_EQ(rolled->version(), first.version());
  EXPECT_EQ(rolled->state(), pv1::MODEL_STATE_CHAMPION);
  auto back = GetModel(second.version());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->state(), pv1::MODEL_STATE_TRAINED);
  EXPECT_EQ(Rollback().status().code(), absl::StatusCode::kFailedPrecondition);  // nothing earlier
  pv1::ListModelsResponse listed;
  ASSERT_TRUE(prediction_stub_->ListModels(server::MakeClientContext(absl::Seconds(5)).get(), {}, &listed).ok());
  ASSERT_EQ(listed.models_size(), 2);
  EXPECT_EQ(listed.models(0).version(), second.version());  // newest first

  // The registry's events.
  std::atomic<int> trained{0}, promoted{0};
  events::ConsumerOptions co;
  co.kafka.brokers = *testing::TestKafkaBootstrap();
  co.group_id = "models-" + core::NewId();
  co.topics = {"cloudflux.prediction.models"};
  co.session_timeout = absl::Seconds(3);
  auto consumer = events::Consumer::Create(co, [&](const events::ConsumedMessage& m) {
    auto e = events::ParseEnvelope(m);
    pv1::ModelTrained t;
    pv1::ModelPromoted p;
    if (e.ok() && e->payload().UnpackTo(&t) && t.model().version() == first.version()) ++trained;
    if (e.ok() && e->payload().UnpackTo(&p) && p.rollback() && p.model().version() == first.version()) ++promoted;
    return absl::OkStatus();
  });
  ASSERT_TRUE(consumer.ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        (void)(*consumer)->Drain(absl::Milliseconds(100));
        return trained > 0 && promoted > 0;
      },
      absl::Seconds(30)));
  (*consumer)->Stop();

  // Overwritten: a new history; deleted: no longer forecast.
  ASSERT_TRUE(Put(Key(true, 6), "new bytes"));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto f = Forecast(Key(true, 6));
        return f.ok() && f->version() == 2 && f->days_observed() == 0;
      },
      absl::Seconds(30), absl::Milliseconds(200)));
  sv1::DeleteObjectRequest del;
  del.set_namespace_(ns_);
  del.set_key(Key(false, 6));
  sv1::DeleteObjectResponse deleted;
  ASSERT_TRUE(storage_stub_->DeleteObject(server::MakeClientContext(absl::Seconds(10)).get(), del, &deleted).ok());
  ASSERT_TRUE(WaitFor([&] { return Forecast(Key(false, 6)).status().code() == absl::StatusCode::kNotFound; },
                      absl::Seconds(30), absl::Milliseconds(200)));

  prediction_.process->Signal(SIGTERM);
  EXPECT_EQ(prediction_.process->Wait(absl::Seconds(30)), 0);
}

// SIGTERM during a training run: the process stops within a boosting
// round, the run is FAILED as cancelled, and the lease is free for the next
// run (this replica's or another's) at once. Then the champion's intervals
// adapt to last week's outcomes in service and every replica serves them.
TEST_F(PredictionLoop, ShutdownCancelsTrainingAndTheChampionsIntervalsAdaptToOutcomes) {
  PutAndImport();
  if (HasFatalFailure()) return;
  prediction_.process->Signal(SIGTERM);
  ASSERT_EQ(prediction_.process->Wait(absl::Seconds(30)), 0);
  model_rounds_ = "1000000";  // a run far longer than the test
  StartPrediction();
  auto started = Train();
  ASSERT_TRUE(started.ok()) << started.status();
  absl::SleepFor(absl::Seconds(2));
  ASSERT_EQ(GetModel(started->version())->state(), pv1::MODEL_STATE_TRAINING);
  const absl::Time stop = absl::Now();
  prediction_.process->Signal(SIGTERM);
  ASSERT_EQ(prediction_.process->Wait(absl::Seconds(60)), 0) << prediction_.process->Output();
  EXPECT_LT(absl::Now() - stop, absl::Seconds(15)) << "the run was not cancelled";
  model_rounds_ = "40";
  StartPrediction();
  auto cancelled = GetModel(started->version());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), pv1::MODEL_STATE_FAILED);
  EXPECT_TRUE(absl::StrContains(cancelled->reason(), "cancelled")) << cancelled->reason();
  // No lease left behind: a new run starts now and ends with a model.
  pv1::Model next = TrainAndWait();
  ASSERT_TRUE(next.state() == pv1::MODEL_STATE_CHAMPION || next.state() == pv1::MODEL_STATE_TRAINED)
      << next.DebugString();
  if (next.state() == pv1::MODEL_STATE_TRAINED) ASSERT_TRUE(Promote(next.version()).ok());
  EXPECT_FALSE(GetModel("")->has_intervals_adapted_through());
  EXPECT_EQ(GetModel("")->live_coverage80(), -1);
  absl::StatusOr<pv1::ObjectForecast> unadapted;
  ASSERT_TRUE(WaitFor(
      [&] {
        unadapted = Forecast(Key(true, 0));
        return unadapted.ok() && unadapted->model_version() == next.version();
      },
      absl::Seconds(30), absl::Milliseconds(200)));

  // The drift check scores last week's forecasts and moves the champion's
  // interval levels with the outcomes, once per origin; the levels are in the
  // registry, so another replica serves the same intervals.
  prediction_.process->Signal(SIGTERM);
  ASSERT_EQ(prediction_.process->Wait(absl::Seconds(30)), 0);
  drift_check_interval_ = "1s";
  StartPrediction();
  pv1::Model adapted;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto m = GetModel("");
        if (m.ok()) adapted = *m;
        return m.ok() && m->has_intervals_adapted_through();
      },
      absl::Seconds(60), absl::Milliseconds(300)))
      << prediction_.process->Output();
  const int64_t today = absl::ToUnixSeconds(absl::Now()) / 86400;
  EXPECT_EQ(TimeUtil::TimestampToSeconds(adapted.intervals_adapted_through()) / 86400, today - 1)
      << "the week from 7 days ago, its last day yesterday";
  EXPECT_GE(adapted.live_coverage80(), 0);
  EXPECT_LE(adapted.live_coverage80(), adapted.live_coverage95());
  EXPECT_LE(adapted.live_coverage95(), 1);
  absl::SleepFor(absl::Seconds(2));  // more drift checks: the same origin is not observed again
  EXPECT_EQ(GetModel("")->intervals_adapted_through(), adapted.intervals_adapted_through());
  EXPECT_EQ(GetModel("")->live_coverage80(), adapted.live_coverage80());
  auto here = Forecast(Key(true, 0));
  ASSERT_TRUE(here.ok()) << here.status();
  // The step moved this object's intervals (the levels of its class).
  bool moved = false;
  for (int d = 0; d < here->daily_size(); ++d) {
    moved = moved || here->daily(d).p80().upper() != unadapted->daily(d).p80().upper() ||
            here->daily(d).p95().upper() != unadapted->daily(d).p95().upper();
  }
  EXPECT_TRUE(moved) << here->DebugString() << unadapted->DebugString();
  prediction_.process->Signal(SIGTERM);
  ASSERT_EQ(prediction_.process->Wait(absl::Seconds(30)), 0);
  drift_check_interval_ = "0s";
  StartPrediction();
  absl::StatusOr<pv1::ObjectForecast> there;
  ASSERT_TRUE(WaitFor(  // once it has loaded the champion
      [&] {
        there = Forecast(Key(true, 0));
        return there.ok() && there->model_version() == here->model_version();
      },
      absl::Seconds(30), absl::Milliseconds(200)));
  ASSERT_EQ(there->daily_size(), here->daily_size());
  for (int d = 0; d < here->daily_size(); ++d) {
    EXPECT_EQ(there->daily(d).p80().upper(), here->daily(d).p80().upper()) << d;
    EXPECT_EQ(there->daily(d).p95().upper(), here->daily(d).p95().upper()) << d;
  }
}

// A champion trained by another build (its features differ from the ones
// this build computes) is not used to forecast: the replica forecasts from
// the baselines and trains a model of its own, once.
TEST_F(PredictionLoop, AChampionOfAnotherBuildIsReplacedByOneOfThisBuild) {
  PutAndImport();
  if (HasFatalFailure()) return;
  pv1::Model first = TrainAndWait();
  ASSERT_TRUE(first.state() == pv1::MODEL_STATE_CHAMPION || first.state() == pv1::MODEL_STATE_TRAINED)
      << first.DebugString();
  if (first.state() == pv1::MODEL_STATE_TRAINED) ASSERT_TRUE(Promote(first.version()).ok());
  prediction_.process->Signal(SIGTERM);
  ASSERT_EQ(prediction_.process->Wait(absl::Seconds(30)), 0);

  // Its artifact, rewritten as another build's: one more feature named.
  std::optional<std::string> artifact =
      GetThroughStorage(*storage_stub_, first.artifact_namespace(), first.artifact_key());
  ASSERT_TRUE(artifact.has_value());
  const std::string& bytes = *artifact;
  const std::string head = "\nfeatures ";
  const size_t at = bytes.find(head);
  ASSERT_NE(at, std::string::npos);
  const size_t nl = bytes.find('\n', at + 1);
  const size_t len = std::stoul(bytes.substr(at + head.size(), nl - at - head.size()));
  std::string other = bytes.substr(0, at) + head + std::to_string(len + 6) + "\n" + bytes.substr(nl + 1, len) +
                      ",lag_0" + bytes.substr(nl + 1 + len);
  ASSERT_TRUE(PutThroughStorage(*storage_stub_, first.artifact_namespace(), "other-build.model", other));
  {
    db::PoolOptions options;
    options.url = db_->url();
    options.max_connections = 1;
    auto pool = db::Pool::Create(options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    ASSERT_TRUE((*pool)
                    ->Exec("UPDATE prediction.models SET artifact_key = 'other-build.model', artifact_sha256 = $2, "
                           "features = array_append(features, 'lag_0') WHERE version = $1",
                           {first.version(), core::Sha256Hex(other)})
                    .ok());
  }

  StartPrediction();
  // Forecasts from the baselines (no model version), and a run of its own.
  auto f = Forecast(Key(true, 0));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->model_version(), "");
  pv1::Model own;
  ASSERT_TRUE(WaitFor(
      [&] {
        pv1::ListModelsResponse listed;
        if (!prediction_stub_->ListModels(server::MakeClientContext(absl::Seconds(5)).get(), {}, &listed).ok()) {
          return false;
        }
        int upgrades = 0;
        for (const auto& m : listed.models()) {
          if (m.trigger() != "upgrade") continue;
          ++upgrades;
          own = m;
        }
        EXPECT_LE(upgrades, 1) << "one run, not one per refresh";
        return upgrades == 1 && own.state() != pv1::MODEL_STATE_TRAINING;
      },
      absl::Seconds(180), absl::Milliseconds(300)))
      << prediction_.process->Output();
  ASSERT_TRUE(own.state() == pv1::MODEL_STATE_CHAMPION || own.state() == pv1::MODEL_STATE_TRAINED)
      << own.DebugString();
  if (own.state() == pv1::MODEL_STATE_TRAINED) ASSERT_TRUE(Promote(own.version()).ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        auto g = Forecast(Key(true, 0));
        return g.ok() && g->model_version() == own.version();
      },
      absl::Seconds(30), absl::Milliseconds(200)));
  // Neither promoted nor rolled back to again, and nothing changes.
  EXPECT_EQ(Promote(first.version()).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Rollback().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(GetModel("")->version(), own.version());
  EXPECT_EQ(GetModel(first.version())->state(), pv1::MODEL_STATE_RETIRED);
  absl::SleepFor(absl::Seconds(11));  // a refresh or more later: still one upgrade run
  pv1::ListModelsResponse listed;
  ASSERT_TRUE(prediction_stub_->ListModels(server::MakeClientContext(absl::Seconds(5)).get(), {}, &listed).ok());
  int upgrades = 0;
  for (const auto& m : listed.models()) upgrades += m.trigger() == "upgrade";
  EXPECT_EQ(upgrades, 1);
}

TEST_F(PredictionLoop, BadRequestsAreRefusedAndChangeNothing) {
  ASSERT_TRUE(Put("only", "x"));
  ASSERT_TRUE(WaitFor([&] { return Forecast("only").ok(); }, absl::Seconds(30), absl::Milliseconds(200)));
  EXPECT_EQ(Forecast("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Forecast("only", 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Forecast("only", -1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Forecast(std::string("a\0b", 3)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Batch({}).status().code(), absl::StatusCode::kInvalidArgument);  // empty batch
  pv1::ForecastBatchRequest big;
  for (int i = 0; i < 1001; ++i) {
    auto* r = big.add_objects();
    r->set_namespace_(ns_);
    r->set_key(absl::StrCat("k", i));
  }
  EXPECT_EQ(Batch(big).status().code(), absl::StatusCode::kInvalidArgument);
  pv1::ForecastBatchRequest both;
  both.set_namespace_(ns_);
  *both.add_objects() = big.objects(0);
  EXPECT_EQ(Batch(both).status().code(), absl::StatusCode::kInvalidArgument);
  pv1::ForecastBatchRequest bad_token;
  bad_token.set_namespace_(ns_);
  bad_token.mutable_page()->set_page_token("%%%");
  EXPECT_EQ(Batch(bad_token).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Promote("v999").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Promote("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Rollback().status().code(), absl::StatusCode::kFailedPrecondition);
  // Too few objects to learn from: the run fails and says why; nothing is
  // promoted.
  prediction_.process->Signal(SIGTERM);
  ASSERT_EQ(prediction_.process->Wait(absl::Seconds(30)), 0);
  min_objects_to_train_ = "100000000";
  StartPrediction();
  auto started = Train();
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto m = GetModel(started->version());
        return m.ok() && m->state() == pv1::MODEL_STATE_FAILED && absl::StrContains(m->reason(), "at least");
      },
      absl::Seconds(30), absl::Milliseconds(100)));
  EXPECT_EQ(GetModel("").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Promote(started->version()).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace cloudflux
