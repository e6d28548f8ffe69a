// The classification service's access statistics end to end: objects put
// and read through the storage-adapter binary, their events through the dev
// broker, counted by the classification binary in PostgreSQL.
#include <gtest/gtest.h>
#include <signal.h>

#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/db/db.h"
#include "cloudflux/server/grpc_status.h"
#include "cloudflux/classification/v1/classification.grpc.pb.h"
#include "cloudflux/classification/v1/events.pb.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "service_process.h"

namespace cloudflux {
namespace {

namespace v1 = cloudflux::storage::v1;
namespace cv1 = cloudflux::classification::v1;

// Puts and reads objects of namespace `ns` through a storage adapter.
struct StorageClient {
  std::unique_ptr<v1::StorageService::Stub> stub;
  std::string ns;
  bool Put(const std::string& key, const std::string& bytes) { return PutThroughStorage(*stub, ns, key, bytes); }
  bool Get(const std::string& key) {
    auto ctx = server::MakeClientContext(absl::Seconds(30));
    v1::GetObjectRequest r;
    r.set_namespace_(ns);
    r.set_key(key);
    auto reader = stub->GetObject(ctx.get(), r);
    v1::GetObjectResponse resp;
    while (reader->Read(&resp)) {
    }
    return reader->Finish().ok();
  }
};

// A storage adapter on local disk and a classification service that prices
// the local backend as AWS and lets objects move from their first day, on a
// scratch database; `client` writes under a fresh namespace.
struct PricedStack {
  std::unique_ptr<testing::ScratchDatabase> db;
  Service storage;
  Service classification;
  std::unique_ptr<StorageClient> client;
  std::unique_ptr<cv1::ClassificationService::Stub> stub;

  void Start(const std::string& ns_prefix, std::map<std::string, std::string> env = {}) {
    auto scratch = testing::ScratchDatabase::Create();
    ASSERT_TRUE(scratch.ok()) << scratch.status();
    db = std::move(*scratch);
    std::string data_dir = ::testing::TempDir() + "/" + ns_prefix + core::NewId();
    storage = StartService("storage-adapter", db->url(),
                           {{"CLOUDFLUX_DATA_DIR", data_dir}, {"CLOUDFLUX_READ_EVENT_INTERVAL", "100ms"}});
    // Reads may wait hours (an archive's restore) and any saving moves: on
    // day 0 a read a month is still expected, and only then does a colder
    // class that a tier stands for pay for a never-read object.
    env.insert({{"CLOUDFLUX_BACKEND_CLOUDS", "local=aws"},
                {"CLOUDFLUX_MIN_OBSERVED_DAYS", "0"},
                {"CLOUDFLUX_DEFAULT_MAX_LATENCY_MS", "43200000"},
                {"CLOUDFLUX_HYSTERESIS", "0"}});
    classification = StartService("classification", db->url(), env);
    ASSERT_TRUE(WaitForHealth(storage, HealthCheckResponse::SERVING)) << storage.process->Output();
    ASSERT_TRUE(WaitForHealth(classification, HealthCheckResponse::SERVING))
        << classification.process->Output();
    client = std::make_unique<StorageClient>(StorageClient{
        v1::StorageService::NewStub(server::MakeChannel(storage.target())), ns_prefix + core::NewId().substr(24)});
    stub = cv1::ClassificationService::NewStub(server::MakeChannel(classification.target()));
  }

  absl::StatusOr<cv1::Classification> Classify(const std::string& key, bool publish = false,
                                               int64_t latency = 0) {
    cv1::ClassifyRequest req;
    req.set_namespace_(client->ns);
    req.set_key(key);
    req.set_publish(publish);
    req.set_max_first_byte_latency_ms(latency);
    cv1::Classification out;
    grpc::Status s = stub->Classify(server::MakeClientContext(absl::Seconds(10)).get(), req, &out);
    if (!s.ok()) return server::FromGrpcStatus(s);
    return out;
  }

  // A consumer handing `seen` each TierDecided event of this stack's namespace.
  std::unique_ptr<events::Consumer> Decisions(std::function<void(const cv1::TierDecided&)> seen) {
    events::ConsumerOptions co;
    co.kafka.brokers = *testing::TestKafkaBootstrap();
    co.group_id = "decisions-" + core::NewId();
    co.topics = {"cloudflux.classification.decisions"};
    co.session_timeout = absl::Seconds(3);
    auto consumer = events::Consumer::Create(co, [this, seen](const events::ConsumedMessage& m) {
      auto e = events::ParseEnvelope(m);
      cv1::TierDecided d;
      if (e.ok() && e->payload().UnpackTo(&d) && d.namespace_() == client->ns) seen(d);
      return absl::OkStatus();
    });
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    return consumer.ok() ? std::move(*consumer) : nullptr;
  }

  // Both services stop cleanly on SIGTERM.
  void Stop() {
    classification.process->Signal(SIGTERM);
    EXPECT_EQ(classification.process->Wait(absl::Seconds(20)), 0);
    storage.process->Signal(SIGTERM);
    EXPECT_EQ(storage.process->Wait(absl::Seconds(20)), 0);
  }
};

TEST(ClassificationStats, ReadsThroughStorageAreCountedOnceEach) {
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  std::string data_dir = ::testing::TempDir() + "/classification-" + core::NewId();
  Service storage = StartService("storage-adapter", (*db)->url(),
                                 {{"CLOUDFLUX_DATA_DIR", data_dir}, {"CLOUDFLUX_READ_EVENT_INTERVAL", "100ms"}});
  Service classification =
      StartService("classification", (*db)->url());  // a consumer group of its own (StartServiceBinary)
  ASSERT_TRUE(WaitForHealth(storage, HealthCheckResponse::SERVING)) << storage.process->Output();
  ASSERT_TRUE(WaitForHealth(classification, HealthCheckResponse::SERVING)) << classification.process->Output();
  StorageClient client{v1::StorageService::NewStub(server::MakeChannel(storage.target())),
                       "cls-" + core::NewId().substr(24)};
  const std::string& ns = client.ns;
  auto get = [&](const std::string& key) { return client.Get(key); };
  ASSERT_TRUE(client.Put("hot", std::string(1000, 'h')));
  ASSERT_TRUE(client.Put("cold", std::string(5000, 'c')));
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(get("hot"));

  auto pool = db::Pool::Create({.url = (*db)->url(), .max_connections = 1});
  ASSERT_TRUE(pool.ok());
  auto stats = [&](const std::string& key) -> std::pair<int64_t, int64_t> {
    auto r = (*pool)->Exec("SELECT reads_total, size FROM classification.object_stats WHERE namespace = $1 AND "
                           "key = $2",
                           {ns, key});
    if (!r.ok() || r->empty()) return {-1, -1};
    return {(*r)[0].Int(0), (*r)[0].Int(1)};
  };
  EXPECT_TRUE(WaitFor([&] { return stats("hot").first == 12 && stats("cold").second == 5000; },
                      absl::Seconds(30)))
      << "hot " << stats("hot").first << " cold " << stats("cold").second << "\n"
      << classification.process->Output();
  EXPECT_EQ(stats("hot").second, 1000);
  EXPECT_EQ(stats("cold").first, 0);
  {
    // Without --backend_clouds the local backend's prices are unknown.
    auto classify = cloudflux::classification::v1::ClassificationService::NewStub(
        server::MakeChannel(classification.target()));
    cloudflux::classification::v1::ClassifyRequest req;
    req.set_namespace_(ns);
    req.set_key("hot");
    cloudflux::classification::v1::Classification out;
    EXPECT_EQ(classify->Classify(server::MakeClientContext(absl::Seconds(10)).get(), req, &out).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }

  // A restarted classification service re-reads from its committed offsets
  // (at least once); the counts must not move.
  classification.process->Signal(SIGKILL);
  classification.process->Wait(absl::Seconds(10));
  Service again = StartService("classification", (*db)->url(),
                               {{"CLOUDFLUX_STATS_GROUP", "test-" + core::NewId()}});  // a new group replays all
  ASSERT_TRUE(WaitForHealth(again, HealthCheckResponse::SERVING));
  // The storage adapter's relay numbers its events in streams: the ingest
  // keeps its position per partition and stream, no row per event.
  auto position = [&] {
    auto r = (*pool)->Exec("SELECT coalesce(sum(last_seq), 0) FROM classification.stream_positions "
                           "WHERE consumer = 'access-stats'");
    return r.ok() ? (*r)[0].Int(0) : -1;
  };
  auto processed = [&] {
    auto r = (*pool)->Exec("SELECT count(*) FROM classification.processed_events");
    return r.ok() ? (*r)[0].Int(0) : -1;
  };
  int64_t before = position();
  EXPECT_GT(before, 0);
  ASSERT_TRUE(get("hot"));
  EXPECT_TRUE(WaitFor([&] { return stats("hot").first == 13; }, absl::Seconds(30)))
      << "replayed events are not counted again; the new read is";
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(stats("hot").first, 13);
  EXPECT_GT(position(), before);
  EXPECT_EQ(processed(), 0) << "relayed events need no event-id rows";
  // What the ingest did, on the metrics endpoint: the replay as duplicates,
  // the new read applied, nothing left behind.
  auto metric = [&](const std::string& series) { return MetricValue(Metrics(again), series); };
  EXPECT_TRUE(WaitFor([&] { return metric("cloudflux_classification_ingest_lag") == 0; }, absl::Seconds(10)))
      << Metrics(again);
  EXPECT_GE(metric("cloudflux_classification_ingest_events_total{outcome=\"duplicate\"}"), 2);
  EXPECT_GE(metric("cloudflux_classification_ingest_events_total{outcome=\"applied\"}"), 1);
  EXPECT_GE(metric("cloudflux_classification_ingest_batches_total"), 1);
  EXPECT_EQ(metric("cloudflux_classification_ingest_batch_failures_total"), 0);
  again.process->Signal(SIGTERM);
  EXPECT_EQ(again.process->Wait(absl::Seconds(20)), 0);
  storage.process->Signal(SIGTERM);
  EXPECT_EQ(storage.process->Wait(absl::Seconds(20)), 0);
}

TEST(Classification, ColdObjectsGetATierDecisionAndHotOnesDoNot) {
  PricedStack stack;
  ASSERT_NO_FATAL_FAILURE(stack.Start("cls-"));
  StorageClient& client = *stack.client;
  const std::string object(8 << 20, 'x');
  ASSERT_TRUE(client.Put("cold", object));
  ASSERT_TRUE(client.Put("hot", object));
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(client.Get("hot"));
  auto call = [&](const std::string& key, bool publish, int64_t latency = 0) {
    return stack.Classify(key, publish, latency);
  };
  // Wait until the reads have been counted.
  absl::StatusOr<cv1::Classification> hot;
  ASSERT_TRUE(WaitFor([&] {
    // Not published while waiting: before its reads are counted the hot
    // object looks like any quiet one.
    hot = call("hot", false);
    // The two objects' events may be ingested by different consumers.
    return hot.ok() && hot->expected_reads() > 10 && call("cold", false).ok();
  }, absl::Seconds(30))) << (hot.ok() ? hot->DebugString() : hot.status().ToString());
  hot = call("hot", true);
  ASSERT_TRUE(hot.ok()) << hot.status();
  EXPECT_FALSE(hot->move()) << hot->reason();
  EXPECT_EQ(hot->storage_class(), "STANDARD");
  EXPECT_FALSE(hot->published());

  auto cold = call("cold", true);
  ASSERT_TRUE(cold.ok()) << cold.status();
  EXPECT_TRUE(cold->move()) << cold->reason();
  EXPECT_NE(cold->storage_class(), "STANDARD");
  EXPECT_LT(cold->target_monthly_cost(), cold->current_monthly_cost());
  EXPECT_GT(cold->saving(), 0);
  EXPECT_TRUE(cold->published());
  ASSERT_GE(cold->candidates_size(), 2);
  EXPECT_FALSE(cold->reason().empty());
  for (const auto& c : cold->candidates()) {
    EXPECT_EQ(c.cloud(), cloudflux::common::v1::CLOUD_PROVIDER_AWS);
    EXPECT_GE(c.total_cost(), cold->candidates(0).total_cost()) << "cheapest first";
  }

  // Bad input changes nothing.
  EXPECT_EQ(call("missing", true).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(call("", true).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(call("cold", true, -5).status().code(), absl::StatusCode::kInvalidArgument);

  // TierDecided on Kafka for the cold object, none for the hot one.
  int cold_decisions = 0, hot_decisions = 0;
  auto consumer = stack.Decisions([&](const cv1::TierDecided& d) {
    if (d.key() == "cold") {
      ++cold_decisions;
      EXPECT_EQ(d.from_storage_class(), "STANDARD");
      EXPECT_EQ(d.to_storage_class(), cold->storage_class());
      EXPECT_GT(d.expected_saving(), 0);
    }
    if (d.key() == "hot") ++hot_decisions;
  });
  ASSERT_NE(consumer, nullptr);
  EXPECT_TRUE(WaitFor([&] {
    (void)consumer->PollOnce(absl::Milliseconds(100));
    return cold_decisions == 1;
  }, absl::Seconds(30), absl::ZeroDuration()));
  for (int i = 0; i < 10; ++i) (void)consumer->PollOnce(absl::Milliseconds(100));
  EXPECT_EQ(hot_decisions, 0);
  EXPECT_EQ(cold_decisions, 1);
  stack.Stop();
}

TEST(Classification, PoliciesAreValidatedStoredAndSteerDecisions) {
  PricedStack stack;
  ASSERT_NO_FATAL_FAILURE(stack.Start("pol-"));
  StorageClient& client = *stack.client;
  const std::string object(8 << 20, 'x');
  ASSERT_TRUE(client.Put("keep/a", object));
  ASSERT_TRUE(client.Put("archive/b", object));
  auto& stub = stack.stub;
  auto ctx = [] { return server::MakeClientContext(absl::Seconds(10)); };
  auto create = [&](const cv1::Policy& p) -> absl::StatusOr<cv1::Policy> {
    cv1::Policy out;
    grpc::Status s = stub->CreatePolicy(ctx().get(), p, &out);
    if (!s.ok()) return server::FromGrpcStatus(s);
    return out;
  };
  auto classify = [&](const std::string& key) { return stack.Classify(key); };
  auto list = [&](int page_size, const std::string& token) {
    cv1::ListPoliciesRequest req;
    req.set_namespace_(client.ns);
    req.mutable_page()->set_page_size(page_size);
    req.mutable_page()->set_page_token(token);
    cv1::ListPoliciesResponse out;
    EXPECT_TRUE(stub->ListPolicies(ctx().get(), req, &out).ok());
    return out;
  };
  using cloudflux::common::v1::STORAGE_TIER_ARCHIVE;
  using cloudflux::common::v1::STORAGE_TIER_COLD;
  using cloudflux::common::v1::STORAGE_TIER_HOT;
  auto policy = [&](const std::string& prefix) {
    cv1::Policy p;
    p.set_namespace_(client.ns);
    p.set_prefix(prefix);
    return p;
  };

  // Bad and contradictory policies are refused, each saying why, and
  // nothing is stored.
  cv1::Policy bad = policy("x/");
  bad.set_namespace_("");
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  // Names with a newline, DEL, '%', a NUL or a capital are no namespace or
  // prefix of any object: refused, not stored.
  for (const auto& [ns, prefix] : std::vector<std::pair<std::string, std::string>>{
           {"a%b", "x/"}, {"a\nb", "x/"}, {"Upper", "x/"}, {client.ns, "x\ny/"},
           {client.ns, "x\x7f/"}, {client.ns, std::string("x\0y", 3)}}) {
    bad = policy(prefix);
    bad.set_namespace_(ns);
    EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument) << ns << " " << prefix;
  }
  {
    // A page token that decodes to bytes that are no UTF-8.
    cv1::ListPoliciesRequest req;
    req.set_namespace_(client.ns);
    req.mutable_page()->set_page_token("__4");
    cv1::ListPoliciesResponse out;
    EXPECT_EQ(stub->ListPolicies(ctx().get(), req, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  bad = policy("x/");
  bad.add_allowed_tiers(STORAGE_TIER_HOT);
  bad.set_pinned_tier(STORAGE_TIER_COLD);
  auto refused = create(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "not among allowed_tiers")) << refused.status();
  bad = policy("x/");
  bad.set_pinned_tier(STORAGE_TIER_COLD);
  bad.set_auto_tiering(false);
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = policy("x/");
  bad.add_allowed_tiers(STORAGE_TIER_ARCHIVE);
  bad.set_max_first_byte_latency_ms(1);
  refused = create(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "within 1 ms")) << refused.status();
  bad = policy("x/");
  bad.set_min_object_size(-1);
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = policy("x/");
  bad.add_allowed_clouds(static_cast<cloudflux::common::v1::CloudProvider>(99));
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = policy("x/");
  bad.set_monthly_cost_ceiling(-3);
  EXPECT_EQ(create(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(list(10, "").policies_size(), 0);

  // Without a policy the never-read objects move to a colder class (once
  // their ObjectCreated events are in).
  absl::StatusOr<cv1::Classification> before;
  ASSERT_TRUE(WaitFor([&] {
    before = classify("keep/a");
    return before.ok() && classify("archive/b").ok();
  }, absl::Seconds(30))) << before.status();
  EXPECT_TRUE(before->move()) << before->reason();
  EXPECT_EQ(before->policy(), "");

  // Auto-tiering off under keep/: no move, and the policy is named.
  cv1::Policy keep = policy("keep/");
  keep.set_auto_tiering(false);
  ASSERT_TRUE(create(keep).ok());
  EXPECT_EQ(create(keep).status().code(), absl::StatusCode::kAlreadyExists);
  auto kept = classify("keep/a");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_FALSE(kept->move()) << kept->reason();
  EXPECT_EQ(kept->policy(), client.ns + "/keep/");

  // A longer prefix wins: archive/ pinned to ARCHIVE (its latency allowed).
  cv1::Policy whole = policy("");
  whole.set_auto_tiering(false);
  ASSERT_TRUE(create(whole).ok());
  cv1::Policy archive = policy("archive/");
  archive.set_pinned_tier(STORAGE_TIER_ARCHIVE);
  archive.set_max_first_byte_latency_ms(48LL * 3600 * 1000);
  ASSERT_TRUE(create(archive).ok());
  auto archived = classify("archive/b");
  ASSERT_TRUE(archived.ok()) << archived.status();
  EXPECT_EQ(archived->tier(), STORAGE_TIER_ARCHIVE) << archived->reason();
  EXPECT_TRUE(archived->move());
  EXPECT_EQ(archived->policy(), client.ns + "/archive/");

  // Update, get, page through, delete.
  keep.set_auto_tiering(true);
  cv1::Policy updated;
  ASSERT_TRUE(stub->UpdatePolicy(ctx().get(), keep, &updated).ok());
  EXPECT_GT(updated.updated_at_micros(), 0);
  auto moved = classify("keep/a");
  ASSERT_TRUE(moved.ok());
  EXPECT_TRUE(moved->move()) << moved->reason();
  cv1::Policy missing = policy("nope/");
  EXPECT_EQ(stub->UpdatePolicy(ctx().get(), missing, &updated).error_code(), grpc::StatusCode::NOT_FOUND);
  cv1::PolicyRef ref;
  ref.set_namespace_(client.ns);
  ref.set_prefix("keep/");
  cv1::Policy got;
  ASSERT_TRUE(stub->GetPolicy(ctx().get(), ref, &got).ok());
  EXPECT_TRUE(got.has_auto_tiering() && got.auto_tiering());
  std::vector<std::string> prefixes;
  std::string token;
  do {
    auto page = list(2, token);
    for (const auto& p : page.policies()) prefixes.push_back(p.prefix());
    token = page.page().next_page_token();
  } while (!token.empty() && prefixes.size() < 10);
  EXPECT_EQ(prefixes, (std::vector<std::string>{"", "archive/", "keep/"}));
  cv1::DeletePolicyResponse deleted;
  ASSERT_TRUE(stub->DeletePolicy(ctx().get(), ref, &deleted).ok());
  EXPECT_EQ(stub->DeletePolicy(ctx().get(), ref, &deleted).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(stub->GetPolicy(ctx().get(), ref, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  auto after = classify("keep/a");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->policy(), client.ns + "/") << "the namespace-wide policy applies now";
  EXPECT_FALSE(after->move());
  stack.Stop();
}

TEST(Classification, BatchesAnalyticsAndSweepsCoverWholeNamespaces) {
  PricedStack stack;
  // "archive" is a second backend, priced as GCP (the storage adapter need
  // not have it to be a target).
  ASSERT_NO_FATAL_FAILURE(stack.Start(
      "batch-", {{"CLOUDFLUX_SWEEP_INTERVAL", "1s"}, {"CLOUDFLUX_BACKEND_CLOUDS", "local=aws,archive=gcp"}}));
  StorageClient& client = *stack.client;
  const std::string object(8 << 20, 'x');
  ASSERT_TRUE(client.Put("logs/a", object));
  ASSERT_TRUE(client.Put("logs/b", object));
  ASSERT_TRUE(client.Put("hot", object));
  ASSERT_TRUE(client.Put("tiny", std::string(1024, 't')));
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(client.Get("hot"));
  absl::StatusOr<cv1::Classification> hot;
  ASSERT_TRUE(WaitFor([&] {
    hot = stack.Classify("hot");
    return hot.ok() && hot->expected_reads() > 10 && stack.Classify("tiny").ok() &&
           stack.Classify("logs/a").ok() && stack.Classify("logs/b").ok();
  }, absl::Seconds(30)));
  std::map<std::string, cv1::Classification> single;
  for (const std::string key : {"logs/a", "logs/b", "hot", "tiny"}) {
    auto c = stack.Classify(key);
    ASSERT_TRUE(c.ok()) << key << ": " << c.status();
    single[key] = *c;
  }
  ASSERT_TRUE(single["logs/a"].move());
  ASSERT_FALSE(single["hot"].move());
  auto rpc = [&](auto method, const auto& request, auto* response) {
    return server::FromGrpcStatus(
        ((*stack.stub).*method)(server::MakeClientContext(absl::Seconds(10)).get(), request, response));
  };

  // Listed objects: the same decisions as one by one; unknown ones reported.
  cv1::ClassifyBatchRequest listed;
  for (const std::string key : {"logs/a", "hot", "missing"}) {
    cv1::ObjectKey* o = listed.add_objects();
    o->set_namespace_(client.ns);
    o->set_key(key);
  }
  cv1::ClassifyBatchResponse batch;
  ASSERT_TRUE(rpc(&cv1::ClassificationService::Stub::ClassifyBatch, listed, &batch).ok());
  ASSERT_EQ(batch.classifications_size(), 2);
  EXPECT_EQ(batch.classifications(0).key(), "logs/a");
  EXPECT_EQ(batch.classifications(0).storage_class(), single["logs/a"].storage_class());
  EXPECT_NEAR(batch.classifications(0).saving(), single["logs/a"].saving(), 1e-9);
  EXPECT_EQ(batch.classifications(0).candidates_size(), 0) << "candidates only when asked";
  EXPECT_EQ(batch.classifications(1).key(), "hot");
  EXPECT_FALSE(batch.classifications(1).move());
  ASSERT_EQ(batch.errors_size(), 1);
  EXPECT_EQ(batch.errors(0).key(), "missing");
  EXPECT_EQ(batch.errors(0).code(), "NOT_FOUND");
  EXPECT_EQ(batch.moves(), 1);
  EXPECT_NEAR(batch.total_saving(), single["logs/a"].saving(), 1e-9);
  EXPECT_EQ(batch.published(), 0);

  // A whole namespace, two a page, in key order; a prefix narrows it.
  std::vector<std::string> keys;
  cv1::ClassifyBatchRequest paged;
  paged.set_namespace_(client.ns);
  paged.set_include_candidates(true);
  paged.mutable_page()->set_page_size(2);
  int pages = 0;
  do {
    ASSERT_TRUE(rpc(&cv1::ClassificationService::Stub::ClassifyBatch, paged, &batch).ok());
    for (const auto& c : batch.classifications()) {
      keys.push_back(c.key());
      EXPECT_GT(c.candidates_size(), 1);
      EXPECT_EQ(c.move(), single[c.key()].move()) << c.key();
    }
    paged.mutable_page()->set_page_token(batch.page().next_page_token());
    ++pages;
  } while (!batch.page().next_page_token().empty() && pages < 10);
  EXPECT_EQ(keys, (std::vector<std::string>{"hot", "logs/a", "logs/b", "tiny"}));
  EXPECT_EQ(pages, 2);
  cv1::ClassifyBatchRequest logs;
  logs.set_namespace_(client.ns);
  logs.set_prefix("logs/");
  ASSERT_TRUE(rpc(&cv1::ClassificationService::Stub::ClassifyBatch, logs, &batch).ok());
  EXPECT_EQ(batch.classifications_size(), 2);
  EXPECT_EQ(batch.moves(), 2);

  // Bad batches change nothing.
  cv1::ClassifyBatchRequest both = listed;
  both.set_namespace_(client.ns);
  cv1::ClassifyBatchRequest too_many;
  for (int i = 0; i < 1001; ++i) *too_many.add_objects() = listed.objects(0);
  cv1::ClassifyBatchRequest negative = logs;
  negative.set_max_first_byte_latency_ms(-1);
  negative.set_publish(true);
  cv1::ClassifyBatchRequest bad_token = logs;
  bad_token.mutable_page()->set_page_token("%%%");
  const cv1::ClassifyBatchRequest empty;
  for (const cv1::ClassifyBatchRequest* bad :
       std::vector<const cv1::ClassifyBatchRequest*>{&both, &too_many, &negative, &bad_token, &empty}) {
    EXPECT_EQ(rpc(&cv1::ClassificationService::Stub::ClassifyBatch, *bad, &batch).code(),
              absl::StatusCode::kInvalidArgument);
  }

  // Analytics: one cloud x tier cell, costs that add up to the single decisions'.
  cv1::AnalyticsRequest scope;
  scope.set_namespace_(client.ns);
  cv1::Distribution dist;
  ASSERT_TRUE(rpc(&cv1::ClassificationService::Stub::GetDistribution, scope, &dist).ok());
  ASSERT_EQ(dist.cells_size(), 1) << dist.DebugString();
  EXPECT_EQ(dist.cells(0).cloud(), cloudflux::common::v1::CLOUD_PROVIDER_AWS);
  EXPECT_EQ(dist.cells(0).storage_class(), "STANDARD");
  EXPECT_EQ(dist.cells(0).backend(), "local");
  EXPECT_EQ(dist.cells(0).objects(), 4);
  EXPECT_EQ(dist.bytes(), 3 * int64_t{8 << 20} + 1024);
  scope.set_prefix("logs/");
  ASSERT_TRUE(rpc(&cv1::ClassificationService::Stub::GetDistribution, scope, &dist).ok());
  EXPECT_EQ(dist.objects(), 2);
  scope.clear_prefix();

  double current_total = 0, saving_total = 0, best_saving = 0;
  for (auto& [key, c] : single) {
    current_total += c.current_monthly_cost();
    if (c.move()) saving_total += c.saving();
    best_saving = std::max(best_saving, c.move() ? c.saving() : 0.0);
  }
  cv1::CostBreakdown costs;
  ASSERT_TRUE(rpc(&cv1::ClassificationService::Stub::GetCostBreakdown, scope, &costs).ok());
  ASSERT_EQ(costs.lines_size(), 1) << costs.DebugString();
  EXPECT_EQ(costs.lines(0).storage_class(), "STANDARD");
  EXPECT_EQ(costs.lines(0).objects(), 4);
  EXPECT_NEAR(costs.total().monthly_cost(), current_total, current_total * 1e-6);
  EXPECT_NEAR(costs.total().monthly_cost(), costs.total().storage_cost() + costs.total().request_cost() +
                                                costs.total().retrieval_cost(), 1e-12);
  EXPECT_GT(costs.total().storage_cost(), 0);
  EXPECT_EQ(costs.unpriced_objects(), 0);

  cv1::PotentialSavingsRequest savings_request;
  savings_request.set_namespace_(client.ns);
  savings_request.set_top_n(1);
  cv1::PotentialSavings savings;
  ASSERT_TRUE(rpc(&cv1::ClassificationService::Stub::GetPotentialSavings, savings_request, &savings).ok());
  EXPECT_EQ(savings.objects(), 4);
  EXPECT_EQ(savings.objects_to_move(), 2 + (single["tiny"].move() ? 1 : 0));
  EXPECT_NEAR(savings.current_monthly_cost(), current_total, current_total * 1e-6);
  EXPECT_LT(savings.target_monthly_cost(), savings.current_monthly_cost());
  EXPECT_NEAR(savings.saving(), saving_total, saving_total * 1e-6);
  EXPECT_GT(savings.move_cost(), 0);
  ASSERT_EQ(savings.top_size(), 1);
  EXPECT_NEAR(savings.top(0).saving(), best_saving, 1e-9);
  savings_request.set_top_n(5000);
  EXPECT_EQ(rpc(&cv1::ClassificationService::Stub::GetPotentialSavings, savings_request, &savings).code(),
            absl::StatusCode::kInvalidArgument);
  cv1::AnalyticsRequest prefix_only;
  prefix_only.set_prefix("logs/");
  EXPECT_EQ(rpc(&cv1::ClassificationService::Stub::GetCostBreakdown, prefix_only, &costs).code(),
            absl::StatusCode::kInvalidArgument);

  // The periodic sweep publishes each move once, however often it runs...
  std::map<std::string, int> decisions;
  auto consumer = stack.Decisions([&](const cv1::TierDecided& d) { ++decisions[d.key()]; });
  ASSERT_NE(consumer, nullptr);
  auto poll_for = [&](absl::Duration d) {
    absl::Time until = absl::Now() + d;
    while (absl::Now() < until) (void)consumer->PollOnce(absl::Milliseconds(100));
  };
  ASSERT_TRUE(WaitFor([&] {
    (void)consumer->PollOnce(absl::Milliseconds(100));
    return decisions["logs/a"] == 1 && decisions["logs/b"] == 1;
  }, absl::Seconds(30), absl::ZeroDuration()));
  poll_for(absl::Seconds(3));  // three more sweeps
  EXPECT_EQ(decisions["logs/a"], 1);
  EXPECT_EQ(decisions["logs/b"], 1);
  EXPECT_EQ(decisions["tiny"], single["tiny"].move() ? 1 : 0);
  // ...while an explicit batch publishes what it is asked to, in one go.
  logs.set_publish(true);
  ASSERT_TRUE(rpc(&cv1::ClassificationService::Stub::ClassifyBatch, logs, &batch).ok());
  EXPECT_EQ(batch.published(), 2);
  EXPECT_TRUE(batch.classifications(0).published());
  ASSERT_TRUE(WaitFor([&] {
    (void)consumer->PollOnce(absl::Milliseconds(100));
    return decisions["logs/a"] == 2 && decisions["logs/b"] == 2;
  }, absl::Seconds(30), absl::ZeroDuration()));

  // Other clouds are candidates only where a policy allows them.
  auto clouds_of = [](const cv1::Classification& c) {
    std::set<int> clouds;
    for (const auto& x : c.candidates()) clouds.insert(x.cloud());
    return clouds;
  };
  EXPECT_EQ(clouds_of(single["logs/a"]), std::set<int>{cloudflux::common::v1::CLOUD_PROVIDER_AWS});
  EXPECT_EQ(single["logs/a"].target_backend(), "local");
  cv1::Policy cross;
  cross.set_namespace_(client.ns);
  cross.set_prefix("logs/");
  cross.add_allowed_clouds(cloudflux::common::v1::CLOUD_PROVIDER_GCP);
  cross.set_monthly_cost_ceiling(1e-9);
  cross.set_measured_objects(99);  // the service's to set, ignored
  cv1::Policy stored;
  ASSERT_TRUE(rpc(&cv1::ClassificationService::Stub::CreatePolicy, cross, &stored).ok());
  auto across = stack.Classify("logs/a");
  ASSERT_TRUE(across.ok()) << across.status();
  EXPECT_EQ(clouds_of(*across), (std::set<int>{cloudflux::common::v1::CLOUD_PROVIDER_AWS,
                                               cloudflux::common::v1::CLOUD_PROVIDER_GCP}));
  for (const auto& x : across->candidates()) {
    if (x.cloud() == cloudflux::common::v1::CLOUD_PROVIDER_GCP) EXPECT_GT(x.move_cost(), 0) << "egress";
  }
  EXPECT_LE(across->candidates(0).total_cost(), single["logs/a"].candidates(0).total_cost() + 1e-12);
  EXPECT_EQ(across->target_backend(),
            across->cloud() == cloudflux::common::v1::CLOUD_PROVIDER_GCP ? "archive" : "local");
  EXPECT_EQ(stored.measured_objects(), 0);
  EXPECT_EQ(across->reason().find("cost ceiling"), std::string::npos) << "not measured yet";

  // The sweep measures what the policy's objects cost; over the ceiling,
  // decisions under it drop the hysteresis margin and say so.
  cv1::PolicyRef ref;
  ref.set_namespace_(client.ns);
  ref.set_prefix("logs/");
  ASSERT_TRUE(WaitFor([&] {
    return rpc(&cv1::ClassificationService::Stub::GetPolicy, ref, &stored).ok() && stored.measured_objects() == 2;
  }, absl::Seconds(20))) << stored.DebugString();
  const double logs_cost = single["logs/a"].current_monthly_cost() + single["logs/b"].current_monthly_cost();
  EXPECT_NEAR(stored.measured_monthly_cost(), logs_cost, logs_cost * 1e-6);
  EXPECT_GT(stored.measured_at_micros(), 0);
  across = stack.Classify("logs/a");
  ASSERT_TRUE(across.ok());
  EXPECT_NE(across->reason().find("over its cost ceiling"), std::string::npos) << across->reason();
  auto hot_after = stack.Classify("hot");
  ASSERT_TRUE(hot_after.ok());
  EXPECT_EQ(clouds_of(*hot_after), std::set<int>{cloudflux::common::v1::CLOUD_PROVIDER_AWS})
      << "outside the policy's prefix";
  stack.Stop();
}

}  // namespace
}  // namespace cloudflux
