// The classification service's access statistics end to end: objects put
// and read through the storage-adapter binary, their events through the dev
// broker, counted by the classification binary in PostgreSQL.
#include <gtest/gtest.h>
#include <signal.h>

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
  bool Put(const std::string& key, const std::string& bytes) {
    auto ctx = server::MakeClientContext(absl::Seconds(30));
    v1::ObjectInfo info;
    auto w = stub->PutObject(ctx.get(), &info);
    v1::PutObjectRequest h;
    h.mutable_header()->set_namespace_(ns);
    h.mutable_header()->set_key(key);
    w->Write(h);
    v1::PutObjectRequest c;
    c.set_chunk(bytes);
    w->Write(c);
    w->WritesDone();
    return w->Finish().ok();
  }
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

  void Start(const std::string& ns_prefix) {
    auto scratch = testing::ScratchDatabase::Create();
    ASSERT_TRUE(scratch.ok()) << scratch.status();
    db = std::move(*scratch);
    std::string data_dir = ::testing::TempDir() + "/" + ns_prefix + core::NewId();
    storage = StartService("storage-adapter", db->url(),
                           {{"CLOUDFLUX_DATA_DIR", data_dir}, {"CLOUDFLUX_READ_EVENT_INTERVAL", "100ms"}});
    classification = StartService("classification", db->url(),
                                  {{"CLOUDFLUX_STATS_GROUP", "test-" + core::NewId()},
                                   {"CLOUDFLUX_BACKEND_CLOUDS", "local=aws"},
                                   {"CLOUDFLUX_MIN_OBSERVED_DAYS", "0"}});
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
      StartService("classification", (*db)->url(), {{"CLOUDFLUX_STATS_GROUP", "test-" + core::NewId()}});
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
  auto processed = [&] {
    auto r = (*pool)->Exec("SELECT count(*) FROM classification.processed_events");
    return r.ok() ? (*r)[0].Int(0) : -1;
  };
  int64_t before = processed();
  ASSERT_TRUE(get("hot"));
  EXPECT_TRUE(WaitFor([&] { return stats("hot").first == 13; }, absl::Seconds(30)))
      << "replayed events are not counted again; the new read is";
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(stats("hot").first, 13);
  EXPECT_GT(processed(), before);
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
    hot = call("hot", true);
    return hot.ok() && hot->expected_reads() > 10;
  }, absl::Seconds(30))) << (hot.ok() ? hot->DebugString() : hot.status().ToString());
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
  events::ConsumerOptions co;
  co.kafka.brokers = *testing::TestKafkaBootstrap();
  co.group_id = "classify-test-" + core::NewId();
  co.topics = {"cloudflux.classification.decisions"};
  int cold_decisions = 0, hot_decisions = 0;
  auto consumer = events::Consumer::Create(co, [&](const events::ConsumedMessage& m) {
    auto e = events::ParseEnvelope(m);
    if (!e.ok()) return absl::OkStatus();
    cv1::TierDecided d;
    if (!e->payload().UnpackTo(&d) || d.namespace_() != client.ns) return absl::OkStatus();
    if (d.key() == "cold") {
      ++cold_decisions;
      EXPECT_EQ(d.from_storage_class(), "STANDARD");
      EXPECT_EQ(d.to_storage_class(), cold->storage_class());
      EXPECT_GT(d.expected_saving(), 0);
    }
    if (d.key() == "hot") ++hot_decisions;
    return absl::OkStatus();
  });
  ASSERT_TRUE(consumer.ok());
  EXPECT_TRUE(WaitFor([&] {
    (void)(*consumer)->PollOnce(absl::Milliseconds(100));
    return cold_decisions == 1;
  }, absl::Seconds(30), absl::ZeroDuration()));
  for (int i = 0; i < 10; ++i) (void)(*consumer)->PollOnce(absl::Milliseconds(100));
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

}  // namespace
}  // namespace cloudflux
