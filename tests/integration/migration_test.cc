// The migration service end to end: objects written through the
// storage-adapter binary (local backend), estimated, moved to a colder tier
// by migration jobs through the storage adapter, with the per-object
// report, events, bandwidth pacing, pause/resume, a worker killed mid-job,
// and bad requests.
#include <iostream>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <signal.h>

#include <google/protobuf/util/time_util.h>

#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "cloudflux/testing/http_relay.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/db/db.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/migration/v1/events.pb.h"
#include "cloudflux/classification/v1/classification.grpc.pb.h"
#include "cloudflux/migration/v1/migration.grpc.pb.h"
#include "cloudflux/server/grpc_status.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "migration_fixture.h"

namespace cloudflux {
namespace {

TEST_F(MigrationTest, AJobEstimatesMovesVerifiesAndReportsEveryObject) {
  int64_t bytes = 0;
  for (int i = 0; i < 30; ++i) {
    std::string data(i % 3 == 0 ? 200000 : 1000, static_cast<char>('a' + i % 26));
    bytes += static_cast<int64_t>(data.size());
    ASSERT_TRUE(Put(absl::StrCat("m/", i), data));
  }
  ASSERT_TRUE(Put("other/x", "not selected"));

  mv1::EstimateMigrationRequest est;
  *est.mutable_selection() = Prefix("m/");
  est.mutable_target()->set_tier(COLD);
  est.set_bandwidth_bytes_per_second(1000000);
  auto estimate = Estimate(est);
  ASSERT_TRUE(estimate.ok()) << estimate.status();
  EXPECT_EQ(estimate->objects(), 30);
  EXPECT_EQ(estimate->bytes(), bytes);
  EXPECT_EQ(estimate->egress_cost(), 0);  // same cloud
  EXPECT_GT(estimate->request_cost(), 0);
  EXPECT_GT(estimate->monthly_cost_before(), estimate->monthly_cost_after());
  EXPECT_NEAR(estimate->seconds(), bytes / 1e6, 1e-9);

  // Filters narrow the selection.
  mv1::EstimateMigrationRequest big = est;
  big.mutable_selection()->set_min_size(100000);
  auto big_only = Estimate(big);
  ASSERT_TRUE(big_only.ok());
  EXPECT_EQ(big_only->objects(), 10);

  mv1::CreateMigrationRequest create;
  *create.mutable_selection() = Prefix("m/");
  create.mutable_target()->set_tier(COLD);
  create.set_parallelism(4);
  create.set_description("cold m/");
  auto job = Create(create);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->origin(), "api");
  EXPECT_EQ(job->progress().objects_total(), 30);
  mv1::Migration done = WaitEnded(job->id());
  EXPECT_EQ(done.state(), mv1::MIGRATION_STATE_COMPLETED) << done.DebugString();
  EXPECT_EQ(done.progress().objects_done(), 30);
  EXPECT_EQ(done.progress().bytes_done(), bytes);
  EXPECT_EQ(done.progress().objects_left(), 0);

  auto report = Report(job->id());
  ASSERT_EQ(report.size(), 30u);
  for (const auto& o : report) {
    EXPECT_EQ(o.outcome(), mv1::OBJECT_OUTCOME_MOVED) << o.DebugString();
    EXPECT_EQ(o.from_tier(), HOT);
    EXPECT_EQ(o.to_tier(), COLD);
    EXPECT_EQ(o.sha256().size(), 64u);
    auto head = Head(o.key());
    ASSERT_TRUE(head.ok());
    EXPECT_EQ(head->tier(), COLD);
    EXPECT_EQ(head->sha256(), o.sha256());
    EXPECT_EQ(head->version(), o.version());  // relocated, not rewritten
  }
  auto untouched = Head("other/x");
  ASSERT_TRUE(untouched.ok());
  EXPECT_EQ(untouched->tier(), HOT);

  // Events: started, per object, finished.
  int started = 0, migrated = 0, finished = 0;
  events::ConsumerOptions co;
  co.kafka.brokers = *testing::TestKafkaBootstrap();
  co.group_id = "jobs-" + core::NewId();
  co.topics = {"cloudflux.migration.jobs"};
  co.session_timeout = absl::Seconds(3);
  auto consumer = events::Consumer::Create(co, [&](const events::ConsumedMessage& m) {
    auto e = events::ParseEnvelope(m);
    mv1::MigrationStarted s;
    mv1::ObjectMigrated o;
    mv1::MigrationFinished f;
    if (!e.ok()) return absl::OkStatus();
    if (e->payload().UnpackTo(&s) && s.migration().id() == job->id()) ++started;
    if (e->payload().UnpackTo(&o) && o.migration_id() == job->id()) ++migrated;
    if (e->payload().UnpackTo(&f) && f.migration().id() == job->id() &&
        f.migration().state() == mv1::MIGRATION_STATE_COMPLETED) {
      ++finished;
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(consumer.ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        (void)(*consumer)->Drain(absl::Milliseconds(100));
        return started == 1 && migrated == 30 && finished == 1;
      },
      absl::Seconds(30)))
      << started << " " << migrated << " " << finished;
  (*consumer)->Stop();

  // Again: everything is there already.
  auto again = Create(create);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(again.status().message(), "already")) << again.status();

  // A dry run plans and reports, and moves nothing.
  mv1::CreateMigrationRequest dry = create;
  dry.mutable_target()->set_tier(WARM);
  dry.set_dry_run(true);
  auto planned = Create(dry);
  ASSERT_TRUE(planned.ok()) << planned.status();
  EXPECT_EQ(planned->state(), mv1::MIGRATION_STATE_COMPLETED);
  EXPECT_EQ(planned->estimate().objects(), 30);
  for (const auto& o : Report(planned->id())) {
    EXPECT_EQ(o.outcome(), mv1::OBJECT_OUTCOME_SKIPPED);
    EXPECT_EQ(o.reason(), "dry run");
  }
  EXPECT_EQ(Head("m/0")->tier(), COLD);

  // Listing: newest first, by state.
  mv1::ListMigrationsRequest list;
  list.set_state(mv1::MIGRATION_STATE_COMPLETED);
  mv1::ListMigrationsResponse listed;
  ASSERT_TRUE(stub_->ListMigrations(server::MakeClientContext(absl::Seconds(5)).get(), list, &listed).ok());
  ASSERT_EQ(listed.migrations_size(), 2);
  EXPECT_EQ(listed.migrations(0).id(), planned->id());
  // An ended job cannot be paused, resumed or cancelled.
  EXPECT_EQ(Call(&mv1::MigrationService::Stub::CancelMigration, job->id()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Watchers of a running job that go away: between updates (cancelled while
// the server waits for the next one), right after starting, and mid-write.
// Each ends at once with CANCELLED; the job and the server go on, and a
// later watcher sees the job to its end.
TEST_F(MigrationTest, WatchersThatGoAwayEndTheirStreamsAndLeaveTheJobRunning) {
  auto job = CappedJob("w/", 8, 2, 200000);  // 800 KB at 200 KB/s: about 4 s
  ASSERT_TRUE(job.ok()) << job.status();
  mv1::WatchMigrationRequest r;
  r.set_id(job->id());
  r.mutable_interval()->set_nanos(100000000);
  for (int round = 0; round < 20; ++round) {
    auto ctx = server::MakeClientContext(absl::Seconds(30));
    auto reader = stub_->WatchMigration(ctx.get(), r);
    mv1::MigrationUpdate u;
    const int reads = round % 3;  // 0: gone before the first update
    for (int i = 0; i < reads; ++i) ASSERT_TRUE(reader->Read(&u)) << "round " << round;
    if (round % 2 == 1) absl::SleepFor(absl::Milliseconds(30));  // cancelled while the server waits
    const absl::Time cancelled = absl::Now();
    ctx->TryCancel();
    while (reader->Read(&u)) {
    }
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED) << "round " << round << ": " << s.error_message();
    EXPECT_LT(absl::Now() - cancelled, absl::Seconds(2)) << "round " << round;
  }
  auto now = Get(job->id());
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->state(), mv1::MIGRATION_STATE_RUNNING) << "the watchers' going away touches nothing";
  Watched rest = Watch(job->id(), absl::Milliseconds(200));
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  ASSERT_FALSE(rest.updates.empty());
  EXPECT_EQ(rest.updates.back().migration().state(), mv1::MIGRATION_STATE_COMPLETED);
  EXPECT_EQ(rest.updates.back().migration().progress().objects_done(), 8);
  EXPECT_TRUE(WaitForHealth(migration_, HealthCheckResponse::SERVING));
}

TEST_F(MigrationTest, TheBandwidthCapPacesAJobAndPauseHoldsIt) {
  absl::Time start = absl::Now();  // the puts (1 MB) included
  auto job = CappedJob("b/", 10, 4, 250000);  // 1 MB at 250 KB/s: about 4 s
  ASSERT_TRUE(job.ok()) << job.status();
  // Watched to its end: updates every 300 ms, progress that only grows, a
  // recent rate near the cap, the final state in the last update.
  Watched watched = Watch(job->id(), absl::Milliseconds(300));
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  ASSERT_TRUE(watched.status.ok()) << watched.status.error_message();
  ASSERT_GE(watched.updates.size(), 6u);
  mv1::Migration done = watched.updates.back().migration();
  EXPECT_EQ(done.state(), mv1::MIGRATION_STATE_COMPLETED);
  EXPECT_EQ(done.progress().objects_done(), 10);
  int64_t previous = 0;
  bool midway = false;
  double fastest = 0;
  for (size_t i = 0; i + 1 < watched.updates.size(); ++i) {
    const auto& u = watched.updates[i];
    EXPECT_EQ(u.migration().state(), mv1::MIGRATION_STATE_RUNNING);
    EXPECT_GE(u.migration().progress().objects_done(), previous);
    previous = u.migration().progress().objects_done();
    midway |= previous > 0 && previous < 10;
    fastest = std::max(fastest, u.recent_bytes_per_second());
    EXPECT_TRUE(u.failures().empty());
  }
  EXPECT_TRUE(midway);
  EXPECT_GT(fastest, 0);
  EXPECT_LT(fastest, 250000 * 3.0) << "over any 300 ms, a few objects of 100 KB at most";
  // Bad watches.
  EXPECT_EQ(Watch(core::NewId(), absl::Seconds(1)).status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Watch("not-a-uuid", absl::Seconds(1)).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Watch(job->id(), absl::Milliseconds(10)).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Watch(job->id(), absl::Minutes(5)).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // An ended job: one update with its final state, then the end.
  Watched ended = Watch(job->id(), absl::Seconds(1));
  ASSERT_TRUE(ended.status.ok());
  ASSERT_EQ(ended.updates.size(), 1u);
  EXPECT_EQ(ended.updates[0].migration().state(), mv1::MIGRATION_STATE_COMPLETED);
  // The last of 10 starts waits for the 9 before it: 9 x 0.4 s.
  EXPECT_GE(seconds, 3.4);
  EXPECT_LT(seconds, 20);

  // Paused: nothing more starts until resumed.
  auto paced = CappedJob("p/", 10, 4, 100000);  // 1 object a second
  ASSERT_TRUE(paced.ok()) << paced.status();
  auto paused = Call(&mv1::MigrationService::Stub::PauseMigration, paced->id());
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state(), mv1::MIGRATION_STATE_PAUSED);
  absl::SleepFor(absl::Seconds(1.5));  // tasks claimed before the pause finish
  int64_t held = Get(paced->id())->progress().objects_done();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(Get(paced->id())->progress().objects_done(), held);
  EXPECT_LT(held, 10);
  // Resumed, and the cap raised while it runs.
  mv1::SetBandwidthRequest faster;
  faster.set_id(paced->id());
  faster.set_bandwidth_bytes_per_second(10000000);
  mv1::Migration raised;
  ASSERT_TRUE(stub_->SetBandwidth(server::MakeClientContext(absl::Seconds(5)).get(), faster, &raised).ok());
  EXPECT_EQ(raised.request().bandwidth_bytes_per_second(), 10000000);
  ASSERT_TRUE(Call(&mv1::MigrationService::Stub::ResumeMigration, paced->id()).ok());
  EXPECT_EQ(WaitEnded(paced->id()).state(), mv1::MIGRATION_STATE_COMPLETED);
}

TEST_F(MigrationTest, AKilledWorkersObjectsAreTakenOverAndEachMovesOnce) {
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(Put(absl::StrCat("k/", i), std::string(50000, 'k')));
  mv1::CreateMigrationRequest create;
  *create.mutable_selection() = Prefix("k/");
  create.mutable_target()->set_tier(COLD);
  create.set_bandwidth_bytes_per_second(200000);  // about 4 objects a second
  auto job = Create(create);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(WaitFor([&] { return Get(job->id())->progress().objects_done() >= 2; }, absl::Seconds(30)));
  migration_.process->Signal(SIGKILL);
  migration_.process->Wait(absl::Seconds(10));
  StartMigration();
  mv1::Migration done = WaitEnded(job->id());
  EXPECT_EQ(done.state(), mv1::MIGRATION_STATE_COMPLETED) << done.DebugString();
  auto report = Report(job->id());
  ASSERT_EQ(report.size(), 12u);
  for (const auto& o : report) {
    EXPECT_EQ(o.outcome(), mv1::OBJECT_OUTCOME_MOVED) << o.DebugString();
    auto head = Head(o.key());
    ASSERT_TRUE(head.ok());
    EXPECT_EQ(head->tier(), COLD);
    EXPECT_EQ(head->version(), 1);
    EXPECT_EQ(head->sha256(), o.sha256());
  }
}

// The cap holds the bytes of streamed copies, not only their starts: one
// large object alone, and four copies at once, each sharing the cap.
TEST_F(MigrationTest, TheCapHoldsTheBytesOfStreamedCopies) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  storage_.process->Signal(SIGTERM);
  storage_.process->Wait(absl::Seconds(20));
  StartStorage(/*with_s3=*/true);
  ASSERT_TRUE(Put("one/big", std::string(4 << 20, 'o')));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Put(absl::StrCat("four/", i), std::string(2 << 20, 'f')));
  for (const auto& [prefix, parallelism] : {std::pair{"one/", 1}, std::pair{"four/", 4}}) {
    SCOPED_TRACE(prefix);
    mv1::CreateMigrationRequest create;
    *create.mutable_selection() = Prefix(prefix);
    create.mutable_target()->set_backend("s3");
    create.set_parallelism(parallelism);
    create.set_bandwidth_bytes_per_second(2000000);  // 4 MiB: 2.1 s
    absl::Time start = absl::Now();
    auto job = Create(create);
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(WaitEnded(job->id()).state(), mv1::MIGRATION_STATE_COMPLETED);
    double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    const double expected = (4 << 20) / 2000000.0;
    EXPECT_GE(seconds, 0.95 * expected);
    EXPECT_LT(seconds, 2 * expected + 2);
  }
}

// A target that throttles (S3's 503 SlowDown above 2 uploads at once, from
// a relay with a 4 MiB/s uplink in front of s3rver): the job halves its
// concurrency, counts every throttled answer, does not hold them against
// the objects, and moves every object.
TEST_F(MigrationTest, AThrottlingTargetLowersTheJobsConcurrencyAndEveryObjectMoves) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  std::unique_ptr<testing::HttpRelay> relay = RestartStorageBehindRelay();
  ASSERT_NE(relay, nullptr);
  std::map<std::string, std::string> data;
  for (int i = 0; i < 24; ++i) data[absl::StrCat("t/", i)] = std::string((2 << 20) + i, static_cast<char>('a' + i));
  for (const auto& [key, bytes] : data) ASSERT_TRUE(Put(key, bytes));
  relay->ThrottleAbove("PUT", 2);
  relay->LimitUploadRate(4 << 20);  // a 2 MiB upload lasts 0.5 s: the copies' uploads overlap
  mv1::CreateMigrationRequest create;
  *create.mutable_selection() = Prefix("t/");
  create.mutable_target()->set_backend("s3");
  create.set_parallelism(8);
  auto job = Create(create);
  ASSERT_TRUE(job.ok()) << job.status();
  int lowest = 8;
  std::vector<std::pair<int, int64_t>> seen;  // (concurrency, throttled so far) as it changed
  mv1::Migration done;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto now = Get(job->id());
        if (!now.ok()) return false;
        lowest = std::min(lowest, now->progress().concurrency());
        if (seen.empty() || seen.back().first != now->progress().concurrency()) {
          seen.emplace_back(now->progress().concurrency(), now->progress().throttled());
        }
        done = *now;
        return now->state() != mv1::MIGRATION_STATE_RUNNING;
      },
      absl::Seconds(90), absl::Milliseconds(20)));
  EXPECT_EQ(done.state(), mv1::MIGRATION_STATE_COMPLETED) << done.DebugString();
  ASSERT_GT(relay->throttled(), 0) << "8 copies at once were throttled";
  // Every throttled answer reached the job, which lowered its concurrency.
  EXPECT_EQ(done.progress().throttled(), relay->throttled());
  std::string trace;
  for (const auto& [c, t] : seen) absl::StrAppend(&trace, "(", c, ", ", t, ") ");
  std::cout << "(concurrency, throttled answers) as they changed: " << trace << std::endl;
  EXPECT_LE(lowest, 2) << "halved down to what the store takes";
  // At 8 copies at once every round would be refused 6 times (about 70
  // answers in all); at what the store takes, about one a round.
  EXPECT_LT(relay->throttled(), 24);
  EXPECT_EQ(done.progress().objects_done(), 24);
  for (const auto& o : Report(job->id())) {
    EXPECT_EQ(o.outcome(), mv1::OBJECT_OUTCOME_MOVED) << o.DebugString();
    auto head = Head(o.key());
    ASSERT_TRUE(head.ok());
    EXPECT_EQ(head->backend(), "s3");
    EXPECT_EQ(head->sha256(), core::Sha256Hex(data[o.key()]));
  }
}

// The storage adapter killed while it streams a multi-part object to
// another backend: the job goes on once it is back, the interrupted copy
// resumes from the parts the target holds (the report counts them), and
// every object lands once, whole.
TEST_F(MigrationTest, VerifyModesReadTheTargetBackAndCatchAStoreThatStoresWrongBytes) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  auto relay = RestartStorageBehindRelay();
  ASSERT_NE(relay, nullptr);
  // One object in one PUT, one in 5 MiB parts.
  std::map<std::string, std::string> data = {{"v/small", std::string(300000, 'q')},
                                             {"v/parts", std::string(6 << 20, 'p')}};
  for (auto& [key, bytes] : data) {
    for (size_t at = 0; at < bytes.size(); at += 977) bytes[at] = static_cast<char>(at * 7);
    ASSERT_TRUE(Put(key, bytes));
  }
  const std::string local = Head("v/small")->backend();
  auto move = [&](mv1::VerifyMode verify) {
    mv1::CreateMigrationRequest create;
    *create.mutable_selection() = Prefix("v/");
    create.mutable_target()->set_backend("s3");
    create.set_verify(verify);
    return Create(create);
  };
  auto report = [&](const std::string& id) {
    std::map<std::string, mv1::MigrationObject> out;
    for (auto& o : Report(id)) out[o.key()] = o;
    return out;
  };
  auto verify = [&](const std::string& key) {
    sv1::VerifyObjectRequest r;
    r.set_namespace_(ns_);
    r.set_key(key);
    return CallUnary(*storage_stub_, &sv1::StorageService::Stub::VerifyObject, r, absl::Seconds(30));
  };
  auto content = [&](const std::string& key) { return Content(key).value_or("<failed>"); };
  for (const auto& [key, bytes] : data) {
    auto intact = verify(key);
    ASSERT_TRUE(intact.ok()) << intact.status();
    EXPECT_TRUE(intact->intact());
    EXPECT_EQ(intact->bytes_read(), static_cast<int64_t>(bytes.size()));
    EXPECT_EQ(intact->sha256(), core::Sha256Hex(bytes));
  }

  // The target stores what it is sent with its first byte flipped.
  relay->CorruptBodies("PUT", true);
  // Read back: each copy is found wrong and removed; the sources stay.
  auto checked = move(mv1::VERIFY_MODE_TRANSFERRED);
  ASSERT_TRUE(checked.ok()) << checked.status();
  EXPECT_EQ(WaitEnded(checked->id()).state(), mv1::MIGRATION_STATE_FAILED);
  for (const auto& [key, o] : report(checked->id())) {
    EXPECT_EQ(o.outcome(), mv1::OBJECT_OUTCOME_FAILED) << key;
    EXPECT_TRUE(absl::StrContains(o.reason(), "reads back as")) << key << ": " << o.reason();
    EXPECT_FALSE(o.verified());
    EXPECT_EQ(Head(key)->backend(), local);
    EXPECT_EQ(content(key), data[key]) << key;
  }
  EXPECT_GT(relay->corrupted(), 0);
  // The streaming hash alone cannot see it: the same move "succeeds".
  auto unchecked = move(mv1::VERIFY_MODE_STREAM);
  ASSERT_TRUE(unchecked.ok()) << unchecked.status();
  EXPECT_EQ(WaitEnded(unchecked->id()).state(), mv1::MIGRATION_STATE_COMPLETED);
  for (const auto& [key, o] : report(unchecked->id())) {
    EXPECT_EQ(o.outcome(), mv1::OBJECT_OUTCOME_MOVED) << key;
    EXPECT_FALSE(o.verified());
    EXPECT_EQ(Head(key)->backend(), "s3");
    auto found = verify(key);  // VerifyObject finds it
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_FALSE(found->intact()) << key;
    EXPECT_EQ(found->bytes_read(), static_cast<int64_t>(data[key].size()));
    EXPECT_NE(found->sha256(), found->object().sha256());
  }
  relay->CorruptBodies("PUT", false);

  // VERIFY_MODE_ALL reads the objects already at the target too: the two
  // damaged ones fail (and stay), a new one moves and reads back intact.
  data["v/new"] = std::string(200000, 'n');
  ASSERT_TRUE(Put("v/new", data["v/new"]));
  auto all = move(mv1::VERIFY_MODE_ALL);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->estimate().objects(), 1);
  EXPECT_EQ(all->estimate().skipped(), 2);
  EXPECT_EQ(WaitEnded(all->id()).state(), mv1::MIGRATION_STATE_FAILED);
  auto audited = report(all->id());
  ASSERT_EQ(audited.size(), 3u);
  for (const std::string key : {"v/small", "v/parts"}) {
    EXPECT_EQ(audited[key].outcome(), mv1::OBJECT_OUTCOME_FAILED) << key;
    EXPECT_TRUE(absl::StrContains(audited[key].reason(), "read back as")) << audited[key].reason();
    EXPECT_EQ(Head(key)->backend(), "s3");
  }
  EXPECT_EQ(audited["v/new"].outcome(), mv1::OBJECT_OUTCOME_MOVED);
  EXPECT_TRUE(audited["v/new"].verified());
  EXPECT_EQ(content("v/new"), data["v/new"]);
  // Only checks, when nothing is left to move: the intact one is skipped
  // as verified.
  mv1::CreateMigrationRequest again;
  again.mutable_selection()->set_namespace_(ns_);
  again.mutable_selection()->set_prefix("v/new");
  again.mutable_target()->set_backend("s3");
  again.set_verify(mv1::VERIFY_MODE_ALL);
  auto audit = Create(again);
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_EQ(WaitEnded(audit->id()).state(), mv1::MIGRATION_STATE_COMPLETED);
  auto seen = report(audit->id());
  EXPECT_EQ(seen["v/new"].outcome(), mv1::OBJECT_OUTCOME_SKIPPED);
  EXPECT_TRUE(seen["v/new"].verified());
  again.set_verify(mv1::VERIFY_MODE_TRANSFERRED);
  EXPECT_EQ(Create(again).status().code(), absl::StatusCode::kFailedPrecondition) << "nothing to move or check";
  again.set_verify(static_cast<mv1::VerifyMode>(9));
  EXPECT_EQ(Create(again).status().code(), absl::StatusCode::kInvalidArgument);
  // A read-back from an archive class that needs a restore (S3's) is
  // refused, and nothing moves; without the read-back the move is allowed.
  again.mutable_target()->set_tier(cloudflux::common::v1::STORAGE_TIER_ARCHIVE);
  again.set_verify(mv1::VERIFY_MODE_TRANSFERRED);
  auto refused = Create(again);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "without a restore")) << refused.status();
  EXPECT_NE(Head("v/new")->tier(), cloudflux::common::v1::STORAGE_TIER_ARCHIVE);
  // Bad VerifyObject requests.
  sv1::VerifyObjectRequest bad;
  bad.set_namespace_(ns_);
  bad.set_key("v/none");
  EXPECT_EQ(CallUnary(*storage_stub_, &sv1::StorageService::Stub::VerifyObject, bad).status().code(),
            absl::StatusCode::kNotFound);
  bad.set_key("v/new");
  bad.set_version(Head("v/new")->version() + 1);
  EXPECT_EQ(CallUnary(*storage_stub_, &sv1::StorageService::Stub::VerifyObject, bad).status().code(),
            absl::StatusCode::kAborted);
  bad.set_key(std::string("v/\0x", 4));
  EXPECT_EQ(CallUnary(*storage_stub_, &sv1::StorageService::Stub::VerifyObject, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MigrationTest, VerifyObjectStopsReadingWhenItsCallerGoes) {
  const std::string bytes(64 << 20, 'g');
  ASSERT_TRUE(Put("g/large", bytes));
  auto read_back = [&] { return MetricValue(Metrics(storage_), "cloudflux_storage_verified_bytes_total"); };
  const double before = read_back();
  sv1::VerifyObjectRequest r;
  r.set_namespace_(ns_);
  r.set_key("g/large");
  auto gone = CallUnary(*storage_stub_, &sv1::StorageService::Stub::VerifyObject, r, absl::Milliseconds(1));
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kDeadlineExceeded) << gone.status();
  // The read stops once the caller has gone: the bytes read settle below
  // the object's size (it is checked every 8 MiB).
  double last = -1, now = read_back();
  for (int i = 0; i < 100 && now != last; ++i) {
    absl::SleepFor(absl::Milliseconds(300));
    last = now;
    now = read_back();
  }
  EXPECT_EQ(now, last) << "still reading";
  EXPECT_LT(now - before, static_cast<double>(bytes.size()));
  // A caller that waits gets the whole object read and found intact.
  auto whole = CallUnary(*storage_stub_, &sv1::StorageService::Stub::VerifyObject, r, absl::Seconds(60));
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(whole->intact());
  EXPECT_EQ(whole->bytes_read(), static_cast<int64_t>(bytes.size()));
  EXPECT_GE(read_back() - now, static_cast<double>(bytes.size()));
}

TEST_F(MigrationTest, AJobStartsObjectsOnlyInItsWindowAndFollowsItsTimetable) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Put(absl::StrCat("w/", i), std::string(250000, 'w')));
  const int hour = absl::ToCivilHour(absl::Now(), absl::UTCTimeZone()).hour();
  // A window two to three hours from now: nothing starts.
  mv1::CreateMigrationRequest closed;
  *closed.mutable_selection() = Prefix("w/");
  closed.mutable_target()->set_tier(WARM);
  closed.set_window_start_hour((hour + 2) % 24);
  closed.set_window_end_hour((hour + 3) % 24);
  auto waiting = Create(closed);
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  absl::SleepFor(absl::Seconds(2));
  auto held = Get(waiting->id());
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held->state(), mv1::MIGRATION_STATE_RUNNING);
  EXPECT_EQ(held->progress().objects_done(), 0);
  EXPECT_TRUE(held->progress().current().empty());
  EXPECT_TRUE(held->progress().outside_window());
  ASSERT_TRUE(Call(&mv1::MigrationService::Stub::CancelMigration, waiting->id()).ok());
  EXPECT_EQ(WaitEnded(waiting->id()).state(), mv1::MIGRATION_STATE_CANCELLED);

  // Inside its window (this hour and the next), under a timetable whose
  // slot (every day, every hour) caps it at 250 KB/s; no cap of its own.
  mv1::CreateMigrationRequest open = closed;
  open.set_window_start_hour(hour);
  open.set_window_end_hour((hour + 2) % 24);
  auto* slot = open.add_bandwidth_timetable();
  slot->set_start_hour(0);
  slot->set_end_hour(24);
  slot->set_bandwidth_bytes_per_second(250000);
  const absl::Time start = absl::Now();
  auto paced = Create(open);
  ASSERT_TRUE(paced.ok()) << paced.status();
  EXPECT_FALSE(paced->progress().outside_window());
  EXPECT_EQ(paced->progress().bandwidth_now(), 250000);
  EXPECT_FALSE(paced->request().has_bandwidth_bytes_per_second());
  EXPECT_EQ(WaitEnded(paced->id()).state(), mv1::MIGRATION_STATE_COMPLETED);
  // Four starts of 250 KB at 250 KB/s: the last waits 3 s.
  EXPECT_GE(absl::Now() - start, absl::Seconds(2.9));
  auto done = Get(paced->id());
  EXPECT_EQ(done->progress().objects_done(), 4);
  EXPECT_EQ(done->request().bandwidth_timetable_size(), 1);

  // Bad windows and timetables are refused, and nothing is created.
  auto refused = [&](auto change) {
    mv1::CreateMigrationRequest r = open;
    change(r);
    return Create(r).status().code() == absl::StatusCode::kInvalidArgument;
  };
  EXPECT_TRUE(refused([](auto& r) { r.set_window_start_hour(24); }));
  EXPECT_TRUE(refused([](auto& r) { r.set_window_end_hour(-1); }));
  EXPECT_TRUE(refused([](auto& r) { r.mutable_bandwidth_timetable(0)->add_weekdays(0); }));
  EXPECT_TRUE(refused([](auto& r) { r.mutable_bandwidth_timetable(0)->set_end_hour(0); }));
  EXPECT_TRUE(refused([](auto& r) { r.mutable_bandwidth_timetable(0)->set_bandwidth_bytes_per_second(0); }));
  mv1::ListMigrationsRequest list;
  auto listed = CallUnary(*stub_, &mv1::MigrationService::Stub::ListMigrations, list);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->migrations_size(), 2);
}

TEST_F(MigrationTest, AStorageAdapterKilledMidCopyResumesItAtThePart) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  storage_.process->Signal(SIGTERM);
  storage_.process->Wait(absl::Seconds(20));
  StartStorage(/*with_s3=*/true);
  std::map<std::string, std::string> data;
  for (int i = 0; i < 3; ++i) {
    std::string bytes(30 << 20, static_cast<char>('a' + i));
    for (size_t at = 0; at < bytes.size(); at += 4096) bytes[at] = static_cast<char>(at / 4096 * 31 + i);
    data[absl::StrCat("big/", i)] = bytes;
  }
  for (int i = 0; i < 5; ++i) data[absl::StrCat("big/small-", i)] = std::string(1000 + i, 's');
  for (const auto& [key, bytes] : data) ASSERT_TRUE(Put(key, bytes));
  db::PoolOptions pool_options;
  pool_options.url = db_->url();
  pool_options.max_connections = 1;
  auto pool = db::Pool::Create(pool_options);
  ASSERT_TRUE(pool.ok());
  auto recorded = [&]() -> int64_t {
    auto rows = (*pool)->Exec("SELECT coalesce(max(part_size * cardinality(string_to_array(etags, E'\\n'))), 0) "
                              "FROM storage.copy_uploads");
    return rows.ok() ? (*rows)[0].Int(0) : 0;
  };
  mv1::CreateMigrationRequest create;
  *create.mutable_selection() = Prefix("big/");
  create.mutable_target()->set_backend("s3");
  create.set_parallelism(1);
  auto job = Create(create);
  ASSERT_TRUE(job.ok()) << job.status();
  // A dashboard watching throughout sees the attempt the kill failed.
  Watched watched;
  std::thread watcher([&] { watched = Watch(job->id(), absl::Milliseconds(100)); });
  ASSERT_TRUE(WaitFor([&] { return recorded() >= 10 << 20; }, absl::Seconds(60), absl::Milliseconds(5)));
  storage_.process->Signal(SIGKILL);
  storage_.process->Wait(absl::Seconds(10));
  absl::SleepFor(absl::Milliseconds(300));  // a statement it sent just before may still commit
  const int64_t stored_at_kill = recorded();
  StartStorage(/*with_s3=*/true);
  mv1::Migration done = WaitEnded(job->id(), absl::Seconds(120));
  watcher.join();
  ASSERT_TRUE(watched.status.ok()) << watched.status.error_message();
  ASSERT_FALSE(watched.updates.empty());
  EXPECT_EQ(watched.updates.back().migration().state(), mv1::MIGRATION_STATE_COMPLETED);
  std::vector<std::string> reasons;
  std::map<std::string, std::vector<int>> failed_attempts;  // per key, as the watcher saw them
  for (const auto& u : watched.updates) {
    for (const auto& f : u.failures()) {
      reasons.push_back(f.reason());
      failed_attempts[f.key()].push_back(f.attempts());
    }
  }
  ASSERT_FALSE(reasons.empty()) << "the failed attempt reaches the watcher " << watched.updates.size() << " "
                                 << [&] {
                                      std::string all;
                                      for (const auto& o : Report(job->id())) all += o.ShortDebugString() + "\n";
                                      return all;
                                    }() << migration_.process->Output();
  EXPECT_TRUE(absl::StartsWith(reasons[0], "attempt 1: ")) << reasons[0];
  EXPECT_EQ(done.state(), mv1::MIGRATION_STATE_COMPLETED) << done.DebugString();
  int64_t resumed = 0;
  auto report = Report(job->id());
  ASSERT_EQ(report.size(), data.size());
  for (const auto& o : report) {
    EXPECT_EQ(o.outcome(), mv1::OBJECT_OUTCOME_MOVED) << o.DebugString();
    resumed += o.bytes_resumed();
    // Every failed attempt reached the watcher once, in order, however fast
    // the retries came (a retry during the restart fails again at once).
    std::vector<int> expected(o.attempts() - 1);
    std::iota(expected.begin(), expected.end(), 1);
    EXPECT_EQ(failed_attempts[o.key()], expected) << o.key();
    auto head = Head(o.key());
    ASSERT_TRUE(head.ok());
    EXPECT_EQ(head->backend(), "s3");
    EXPECT_EQ(head->version(), 1);
    EXPECT_EQ(head->sha256(), core::Sha256Hex(data[o.key()]));
  }
  EXPECT_EQ(resumed, stored_at_kill) << "the interrupted copy went on from the parts stored\n"
                                     << storage_.process->Output() << [&] {
                                          std::string all;
                                          for (const auto& o : report) all += o.DebugString();
                                          return all;
                                        }();
  EXPECT_GE(resumed, 10 << 20);
}

// Copy mode: copies written to another namespace on the target class, the
// sources untouched; a repeat finds them there; the copy job's rollback
// deletes the copies, except one overwritten since.
TEST_F(MigrationTest, ACopyJobKeepsTheSourcesAndItsRollbackDeletesTheCopies) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put(absl::StrCat("c/", i), std::string(20000 + i, 'c')));
  const std::string copies = ns_ + "-copies";
  mv1::CreateMigrationRequest create;
  *create.mutable_selection() = Prefix("c/");
  create.mutable_target()->set_tier(COLD);
  create.mutable_target()->set_namespace_(copies);
  create.set_mode(mv1::MIGRATION_MODE_COPY);
  mv1::EstimateMigrationRequest estimate;
  *estimate.mutable_selection() = create.selection();
  *estimate.mutable_target() = create.target();
  estimate.set_mode(mv1::MIGRATION_MODE_COPY);
  auto priced = Estimate(estimate);
  ASSERT_TRUE(priced.ok()) << priced.status();
  EXPECT_EQ(priced->objects(), 5);
  EXPECT_EQ(priced->early_deletion_cost(), 0);  // the sources stay
  EXPECT_GT(priced->monthly_cost_after(), priced->monthly_cost_before());  // both are paid for

  auto job = Create(create);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(WaitEnded(job->id()).state(), mv1::MIGRATION_STATE_COMPLETED);
  for (const auto& o : Report(job->id())) {
    EXPECT_EQ(o.outcome(), mv1::OBJECT_OUTCOME_MOVED) << o.DebugString();
    EXPECT_EQ(o.to_namespace(), copies);
    auto source = Head(o.key());
    ASSERT_TRUE(source.ok());
    EXPECT_EQ(source->tier(), HOT);
    EXPECT_EQ(source->version(), 1);
    sv1::HeadObjectRequest r;
    r.set_namespace_(copies);
    r.set_key(o.key());
    auto copy = CallUnary(*storage_stub_, &sv1::StorageService::Stub::HeadObject, r);
    ASSERT_TRUE(copy.ok()) << o.key();
    EXPECT_EQ(copy->tier(), COLD);
    EXPECT_EQ(copy->sha256(), source->sha256());
  }
  EXPECT_EQ(Create(create).status().code(), absl::StatusCode::kFailedPrecondition);  // all there already

  // Refused: a copy without a target namespace, into its own namespace, and
  // a move into another namespace.
  mv1::CreateMigrationRequest bad = create;
  bad.mutable_target()->clear_namespace_();
  EXPECT_EQ(Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.mutable_target()->set_namespace_(ns_);
  EXPECT_EQ(Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = create;
  bad.set_mode(mv1::MIGRATION_MODE_MOVE);
  EXPECT_EQ(Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.set_mode(static_cast<mv1::MigrationMode>(7));
  EXPECT_EQ(Create(bad).status().code(), absl::StatusCode::kInvalidArgument);

  // One copy overwritten, then the rollback.
  ASSERT_TRUE(PutThroughStorage(*storage_stub_, copies, "c/0", "someone else's"));
  auto rollback = Call(&mv1::MigrationService::Stub::RollbackMigration, job->id());
  ASSERT_TRUE(rollback.ok()) << rollback.status();
  EXPECT_EQ(WaitEnded(rollback->id()).state(), mv1::MIGRATION_STATE_COMPLETED);
  for (int i = 0; i < 5; ++i) {
    sv1::HeadObjectRequest r;
    r.set_namespace_(copies);
    r.set_key(absl::StrCat("c/", i));
    auto copy = CallUnary(*storage_stub_, &sv1::StorageService::Stub::HeadObject, r);
    if (i == 0) {
      ASSERT_TRUE(copy.ok());  // not the copy the job wrote: kept
      EXPECT_EQ(copy->size(), 14);
    } else {
      EXPECT_EQ(copy.status().code(), absl::StatusCode::kNotFound) << i;
    }
    EXPECT_TRUE(Head(absl::StrCat("c/", i)).ok()) << "the sources stay";
  }
  for (const auto& o : Report(rollback->id())) {
    EXPECT_EQ(o.outcome(), o.key() == "c/0" ? mv1::OBJECT_OUTCOME_SKIPPED : mv1::OBJECT_OUTCOME_MOVED)
        << o.DebugString();
    if (o.key() == "c/0") {
      EXPECT_EQ(o.reason(), "overwritten since");
    }
  }
}

// Tasks of a job that end at the same moment: whichever records its end
// last finishes the job. The database is slowed (each commit of a task's
// end takes 300 ms longer) so that the four ends overlap every time.
TEST_F(MigrationTest, TasksEndingTogetherStillFinishTheirJob) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Put(absl::StrCat("t/", i), std::string(100 + i, 't')));
  db::PoolOptions pool_options;
  pool_options.url = db_->url();
  pool_options.max_connections = 1;
  auto pool = db::Pool::Create(pool_options);
  ASSERT_TRUE(pool.ok());
  ASSERT_TRUE((*pool)
                  ->Exec("CREATE FUNCTION public.slow_task_end() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$")
                  .ok());
  ASSERT_TRUE((*pool)
                  ->Exec("CREATE CONSTRAINT TRIGGER slow_task_end AFTER UPDATE ON migration.tasks DEFERRABLE INITIALLY "
                         "DEFERRED FOR EACH ROW WHEN "
                         "(NEW.outcome = 3) EXECUTE FUNCTION public.slow_task_end()")
                  .ok());
  for (auto tier : {COLD, WARM}) {
    mv1::CreateMigrationRequest create;
    *create.mutable_selection() = Prefix("t/");
    create.mutable_target()->set_tier(tier);
    create.set_parallelism(4);
    auto job = Create(create);
    ASSERT_TRUE(job.ok()) << job.status();
    mv1::Migration ended = WaitEnded(job->id(), absl::Seconds(20));
    EXPECT_EQ(ended.state(), mv1::MIGRATION_STATE_COMPLETED) << ended.DebugString();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(Head(absl::StrCat("t/", i))->tier(), tier);
  }
}

TEST_F(MigrationTest, BadRequestsAreRefusedAndMoveNothing) {
  ASSERT_TRUE(Put("x/1", "one"));
  auto code = [&](const mv1::CreateMigrationRequest& r) { return Create(r).status().code(); };
  mv1::CreateMigrationRequest ok;
  *ok.mutable_selection() = Prefix("x/");
  ok.mutable_target()->set_tier(COLD);

  mv1::CreateMigrationRequest r = ok;
  r.clear_selection();
  EXPECT_EQ(code(r), absl::StatusCode::kInvalidArgument);  // empty selection
  r = ok;
  r.mutable_selection()->set_prefix("nothing-here/");
  EXPECT_EQ(code(r), absl::StatusCode::kFailedPrecondition);  // matches no object
  r = ok;
  r.mutable_target()->set_backend("no-such-backend");
  EXPECT_EQ(code(r), absl::StatusCode::kInvalidArgument);
  r = ok;
  r.clear_target();
  EXPECT_EQ(code(r), absl::StatusCode::kInvalidArgument);  // no target
  r = ok;
  r.mutable_target()->set_tier(HOT);  // where it is
  EXPECT_EQ(code(r), absl::StatusCode::kFailedPrecondition);
  r = ok;
  r.set_bandwidth_bytes_per_second(0);
  EXPECT_EQ(code(r), absl::StatusCode::kInvalidArgument);
  r = ok;
  r.set_max_bytes(1);
  EXPECT_EQ(code(r), absl::StatusCode::kFailedPrecondition);
  r = ok;
  r.mutable_selection()->clear_namespace_();
  r.mutable_selection()->clear_prefix();
  auto* o = r.mutable_selection()->add_objects();
  o->set_namespace_(ns_);
  o->set_key("missing");
  EXPECT_EQ(code(r), absl::StatusCode::kNotFound);
  o->set_key(std::string("a\0b", 3));
  EXPECT_EQ(code(r), absl::StatusCode::kInvalidArgument);
  r = ok;
  r.mutable_target()->set_tier(cloudflux::common::v1::STORAGE_TIER_ARCHIVE);
  ASSERT_TRUE(Create(r).ok());  // into an archive class is fine ...
  EXPECT_TRUE(WaitFor([&] { return Head("x/1")->tier() == cloudflux::common::v1::STORAGE_TIER_ARCHIVE; },
                      absl::Seconds(30)));
  EXPECT_EQ(code(ok), absl::StatusCode::kFailedPrecondition);  // ... out of one needs a restore first

  EXPECT_EQ(Get("not-a-uuid").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Get(core::NewId()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Call(&mv1::MigrationService::Stub::PauseMigration, core::NewId()).status().code(),
            absl::StatusCode::kNotFound);
  mv1::ListMigrationsResponse listed;
  ASSERT_TRUE(stub_->ListMigrations(server::MakeClientContext(absl::Seconds(5)).get(), {}, &listed).ok());
  EXPECT_EQ(listed.migrations_size(), 1);  // only the archive move was created
}

// The loop closed: classification decides, the placement loop moves the
// cold objects (and leaves the hot ones), the catalog and classification's
// statistics show the new placement, and a rollback puts them back.
TEST_F(MigrationTest, ThePlacementLoopMovesWhatClassificationDecidesAndARollbackPutsItBack) {
  Service classification = StartService("classification", db_->url(),
                                        {{"CLOUDFLUX_BACKEND_CLOUDS", "local=aws"}, {"CLOUDFLUX_MIN_OBSERVED_DAYS", "0"}});
  ASSERT_TRUE(WaitForHealth(classification, HealthCheckResponse::SERVING)) << classification.process->Output();
  auto classify = cloudflux::classification::v1::ClassificationService::NewStub(
      server::MakeChannel(classification.target()));
  auto decide = [&](const std::string& key, bool publish) -> absl::StatusOr<cloudflux::classification::v1::Classification> {
    cloudflux::classification::v1::ClassifyRequest r;
    r.set_namespace_(ns_);
    r.set_key(key);
    r.set_publish(publish);
    return CallUnary(*classify, &cloudflux::classification::v1::ClassificationService::Stub::Classify, r);
  };

  // Classification's policy pins cold/ to the COLD tier (counts alone would
  // rarely move an object of a few MiB on its first day).
  cloudflux::classification::v1::Policy pin;
  pin.set_namespace_(ns_);
  pin.set_prefix("cold/");
  pin.set_pinned_tier(COLD);
  cloudflux::classification::v1::Policy pinned;
  ASSERT_TRUE(classify->CreatePolicy(server::MakeClientContext(absl::Seconds(10)).get(), pin, &pinned).ok());

  mv1::PlacementPolicy policy;
  policy.set_namespace_(ns_);
  policy.set_enabled(true);
  policy.set_batch_objects(100);
  mv1::PlacementPolicy set;
  ASSERT_TRUE(stub_->SetPlacementPolicy(server::MakeClientContext(absl::Seconds(5)).get(), policy, &set).ok());
  EXPECT_TRUE(set.enabled());

  const std::string object(8 << 20, 'x');
  for (const std::string key : {"cold/0", "cold/1", "cold/2", "hot/0", "hot/1"}) ASSERT_TRUE(Put(key, object));
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(Read("hot/0"));
    ASSERT_TRUE(Read("hot/1"));
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        // Every object's statistics: events of different objects come
        // through different partitions, in any order.
        auto h0 = decide("hot/0", false), h1 = decide("hot/1", false);
        return h0.ok() && h1.ok() && h0->expected_reads() > 10 && h1->expected_reads() > 10 &&
               decide("cold/0", false).ok() && decide("cold/1", false).ok() && decide("cold/2", false).ok();
      },
      absl::Seconds(30)));
  for (const std::string key : {"hot/0", "hot/1"}) {
    auto d = decide(key, true);
    ASSERT_TRUE(d.ok());
    EXPECT_FALSE(d->move()) << d->reason();
  }
  std::string cold_class;
  for (const std::string key : {"cold/0", "cold/1", "cold/2"}) {
    auto d = decide(key, true);
    ASSERT_TRUE(d.ok()) << d.status() << classification.process->Output();
    ASSERT_TRUE(d->move()) << d->reason();
    EXPECT_TRUE(d->published());
    cold_class = d->storage_class();
  }

  // The loop turns the decisions into migrations that move the cold ones
  // (one, or more where the decisions arrived across its rounds).
  std::vector<mv1::Migration> placed;
  ASSERT_TRUE(WaitFor(
      [&] {
        mv1::ListMigrationsResponse listed;
        if (!stub_->ListMigrations(server::MakeClientContext(absl::Seconds(5)).get(), {}, &listed).ok()) return false;
        placed.clear();
        int64_t done = 0;
        for (const auto& m : listed.migrations()) {
          if (m.origin() != "placement") continue;
          if (m.state() != mv1::MIGRATION_STATE_COMPLETED) return false;
          placed.push_back(m);
          done += m.progress().objects_done();
        }
        return done == 3;
      },
      absl::Seconds(60), absl::Milliseconds(200)))
      << migration_.process->Output();
  for (const std::string key : {"cold/0", "cold/1", "cold/2"}) {
    auto head = Head(key);
    ASSERT_TRUE(head.ok());
    EXPECT_NE(head->tier(), HOT) << key;
  }
  for (const std::string key : {"hot/0", "hot/1"}) EXPECT_EQ(Head(key)->tier(), HOT);
  // Classification's statistics follow the new placement: nothing more to move.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto d = decide("cold/0", false);
        return d.ok() && !d->move() && d->storage_class() == cold_class;
      },
      absl::Seconds(30)));
  auto policy_now = [&] {
    mv1::PlacementPolicyRef ref;
    ref.set_namespace_(ns_);
    mv1::PlacementPolicy got;
    EXPECT_TRUE(stub_->GetPlacementPolicy(server::MakeClientContext(absl::Seconds(5)).get(), ref, &got).ok());
    return got;
  };
  EXPECT_EQ(policy_now().pending_decisions(), 0);
  EXPECT_EQ(policy_now().bytes_today(), 3 * (8 << 20));

  // A rollback puts them back where they were.
  for (const auto& m : placed) {
    auto rollback = Call(&mv1::MigrationService::Stub::RollbackMigration, m.id());
    ASSERT_TRUE(rollback.ok()) << rollback.status();
    EXPECT_EQ(rollback->origin(), "rollback");
    EXPECT_EQ(WaitEnded(rollback->id()).state(), mv1::MIGRATION_STATE_COMPLETED);
  }
  for (const std::string key : {"cold/0", "cold/1", "cold/2"}) EXPECT_EQ(Head(key)->tier(), HOT) << key;

  // Nothing to roll back: a dry run moved nothing.
  mv1::CreateMigrationRequest dry;
  *dry.mutable_selection() = Prefix("hot/");
  dry.mutable_target()->set_tier(COLD);
  dry.set_dry_run(true);
  auto planned = Create(dry);
  ASSERT_TRUE(planned.ok());
  EXPECT_EQ(Call(&mv1::MigrationService::Stub::RollbackMigration, planned->id()).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // A disabled policy keeps no decisions.
  policy.set_enabled(false);
  ASSERT_TRUE(stub_->SetPlacementPolicy(server::MakeClientContext(absl::Seconds(5)).get(), policy, &set).ok());
  policy.set_window_start_hour(24);
  EXPECT_EQ(stub_->SetPlacementPolicy(server::MakeClientContext(absl::Seconds(5)).get(), policy, &set).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  classification.process->Signal(SIGTERM);
  EXPECT_EQ(classification.process->Wait(absl::Seconds(20)), 0);
}

// Replication: a rule backfills the objects already under its prefix,
// follows new ones and overwrites from the object events, repairs a replica
// lost behind its back on request, and a read whose own bytes are gone is
// served from the replica. Dropping the rule removes its replicas.
TEST_F(MigrationTest, AReplicationRuleKeepsReplicasCurrentAndReadsFailOverToThem) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  storage_.process->Signal(SIGTERM);
  storage_.process->Wait(absl::Seconds(20));
  StartStorage(/*with_s3=*/true);
  std::string big(6 << 20, '\0');
  std::mt19937 bits(7);
  for (char& c : big) c = static_cast<char>(bits());
  ASSERT_TRUE(Put("a/0", big));
  ASSERT_TRUE(Put("a/1", "one"));
  ASSERT_TRUE(Put("b/x", "outside the prefix"));

  mv1::ReplicationRule rule;
  rule.set_namespace_(ns_);
  rule.set_prefix("a/");
  rule.set_backend("s3");
  auto create = [&](const mv1::ReplicationRule& r) {
    return CallUnary(*stub_, &mv1::MigrationService::Stub::CreateReplicationRule, r, absl::Seconds(30));
  };
  auto get = [&](const std::string& id) {
    mv1::ReplicationRuleRef ref;
    ref.set_id(id);
    return CallUnary(*stub_, &mv1::MigrationService::Stub::GetReplicationRule, ref, absl::Seconds(30));
  };
  mv1::ReplicationRule bad = rule;
  bad.set_backend("nowhere");
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = rule;
  bad.set_namespace_(std::string("ns\0x", 4));
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  auto made = create(rule);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(create(rule).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(get("not-an-id").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(get(core::NewId()).status().code(), absl::StatusCode::kNotFound);

  auto replicated = [&](const std::string& key) {
    auto head = Head(key);
    return head.ok() && head->replicas_size() == 1 && head->replicas(0).backend() == "s3" &&
           head->replicas(0).version() == head->version();
  };
  // Backfilled by the rule's first full comparison.
  ASSERT_TRUE(WaitFor([&] { return replicated("a/0") && replicated("a/1"); }, absl::Seconds(30)))
      << migration_.process->Output();
  EXPECT_EQ(Head("b/x")->replicas_size(), 0);
  // Followed from the events: a new object, and an overwrite (the old
  // replica goes with its version at once).
  ASSERT_TRUE(Put("a/2", "two"));
  ASSERT_TRUE(Put("a/1", "one, again"));
  EXPECT_EQ(Head("a/1")->replicas_size(), 0);
  ASSERT_TRUE(WaitFor([&] { return replicated("a/1") && replicated("a/2"); }, absl::Seconds(30)))
      << migration_.process->Output();

  // The object's own bytes lost: the read is served from the replica.
  auto head = Head("a/0");
  ASSERT_TRUE(head.ok());
  const std::string name = std::filesystem::path(head->physical_key()).filename();
  int removed = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(data_dir_)) {
    if (f.path().filename() == name) removed += std::filesystem::remove(f.path()) ? 1 : 0;
  }
  ASSERT_EQ(removed, 1);
  {
    std::optional<std::string> got = Content("a/0");
    ASSERT_TRUE(got.has_value());
    EXPECT_TRUE(*got == big) << got->size() << " bytes";
  }
  EXPECT_GE(MetricValue(Metrics(storage_), "cloudflux_storage_replica_reads_total{backend=\"s3\"}"), 1);

  // A replica lost behind the rule's back comes back with a full comparison.
  {
    sv1::DeleteObjectRequest r;
    r.set_namespace_(ns_);
    r.set_key("a/2");
    r.set_replica_backend("s3");
    ASSERT_TRUE(CallUnary(*storage_stub_, &sv1::StorageService::Stub::DeleteObject, r).ok());
    EXPECT_EQ(CallUnary(*storage_stub_, &sv1::StorageService::Stub::DeleteObject, r).status().code(),
              absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(Head("a/2")->replicas_size(), 0);
  mv1::ReplicationRuleRef ref;
  ref.set_id(made->id());
  ASSERT_TRUE(CallUnary(*stub_, &mv1::MigrationService::Stub::SyncReplicationRule, ref).ok());
  ASSERT_TRUE(WaitFor([&] { return replicated("a/2"); }, absl::Seconds(30))) << migration_.process->Output();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = get(made->id());
        return r.ok() && r->status().pending() == 0 && !r->status().full_sync_running();
      },
      absl::Seconds(30)));
  auto status = get(made->id())->status();
  EXPECT_GE(status.objects_copied(), 5);  // a/0, a/1 twice, a/2 twice
  EXPECT_TRUE(status.has_last_full_sync());
  EXPECT_EQ(status.failing(), 0) << status.last_error();

  // Dropped with its replicas.
  mv1::DeleteReplicationRuleRequest drop;
  drop.set_id(made->id());
  drop.set_drop_replicas(true);
  auto dropping = CallUnary(*stub_, &mv1::MigrationService::Stub::DeleteReplicationRule, drop);
  ASSERT_TRUE(dropping.ok()) << dropping.status();
  EXPECT_TRUE(dropping->dropping());
  ASSERT_TRUE(WaitFor([&] { return get(made->id()).status().code() == absl::StatusCode::kNotFound; },
                      absl::Seconds(30)));
  for (const std::string key : {"a/0", "a/1", "a/2"}) EXPECT_EQ(Head(key)->replicas_size(), 0) << key;
}

// Two-way sync between two locations (path2 on S3 where s3rver runs): the
// first run's union and first conflicts, changes and deletions on either
// side, a conflict's loser kept, the max-delete limit, a run stopped by the
// storage adapter's death that the next run finishes without copying
// anything twice, and a pair that runs on its own.
TEST_F(MigrationTest, TwoWaySyncPropagatesChangesKeepsConflictLosersAndFinishesAStoppedRun) {
  const bool s3 = testing::TestS3Endpoint().ok();
  if (s3) {
    storage_.process->Signal(SIGTERM);
    storage_.process->Wait(absl::Seconds(20));
    StartStorage(/*with_s3=*/true);
  }
  auto create = [&](const mv1::SyncPair& p) { return CallUnary(*stub_, &mv1::MigrationService::Stub::CreateSyncPair, p); };
  auto get = [&](const std::string& id) {
    mv1::SyncPairRef r;
    r.set_id(id);
    return CallUnary(*stub_, &mv1::MigrationService::Stub::GetSyncPair, r);
  };
  auto run = [&](const std::string& id, bool dry = false, bool force = false) {
    mv1::RunSyncRequest r;
    r.set_id(id);
    r.set_dry_run(dry);
    r.set_force(force);
    return CallUnary(*stub_, &mv1::MigrationService::Stub::RunSync, r, absl::Seconds(120));
  };
  auto sha = [&](const std::string& key) -> std::string {
    auto h = Head(key);
    return h.ok() ? h->sha256() : std::string("absent");
  };
  auto pair_of = [&](const std::string& one, const std::string& two) {
    mv1::SyncPair p;
    p.mutable_path1()->set_namespace_(ns_);
    p.mutable_path1()->set_prefix(one);
    p.mutable_path2()->set_namespace_(ns_);
    p.mutable_path2()->set_prefix(two);
    if (s3) p.mutable_path2()->set_backend("s3");
    return p;
  };

  // Bad pairs and references change nothing.
  auto bad = pair_of("one/", "one/sub/");
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument) << "overlapping locations";
  bad = pair_of("one/", "two/");
  bad.mutable_path1()->set_namespace_(std::string("n\0s", 3));
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = pair_of("one/", "two/");
  bad.mutable_path2()->set_backend("nowhere");
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = pair_of("one/", "two/");
  bad.set_max_delete_percent(101);
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = pair_of("one/", "two/");
  bad.mutable_interval()->set_nanos(500000000);
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument) << "under 1 s";
  bad = pair_of("one/", "two/");
  bad.set_conflict_resolve(static_cast<mv1::ConflictResolve>(42));
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(get("nope").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(get(core::NewId()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(run(core::NewId()).status().code(), absl::StatusCode::kNotFound);
  auto none = CallUnary(*stub_, &mv1::MigrationService::Stub::ListSyncPairs, mv1::ListSyncPairsRequest());
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->pairs_size(), 0);

  auto pair = create(pair_of("one/", "two/"));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(pair->conflict_resolve(), mv1::CONFLICT_RESOLVE_NEWER);
  EXPECT_EQ(pair->conflict_loser(), mv1::CONFLICT_LOSER_RENAME);
  EXPECT_EQ(pair->max_delete_percent(), 50);
  EXPECT_EQ(create(pair_of("two/", "one/")).status().code(), absl::StatusCode::kAlreadyExists);
  const std::string id = pair->id();

  // 1. The first run: the union of both sides; a key on both with
  // different bytes is a conflict (the newer, path2's, wins; path1's kept).
  std::map<std::string, std::string> bytes = {{"a", "alpha"}, {"b", "bravo"}, {"c", "charlie"}, {"same", "same"}};
  for (const auto& [k, v] : bytes) ASSERT_TRUE(Put("one/" + k, v));
  ASSERT_TRUE(Put("two/d", "delta"));
  ASSERT_TRUE(Put("two/same", "same"));
  ASSERT_TRUE(Put("one/diff", "diff from path1"));
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(Put("two/diff", "diff from path2, newer"));
  auto plan = run(id, /*dry=*/true);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::map<std::string, mv1::SyncAction> planned;
  for (const auto& c : plan->changes()) planned[c.key() + (c.action() == mv1::SYNC_ACTION_KEEP_LOSER ? "+" : "")] = c.action();
  EXPECT_EQ(planned, (std::map<std::string, mv1::SyncAction>{{"a", mv1::SYNC_ACTION_COPY_TO_PATH2},
                                                             {"b", mv1::SYNC_ACTION_COPY_TO_PATH2},
                                                             {"c", mv1::SYNC_ACTION_COPY_TO_PATH2},
                                                             {"d", mv1::SYNC_ACTION_COPY_TO_PATH1},
                                                             {"diff+", mv1::SYNC_ACTION_KEEP_LOSER},
                                                             {"diff", mv1::SYNC_ACTION_COPY_TO_PATH1}}))
      << plan->DebugString();
  EXPECT_EQ(plan->conflicts(), 1);
  EXPECT_EQ(sha("two/a"), "absent") << "a dry run changes nothing";
  auto first = run(id);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->complete()) << first->DebugString();
  EXPECT_EQ(first->copied(), 5);
  EXPECT_EQ(first->unchanged(), 1);
  bytes["d"] = "delta";
  bytes["diff"] = "diff from path2, newer";
  bytes["diff.conflict-path1"] = "diff from path1";
  for (const auto& [k, v] : bytes) {
    EXPECT_EQ(sha("one/" + k), core::Sha256Hex(v)) << k;
    EXPECT_EQ(sha("two/" + k), core::Sha256Hex(v)) << k;
  }
  if (s3) {
    EXPECT_EQ(Head("two/a")->backend(), "s3");
  }
  auto again = run(id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->changes_size(), 0) << again->DebugString();
  EXPECT_EQ(again->unchanged(), static_cast<int64_t>(bytes.size()));

  // 2. Changes on either side: a change, a deletion, a conflict (path2's
  // newer change wins), a deletion against a change (the change is kept).
  ASSERT_TRUE(Put("one/a", "alpha 2"));
  ASSERT_TRUE(storage_stub_ != nullptr);
  auto remove = [&](const std::string& key) {
    sv1::DeleteObjectRequest r;
    r.set_namespace_(ns_);
    r.set_key(key);
    return CallUnary(*storage_stub_, &sv1::StorageService::Stub::DeleteObject, r).status();
  };
  ASSERT_TRUE(remove("two/b").ok());
  ASSERT_TRUE(Put("one/c", "charlie on path1"));
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(Put("two/c", "charlie on path2"));
  ASSERT_TRUE(remove("one/d").ok());
  ASSERT_TRUE(Put("two/d", "delta 2"));
  auto second = run(id);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->complete()) << second->DebugString();
  EXPECT_EQ(second->deleted(), 1);
  EXPECT_EQ(second->conflicts(), 1);
  bytes.erase("b");
  bytes["a"] = "alpha 2";
  bytes["c"] = "charlie on path2";
  bytes["c.conflict-path1"] = "charlie on path1";
  bytes["d"] = "delta 2";
  for (const auto& [k, v] : bytes) {
    EXPECT_EQ(sha("one/" + k), core::Sha256Hex(v)) << k;
    EXPECT_EQ(sha("two/" + k), core::Sha256Hex(v)) << k;
  }
  EXPECT_EQ(sha("one/b"), "absent");
  EXPECT_EQ(get(id)->tracked(), static_cast<int64_t>(bytes.size()));

  // 2b. New metadata on the same bytes (a new version) is a change too: it
  // reaches the other side, and then both agree.
  {
    auto ctx = server::MakeClientContext(absl::Seconds(30));
    sv1::ObjectInfo info;
    auto w = storage_stub_->PutObject(ctx.get(), &info);
    sv1::PutObjectRequest h;
    h.mutable_header()->set_namespace_(ns_);
    h.mutable_header()->set_key("one/a");
    h.mutable_header()->set_size(static_cast<int64_t>(bytes["a"].size()));
    h.mutable_header()->set_content_type("text/x-alpha");
    (*h.mutable_header()->mutable_metadata())["owner"] = "ops";
    ASSERT_TRUE(w->Write(h));
    sv1::PutObjectRequest c;
    c.set_chunk(bytes["a"]);
    ASSERT_TRUE(w->Write(c));
    w->WritesDone();
    ASSERT_TRUE(w->Finish().ok());
  }
  auto relabelled = run(id);
  ASSERT_TRUE(relabelled.ok()) << relabelled.status();
  EXPECT_EQ(relabelled->copied(), 1) << relabelled->DebugString();
  EXPECT_EQ(relabelled->conflicts(), 0);
  auto there = Head("two/a");
  ASSERT_TRUE(there.ok());
  EXPECT_EQ(there->content_type(), "text/x-alpha");
  EXPECT_EQ(there->metadata().at("owner"), "ops");
  EXPECT_EQ(there->sha256(), core::Sha256Hex(bytes["a"]));
  EXPECT_EQ(run(id)->changes_size(), 0);

  // 3. More deletions than max_delete_percent: refused, nothing deleted; a
  // dry run shows them; force goes past the limit.
  for (const std::string k : {"a", "c", "d", "same", "diff"}) ASSERT_TRUE(remove("one/" + k).ok());
  auto refused = run(id);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_EQ(sha("two/a"), core::Sha256Hex(bytes["a"])) << "nothing deleted";
  EXPECT_TRUE(absl::StrContains(get(id)->last_run().error(), "max_delete_percent")) << get(id)->DebugString();
  auto shown = run(id, /*dry=*/true);
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(shown->changes_size(), 5);
  EXPECT_FALSE(shown->error().empty());
  auto forced = run(id, false, /*force=*/true);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(forced->deleted(), 5);
  for (const std::string k : {"a", "c", "d", "same", "diff"}) EXPECT_EQ(sha("two/" + k), "absent") << k;
  EXPECT_EQ(sha("two/c.conflict-path1"), core::Sha256Hex(bytes["c.conflict-path1"]));

  // 4. A run stopped by the storage adapter's death keeps what it did; the
  // next one does only the rest: each object copied once (version 1).
  constexpr int kMany = 300;
  for (int i = 0; i < kMany; ++i) ASSERT_TRUE(Put(absl::StrCat("one/many/", absl::Dec(i, absl::kZeroPad3)), std::string(2048, 'a' + i % 26)));
  db::PoolOptions pool_options;
  pool_options.url = db_->url();
  pool_options.max_connections = 1;
  auto pool = db::Pool::Create(pool_options);
  ASSERT_TRUE(pool.ok());
  auto synced = [&] {
    auto rows = (*pool)->Exec("SELECT count(*) FROM migration.sync_listing WHERE key LIKE 'many/%'");
    return rows.ok() ? (*rows)[0].Int(0) : 0;
  };
  absl::StatusOr<mv1::SyncRun> stopped;
  std::thread running([&] { stopped = run(id); });
  ASSERT_TRUE(WaitFor([&] { return synced() >= 10; }, absl::Seconds(60), absl::Milliseconds(5)));
  EXPECT_EQ(run(id).status().code(), absl::StatusCode::kAborted) << "one run of a pair at a time";
  {
    mv1::SyncPairRef r;
    r.set_id(id);
    EXPECT_EQ(CallUnary(*stub_, &mv1::MigrationService::Stub::DeleteSyncPair, r).status().code(),
              absl::StatusCode::kAborted);
  }
  storage_.process->Signal(SIGKILL);
  storage_.process->Wait(absl::Seconds(10));
  running.join();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_FALSE(stopped->complete());
  EXPECT_FALSE(stopped->error().empty());
  EXPECT_LT(stopped->copied(), kMany) << "the kill came after the run";
  StartStorage(s3);
  // Runs until one completes: the migration service's channel to the
  // restarted storage adapter may still be reconnecting (UNAVAILABLE).
  absl::StatusOr<mv1::SyncRun> rest;
  int64_t copied_after = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        rest = run(id);
        if (rest.ok()) copied_after += rest->copied();
        return rest.ok() && rest->complete();
      },
      absl::Seconds(60), absl::Milliseconds(500)))
      << (rest.ok() ? rest->error() : rest.status().ToString());
  std::cout << "stopped run: " << stopped->copied() << " of " << kMany << " copied (" << stopped->error()
            << "); the next: " << copied_after << ", " << rest->unchanged() << " found agreed\n";
  // The copy the kill cut short may have landed: then it is found agreed.
  EXPECT_GE(stopped->copied() + copied_after, kMany - 1);
  EXPECT_LE(stopped->copied() + copied_after, kMany);
  auto versions = (*pool)->Exec("SELECT count(*), max(version) FROM storage.objects WHERE namespace = $1 AND key LIKE "
                                "'two/many/%'",
                                {ns_});
  ASSERT_TRUE(versions.ok());
  EXPECT_EQ((*versions)[0].Int(0), kMany);
  EXPECT_EQ((*versions)[0].Int(1), 1) << "no object copied twice";

  // 5. A pair with an interval runs on its own.
  auto timed = pair_of("three/", "four/");
  timed.mutable_interval()->set_seconds(1);
  auto scheduled = create(timed);
  ASSERT_TRUE(scheduled.ok()) << scheduled.status();
  ASSERT_TRUE(Put("four/x", "from path2"));
  EXPECT_TRUE(WaitFor([&] { return sha("three/x") == core::Sha256Hex(std::string("from path2")); }, absl::Seconds(20)))
      << migration_.process->Output();
  ASSERT_TRUE(Put("three/x", "from path1"));
  EXPECT_TRUE(WaitFor([&] { return sha("four/x") == core::Sha256Hex(std::string("from path1")); }, absl::Seconds(20)));

  // Deleted pairs are gone with their listing.
  for (const std::string& gone : {id, scheduled->id()}) {
    mv1::SyncPairRef r;
    r.set_id(gone);
    ASSERT_TRUE(WaitFor([&] { return CallUnary(*stub_, &mv1::MigrationService::Stub::DeleteSyncPair, r).ok(); },
                        absl::Seconds(10)));
    EXPECT_EQ(get(gone).status().code(), absl::StatusCode::kNotFound);
  }
  auto left = (*pool)->Exec("SELECT count(*) FROM migration.sync_listing");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ((*left)[0].Int(0), 0);
}

}  // namespace
}  // namespace cloudflux
