#include <gtest/gtest.h>

#include <fstream>
#include <signal.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "cloudflux/common/v1/common.pb.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/metrics/metrics.h"
#include "cloudflux/testing/testing.h"

namespace cloudflux::events {
namespace {

using cloudflux::common::v1::ObjectRef;

std::string Brokers() {
  auto b = testing::TestKafkaBootstrap();
  EXPECT_TRUE(b.ok()) << b.status();
  return b.value_or("");
}

std::string UniqueTopic(const std::string& prefix) { return prefix + "-" + core::NewId(); }

std::unique_ptr<Consumer> MakeConsumer(const std::string& group, const std::string& topic,
                                       Consumer::Handler handler, int max_attempts = 3) {
  ConsumerOptions o;
  o.kafka.brokers = Brokers();
  o.group_id = group;
  o.topics = {topic};
  o.max_attempts = max_attempts;
  o.retry_backoff = absl::Milliseconds(10);
  o.session_timeout = absl::Seconds(3);  // the dev broker's rebalances wait ~this long
  auto c = Consumer::Create(o, std::move(handler));
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(*c);
}

// Polls `consumer` until `done` holds or the timeout passes.
bool PollUntil(Consumer& consumer, const std::function<bool()>& done,
               absl::Duration timeout = absl::Seconds(30)) {
  return testing::WaitFor(
      [&] {
        (void)consumer.PollOnce(absl::Milliseconds(100));
        return done();
      },
      timeout, absl::ZeroDuration());
}

TEST(Kafka, ProducerAndConsumerRoundTripWithHeaders) {
  auto producer = Producer::Create({.brokers = Brokers()});
  ASSERT_TRUE(producer.ok()) << producer.status();
  ASSERT_TRUE((*producer)->Ping(absl::Seconds(5)).ok());
  std::string topic = UniqueTopic("roundtrip");
  std::vector<Message> batch;
  for (int i = 0; i < 20; ++i) {
    batch.push_back({topic, "key-" + std::to_string(i % 3), "value-" + std::to_string(i),
                     {{"h", std::to_string(i)}}});
  }
  ASSERT_TRUE((*producer)->SendAll(batch, absl::Seconds(10)).ok());

  std::map<std::string, std::vector<std::string>> by_key;
  auto consumer = MakeConsumer("roundtrip-" + core::NewId(), topic, [&](const ConsumedMessage& m) {
    EXPECT_EQ(m.Header("h"), m.value.substr(6));
    by_key[m.key].push_back(m.value);
    return absl::OkStatus();
  });
  ASSERT_TRUE(PollUntil(*consumer, [&] {
    size_t n = 0;
    for (auto& [k, v] : by_key) n += v.size();
    return n == 20;
  }));
  // One key's messages stay in order.
  EXPECT_EQ(by_key["key-0"].front(), "value-0");
  EXPECT_EQ(by_key["key-0"].back(), "value-18");

  // Drain takes everything waiting in one call, however much there is.
  batch.clear();
  for (int i = 0; i < 500; ++i) batch.push_back({topic, "key-" + std::to_string(i % 3), "value-x", {{"h", "x"}}});
  ASSERT_TRUE((*producer)->SendAll(batch, absl::Seconds(10)).ok());
  auto drained = consumer->Drain(absl::Seconds(2));
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(*drained, 500);
  EXPECT_EQ(consumer->Drain(absl::Milliseconds(200)).value_or(-1), 0);
}

// A fatal producer error (librdkafka's gapless guarantee makes a possible
// gap one) leaves the handle unusable: the send that meets it fails, the
// next one goes through a new handle.
TEST(Kafka, AProducerRecreatesItselfAfterAFatalError) {
  auto producer = Producer::Create({.brokers = Brokers()});
  ASSERT_TRUE(producer.ok()) << producer.status();
  std::string topic = UniqueTopic("fatal");
  ASSERT_TRUE((*producer)->Send({.topic = topic, .key = "k", .value = "before"}, absl::Seconds(10)).ok());
  (*producer)->InjectFatalErrorForTest("injected by the test");
  absl::Status failed = (*producer)->Send({.topic = topic, .key = "k", .value = "lost"}, absl::Seconds(10));
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_TRUE(absl::StrContains(failed.message(), "injected by the test")) << failed;
  absl::Status after = (*producer)->Send({.topic = topic, .key = "k", .value = "after"}, absl::Seconds(10));
  EXPECT_TRUE(after.ok()) << after;
}

TEST(KafkaProperties, LoadFromAFileAndKeepSecretsOutOfErrors) {
  const std::string path = ::testing::TempDir() + "/kafka-" + core::NewId() + ".properties";
  std::ofstream(path) << "# TLS and SASL for the cluster\n\n  security.protocol = sasl_ssl \n"
                         "sasl.mechanisms=SCRAM-SHA-512\nsasl.password=pa=ss\n";
  auto props = LoadKafkaProperties(path);
  ASSERT_TRUE(props.ok()) << props.status();
  EXPECT_EQ(*props, (std::map<std::string, std::string>{{"security.protocol", "sasl_ssl"},
                                                        {"sasl.mechanisms", "SCRAM-SHA-512"},
                                                        {"sasl.password", "pa=ss"}}));
  std::ofstream(path) << "security.protocol=ssl\n=value\n";
  auto bad = LoadKafkaProperties(path);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(bad.status().message()).find("line 2"), std::string::npos) << bad.status();
  EXPECT_EQ(LoadKafkaProperties(path + ".missing").status().code(), absl::StatusCode::kNotFound);

  EXPECT_TRUE(IsSecretKafkaProperty("sasl.password"));
  EXPECT_TRUE(IsSecretKafkaProperty("ssl.key.password"));
  EXPECT_TRUE(IsSecretKafkaProperty("sasl.oauthbearer.client.secret"));
  EXPECT_FALSE(IsSecretKafkaProperty("security.protocol"));
  // A rejected secret names the property, never its value; others say what is wrong.
  auto secret = Producer::Create({.brokers = Brokers(), .properties = {{"no.such.secret", "hunter2"}}});
  EXPECT_EQ(secret.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(secret.status().message()).find("no.such.secret"), std::string::npos);
  EXPECT_EQ(std::string(secret.status().message()).find("hunter2"), std::string::npos) << secret.status();
  auto plain = Producer::Create({.brokers = Brokers(), .properties = {{"security.protocol", "pigeon"}}});
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(plain.status().message()).find("pigeon"), std::string::npos) << plain.status();
}

TEST(Kafka, UnreachableBrokerFailsClearly) {
  auto producer = Producer::Create(
      {.brokers = "127.0.0.1:" + std::to_string(testing::PickFreePort())});
  ASSERT_TRUE(producer.ok());
  EXPECT_EQ((*producer)->Ping(absl::Milliseconds(500)).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Producer::Create({.brokers = ""}).status().code(), absl::StatusCode::kInvalidArgument);
  ConsumerOptions bad;
  bad.kafka.brokers = Brokers();
  bad.topics = {"x"};
  EXPECT_EQ(Consumer::Create(bad, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  bad.group_id = "g";
  bad.fetch_wait = absl::Milliseconds(-1);
  auto negative = Consumer::Create(bad, nullptr);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(negative.status().message()).find("fetch_wait"), std::string::npos);
  bad.fetch_wait = absl::Minutes(6);
  EXPECT_EQ(Consumer::Create(bad, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Kafka, LagCountsWhatTheMemberHasNotHandedOutYet) {
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  std::string topic = UniqueTopic("lag");
  std::vector<Message> ten;
  for (int i = 0; i < 10; ++i) ten.push_back({topic, "one-partition", std::to_string(i), {}});
  ASSERT_TRUE(producer->SendAll(ten, absl::Seconds(10)).ok());
  auto consumer = MakeConsumer("lag-" + core::NewId(), topic, nullptr);
  auto lag = consumer->Lag();
  ASSERT_TRUE(lag.ok()) << lag.status();
  EXPECT_EQ(*lag, 0) << "nothing assigned or read yet";
  // Takes batches of at most `per_poll` until `total` were handed out; the lag then.
  size_t got = 0;
  auto take_until = [&](size_t per_poll, size_t total) -> int64_t {
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          auto n = consumer->PollBatch(std::min(per_poll, total - got), absl::Milliseconds(100),
                                       [](const std::vector<ConsumedMessage>&) { return absl::OkStatus(); });
          if (n.ok()) got += *n;
          return got == total;
        },
        absl::Seconds(30), absl::ZeroDuration()));
    auto l = consumer->Lag();
    EXPECT_TRUE(l.ok()) << l.status();
    return l.value_or(-1);
  };
  EXPECT_EQ(take_until(4, 4), 6);
  EXPECT_EQ(take_until(100, 10), 0);
  // Five more while it is caught up: after it takes one of them, the
  // other four (known from the fetch that brought them) are its lag.
  std::vector<Message> five;
  for (int i = 0; i < 5; ++i) five.push_back({topic, "one-partition", "late" + std::to_string(i), {}});
  ASSERT_TRUE(producer->SendAll(five, absl::Seconds(10)).ok());
  EXPECT_EQ(take_until(1, 11), 4);
}

TEST(Kafka, OffsetsAreCommittedOnlyAfterTheHandlerSucceeded) {
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  std::string topic = UniqueTopic("commit");
  std::string group = "commit-" + core::NewId();
  // One partition's worth of ordering: same key.
  ASSERT_TRUE(producer->SendAll({{topic, "k", "first", {}}, {topic, "k", "second", {}}},
                                absl::Seconds(10))
                  .ok());
  std::vector<std::string> seen_a;
  Consumer* a_ptr = nullptr;
  auto a = MakeConsumer(group, topic, [&](const ConsumedMessage& m) -> absl::Status {
    seen_a.push_back(m.value);
    if (m.value == "second") {
      a_ptr->Stop();  // the process is going away mid-message
      return absl::UnavailableError("database down");
    }
    return absl::OkStatus();
  }, /*max_attempts=*/5);
  a_ptr = a.get();
  ASSERT_TRUE(PollUntil(*a, [&] { return seen_a.size() >= 2; }));
  EXPECT_EQ(a->stats().handled, 1);
  EXPECT_EQ(a->stats().dead_lettered, 0);
  a.reset();  // leaves the group, committing what was stored

  std::vector<std::string> seen_b;
  auto b = MakeConsumer(group, topic, [&](const ConsumedMessage& m) {
    seen_b.push_back(m.value);
    return absl::OkStatus();
  });
  ASSERT_TRUE(PollUntil(*b, [&] { return !seen_b.empty(); }));
  EXPECT_EQ(seen_b.front(), "second") << "the failed message must be redelivered, not the first";
}

TEST(Kafka, BatchesAreRetriedRewoundAndCommittedWhole) {
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  std::string topic = UniqueTopic("batch");
  std::string group = "batch-" + core::NewId();
  std::vector<Message> messages;
  for (int i = 0; i < 50; ++i) messages.push_back({topic, "k", std::to_string(i), {}});
  ASSERT_TRUE(producer->SendAll(messages, absl::Seconds(10)).ok());
  auto consumer = MakeConsumer(group, topic, nullptr, /*max_attempts=*/2);
  // A batch that fails for good is rewound: the next poll sees it again.
  std::vector<std::string> first_try;
  absl::Time until = absl::Now() + absl::Seconds(20);
  absl::StatusOr<size_t> r = 0;
  while (absl::Now() < until) {
    r = consumer->PollBatch(1000, absl::Milliseconds(200), [&](const std::vector<ConsumedMessage>& b) {
      for (const auto& m : b) first_try.push_back(m.value);
      return absl::InvalidArgumentError("cannot store");
    });
    if (!r.ok() || *r > 0) break;
  }
  ASSERT_FALSE(r.ok());
  ASSERT_FALSE(first_try.empty());
  EXPECT_EQ(first_try.front(), "0");
  // A retryable failure is retried; then every message arrives once, in order.
  std::vector<std::string> seen;
  int calls = 0;
  until = absl::Now() + absl::Seconds(20);
  while (seen.size() < 50 && absl::Now() < until) {
    auto n = consumer->PollBatch(1000, absl::Milliseconds(200), [&](const std::vector<ConsumedMessage>& b) {
      if (++calls == 1) return absl::UnavailableError("database restarting");
      for (const auto& m : b) seen.push_back(m.value);
      return absl::OkStatus();
    });
    ASSERT_TRUE(n.ok()) << n.status();
  }
  ASSERT_EQ(seen.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(seen[i], std::to_string(i));
  EXPECT_GE(consumer->stats().retries, 1);
  EXPECT_EQ(consumer->stats().handled, 50);
}

TEST(Kafka, PoisonAndRepeatedlyFailingMessagesGoToTheDeadLetterTopic) {
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  std::string topic = UniqueTopic("poison");
  ObjectRef ref;
  ref.set_key("always-fails");
  auto failing = MakeEnvelope("cloudflux/test", "objects/x", "x", ref);
  ref.set_key("fine");
  auto fine = MakeEnvelope("cloudflux/test", "objects/y", "x", ref);
  ASSERT_TRUE(producer
                  ->SendAll({{topic, "x", "\xff\x01garbage", {{"trace", "t1"}}},
                             {topic, "x", failing.SerializeAsString(), {}},
                             {topic, "x", fine.SerializeAsString(), {}}},
                            absl::Seconds(10))
                  .ok());
  int attempts_on_failing = 0;
  std::vector<std::string> handled;
  auto consumer = MakeConsumer("poison-" + core::NewId(), topic,
                               [&](const ConsumedMessage& m) -> absl::Status {
                                 auto e = ParseEnvelope(m);
                                 if (!e.ok()) return e.status();
                                 ObjectRef payload;
                                 e->payload().UnpackTo(&payload);
                                 if (payload.key() == "always-fails") {
                                   ++attempts_on_failing;
                                   return absl::UnavailableError("downstream unavailable");
                                 }
                                 handled.push_back(payload.key());
                                 return absl::OkStatus();
                               });
  ASSERT_TRUE(PollUntil(*consumer, [&] { return handled.size() == 1; }));
  EXPECT_EQ(handled[0], "fine") << "the consumer moves on past poison";
  EXPECT_EQ(attempts_on_failing, 3);
  EXPECT_EQ(consumer->stats().dead_lettered, 2);

  std::vector<ConsumedMessage> dead;
  auto dlq = MakeConsumer("dlq-reader-" + core::NewId(), topic + ".dlq",
                          [&](const ConsumedMessage& m) {
                            dead.push_back(m);
                            return absl::OkStatus();
                          });
  ASSERT_TRUE(PollUntil(*dlq, [&] { return dead.size() == 2; }));
  EXPECT_EQ(dead[0].value, "\xff\x01garbage");
  EXPECT_EQ(dead[0].Header("trace"), "t1") << "original headers are kept";
  EXPECT_EQ(dead[0].Header(kDlqCodeHeader), "INVALID_ARGUMENT");
  EXPECT_EQ(dead[0].Header(kDlqAttemptsHeader), "1") << "poison is not retried";
  EXPECT_EQ(dead[0].Header(kDlqTopicHeader), topic);
  EXPECT_EQ(dead[0].Header(kDlqOffsetHeader), "0");
  EXPECT_TRUE(absl::StrContains(dead[0].Header(kDlqErrorHeader), "not an EventEnvelope"));
  EXPECT_EQ(dead[1].Header(kDlqCodeHeader), "UNAVAILABLE");
  EXPECT_EQ(dead[1].Header(kDlqAttemptsHeader), "3");
  EXPECT_EQ(dead[1].Header(kDlqOffsetHeader), "1");
}

TEST(Kafka, ConsumersInOneGroupSharePartitions) {
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  std::string topic = UniqueTopic("shared");
  std::vector<Message> batch;
  for (int i = 0; i < 40; ++i) batch.push_back({topic, "key-" + std::to_string(i), std::to_string(i), {}});
  ASSERT_TRUE(producer->SendAll(batch, absl::Seconds(10)).ok());
  std::string group = "shared-" + core::NewId();
  std::map<std::string, int> times_seen;
  int by_a = 0, by_b = 0;
  auto a = MakeConsumer(group, topic, [&](const ConsumedMessage& m) {
    ++times_seen[m.value];
    ++by_a;
    return absl::OkStatus();
  });
  auto b = MakeConsumer(group, topic, [&](const ConsumedMessage& m) {
    ++times_seen[m.value];
    ++by_b;
    return absl::OkStatus();
  });
  // Poll both until every message was handled. Delivery is at least once: a
  // partition handed over in a rebalance is re-read from its last committed
  // offset, so a message may come twice (exactly-once effects come from
  // MarkProcessed, tested below); none may be lost.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        (void)a->PollOnce(absl::Milliseconds(50));
        (void)b->PollOnce(absl::Milliseconds(50));
        return times_seen.size() == 40;
      },
      absl::Seconds(60), absl::ZeroDuration()));
  EXPECT_GT(by_a, 0);
  EXPECT_GT(by_b, 0) << "the group must spread the 4 partitions over both members";
  for (int i = 0; i < 40; ++i) EXPECT_GE(times_seen[std::to_string(i)], 1) << i;
}

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scratch = testing::ScratchDatabase::Create();
    ASSERT_TRUE(scratch.ok()) << scratch.status();
    scratch_ = std::move(*scratch);
    db::PoolOptions o;
    o.url = scratch_->url();
    pool_ = std::move(*db::Pool::Create(o));
    ASSERT_TRUE(MigrateEventTables(*pool_, "orders").ok());
    ASSERT_TRUE(MigrateEventTables(*pool_, "orders").ok()) << "idempotent";
    ASSERT_TRUE(MigrateEventTables(*pool_, "ledger").ok());
    ASSERT_TRUE(pool_->Exec("CREATE TABLE orders.orders (id int PRIMARY KEY)").ok());
    ASSERT_TRUE(pool_->Exec("CREATE TABLE ledger.effects (order_key text NOT NULL)").ok());
  }

  // The business change and its event, in one transaction.
  absl::Status PlaceOrder(int id, const std::string& topic, bool fail_after = false) {
    Outbox outbox("orders");
    return pool_->InTransaction([&](db::Transaction& tx) -> absl::Status {
      auto r = tx.Exec("INSERT INTO orders.orders VALUES ($1)", {std::to_string(id)});
      if (!r.ok()) return r.status();
      ObjectRef ref;
      ref.set_namespace_("orders");
      ref.set_key(std::to_string(id));
      absl::Status s = outbox.Enqueue(tx, topic, MakeEnvelope("cloudflux/test", "orders/" + ref.key(),
                                                              ref.key(), ref));
      if (!s.ok()) return s;
      return fail_after ? absl::FailedPreconditionError("rejected") : absl::OkStatus();
    });
  }

  int64_t Count(const std::string& sql) { return (*pool_->Exec(sql))[0].Int(0); }

  std::unique_ptr<testing::ScratchDatabase> scratch_;
  std::unique_ptr<db::Pool> pool_;
};

TEST_F(OutboxTest, RolledBackChangesLeaveNoEvent) {
  EXPECT_EQ(PlaceOrder(1, "t", /*fail_after=*/true).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Count("SELECT count(*) FROM orders.outbox"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM orders.orders"), 0);
  Outbox outbox("orders");
  cloudflux::events::v1::EventEnvelope bad;
  bad.set_id("not-a-uuid");
  EXPECT_EQ(pool_->InTransaction([&](db::Transaction& tx) { return outbox.Enqueue(tx, "t", bad); })
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(OutboxTest, ExactlyOnceEffectDespiteRelayKilledMidBatchAndDuplicates) {
  constexpr int kOrders = 250;
  std::string topic = UniqueTopic("orders");
  for (int i = 0; i < kOrders; ++i) ASSERT_TRUE(PlaceOrder(i, topic).ok());
  EXPECT_EQ(Count("SELECT count(*) FROM orders.outbox"), kOrders);

  // A relay process publishes a batch of 100, then is killed before it can
  // mark the batch sent.
  auto relay_process = testing::ChildProcess::Start(
      {testing::BinaryDir() + "/libs/events/outbox_relay_process", scratch_->url(), "orders",
       Brokers(), "60000"});
  ASSERT_TRUE(relay_process.ok());
  ASSERT_TRUE(testing::WaitFor(
      [&] { return absl::StrContains((*relay_process)->Output(), "SENT 100"); }, absl::Seconds(30)))
      << (*relay_process)->Output();
  (*relay_process)->Signal(SIGKILL);
  EXPECT_EQ((*relay_process)->Wait(absl::Seconds(10)), 128 + SIGKILL);
  EXPECT_EQ(Count("SELECT count(*) FROM orders.outbox"), kOrders)
      << "the killed batch was never deleted";

  // A restarted relay publishes everything (once the killed one's lease has
  // run out), the killed batch again.
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  OutboxRelay relay(*pool_, "orders", *producer, {.batch_size = 100});
  relay.Start();
  ASSERT_TRUE(testing::WaitFor(
      [&] { return Count("SELECT count(*) FROM orders.outbox") == 0; },
      absl::Seconds(30)));
  relay.Stop();
  EXPECT_EQ(relay.published(), kOrders);
  EXPECT_EQ(relay.resent(), 100) << "the killed batch, with its stream and numbers";

  // The consumer applies each event's effect in the same transaction that
  // records its id; duplicates are skipped.
  std::atomic<int> deliveries{0}, skipped{0};
  auto consumer = MakeConsumer("ledger", topic, [&](const ConsumedMessage& m) -> absl::Status {
    ++deliveries;
    auto envelope = ParseEnvelope(m);
    if (!envelope.ok()) return envelope.status();
    EXPECT_EQ(m.Header("ce_id"), envelope->id());
    EXPECT_EQ(m.key, envelope->partition_key());
    ObjectRef ref;
    if (!envelope->payload().UnpackTo(&ref)) return absl::InvalidArgumentError("payload");
    return pool_->InTransaction([&](db::Transaction& tx) -> absl::Status {
      auto first = MarkProcessed(tx, "ledger", "ledger-consumer", envelope->id());
      if (!first.ok()) return first.status();
      if (!*first) {
        ++skipped;
        return absl::OkStatus();
      }
      return tx.Exec("INSERT INTO ledger.effects VALUES ($1)", {ref.key()}).status();
    });
  });
  ASSERT_TRUE(PollUntil(*consumer, [&] { return deliveries.load() >= kOrders + 100; },
                        absl::Seconds(60)))
      << deliveries.load();
  EXPECT_EQ(deliveries.load(), kOrders + 100) << "the killed batch was delivered twice";
  EXPECT_EQ(skipped.load(), 100);
  EXPECT_EQ(Count("SELECT count(*) FROM ledger.effects"), kOrders);
  EXPECT_EQ(Count("SELECT count(DISTINCT order_key) FROM ledger.effects"), kOrders);

  // The resent batch kept its stream and numbers; the restarted relay
  // numbered the rest in a stream of its own. A consumer that claims by
  // stream position (no row per event) applies each order once.
  ConsumerOptions o;
  o.kafka.brokers = Brokers();
  o.group_id = "ledger-streams";
  o.topics = {topic};
  o.session_timeout = absl::Seconds(3);
  auto batches = std::move(*Consumer::Create(o, nullptr));
  std::map<std::string, std::set<std::string>> places_of;  // event id -> "stream/seq"
  std::set<std::string> streams;
  int claimed_new = 0, claimed_old = 0;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto n = batches->PollBatch(500, absl::Milliseconds(200),
                                    [&](const std::vector<ConsumedMessage>& ms) -> absl::Status {
          std::vector<Claim> claims;
          for (const auto& m : ms) {
            claims.push_back({&m, m.Header("ce_id")});
            places_of[m.Header("ce_id")].insert(m.Header(kStreamHeader) + "/" + m.Header(kStreamSeqHeader));
            streams.insert(m.Header(kStreamHeader));
          }
          return pool_->InTransaction([&](db::Transaction& tx) -> absl::Status {
            CF_ASSIGN_OR_RETURN(std::vector<bool> fresh, ClaimMessages(tx, "ledger", "streams", claims));
            for (bool f : fresh) ++(f ? claimed_new : claimed_old);
            return absl::OkStatus();
          });
        });
        EXPECT_TRUE(n.ok()) << n.status();
        return claimed_new + claimed_old >= kOrders + 100;
      },
      absl::Seconds(60), absl::ZeroDuration()));
  EXPECT_EQ(claimed_new, kOrders);
  EXPECT_EQ(claimed_old, 100);
  EXPECT_EQ(places_of.size(), static_cast<size_t>(kOrders));
  for (const auto& [id, places] : places_of) EXPECT_EQ(places.size(), 1u) << id << " was renumbered";
  EXPECT_EQ(streams.size(), 2u) << "the killed relay's stream and the restarted one's";
  EXPECT_EQ(Count("SELECT count(*) FROM ledger.processed_events WHERE consumer = 'streams'"), 0)
      << "no row per event";
}

// ClaimMessages on crafted messages: per (topic, partition, stream) only
// numbers above the last applied are new; messages without stream headers
// fall back to their ids; nothing counts twice across transactions; two
// transactions on one partition wait for each other.
TEST_F(OutboxTest, StreamPositionsTellNewMessagesFromResendsAndRedeliveries) {
  const std::string s1 = core::NewId(), s2 = core::NewId();
  auto msg = [](int32_t partition, const std::string& stream, int64_t seq) {
    ConsumedMessage m;
    m.topic = "t";
    m.partition = partition;
    if (!stream.empty()) {
      m.headers = {{kStreamHeader, stream}, {kStreamSeqHeader, std::to_string(seq)}};
    }
    return m;
  };
  std::vector<ConsumedMessage> ms = {msg(0, s1, 1), msg(0, s1, 2), msg(0, absl::AsciiStrToUpper(s1), 2), msg(0, s1, 5),
                                     msg(0, s1, 3), msg(1, s1, 1), msg(0, s2, 1), msg(0, "", 0),
                                     msg(0, "", 0), msg(0, "not-a-uuid", 7)};
  std::vector<Claim> claims;
  for (size_t i = 0; i < ms.size(); ++i) claims.push_back({&ms[i], "id-" + std::to_string(i)});
  claims[8].event_id = "id-7";     // the same id twice without headers
  claims[9].event_id = "id-plain";  // bad headers: by id
  auto claim = [&](const std::vector<Claim>& c) {
    std::vector<bool> out;
    EXPECT_TRUE(pool_->InTransaction([&](db::Transaction& tx) -> absl::Status {
      CF_ASSIGN_OR_RETURN(out, ClaimMessages(tx, "ledger", "c", c));
      return absl::OkStatus();
    }).ok());
    return out;
  };
  EXPECT_EQ(claim(claims),
            (std::vector<bool>{true, true, false, true, false, true, true, true, false, true}));
  EXPECT_EQ(claim(claims), std::vector<bool>(ms.size(), false)) << "a redelivered batch";
  EXPECT_EQ(Count("SELECT count(*) FROM ledger.processed_events WHERE consumer = 'c'"), 2);
  EXPECT_EQ(Count("SELECT last_seq FROM ledger.stream_positions WHERE consumer = 'c' AND partition = 0 "
                  "AND stream = '" + s1 + "'"),
            5);
  // A rolled-back claim claims nothing.
  std::vector<ConsumedMessage> next = {msg(0, s1, 6)};
  EXPECT_FALSE(pool_->InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_RETURN_IF_ERROR(ClaimMessages(tx, "ledger", "c", {{&next[0], "x"}}).status());
    return absl::AbortedError("rolled back");
  }).ok());
  EXPECT_EQ(claim({{&next[0], "x"}}), std::vector<bool>{true});

  // Two members on one partition: the second waits for the first's commit,
  // then sees the message as applied.
  std::vector<ConsumedMessage> same = {msg(3, s2, 9)};
  std::atomic<bool> first_claimed{false};
  std::vector<bool> second;
  std::thread other;
  ASSERT_TRUE(pool_->InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(std::vector<bool> first, ClaimMessages(tx, "ledger", "c", {{&same[0], "y"}}));
    EXPECT_EQ(first, std::vector<bool>{true});
    first_claimed = true;
    other = std::thread([&] { second = claim({{&same[0], "y"}}); });
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_TRUE(second.empty()) << "the second claim waits";
    return absl::OkStatus();
  }).ok());
  other.join();
  EXPECT_EQ(second, std::vector<bool>{false});

  // Pruning drops positions not advanced within the retention.
  ASSERT_TRUE(pool_->Exec("UPDATE ledger.stream_positions SET updated_at = now() - interval '8 days' "
                          "WHERE partition = 1").ok());
  ASSERT_TRUE(PruneProcessedEvents(*pool_, "ledger", absl::Now() - absl::Hours(24 * 7), 100).ok());
  EXPECT_EQ(Count("SELECT count(*) FROM ledger.stream_positions WHERE consumer = 'c' AND partition = 1"), 0);
  EXPECT_GT(Count("SELECT count(*) FROM ledger.stream_positions WHERE consumer = 'c'"), 0);
}

TEST_F(OutboxTest, ProcessedEventIdsArePrunedAfterTheRetention) {
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(pool_->InTransaction([&](db::Transaction& tx) -> absl::Status {
      auto fresh = MarkProcessed(tx, "ledger", "c", "event-" + std::to_string(i));
      if (!fresh.ok()) return fresh.status();
      return *fresh ? absl::OkStatus() : absl::InternalError("not fresh");
    }).ok());
  }
  // 20 of them were processed 8 days ago.
  ASSERT_TRUE(pool_->Exec("UPDATE ledger.processed_events SET processed_at = now() - interval '8 days' "
                          "WHERE substr(event_id, 7)::int < 20")
                  .ok());
  auto count = [&] { return (*pool_->Exec("SELECT count(*) FROM ledger.processed_events"))[0].Int(0); };
  ASSERT_EQ(count(), 30);
  const absl::Time week_ago = absl::Now() - absl::Hours(24 * 7);
  auto pruned = PruneProcessedEvents(*pool_, "ledger", week_ago, 15);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 15) << "at most the limit";
  pruned = PruneProcessedEvents(*pool_, "ledger", week_ago, 15);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 5);
  EXPECT_EQ(count(), 10) << "recent ids stay";
  EXPECT_EQ(PruneProcessedEvents(*pool_, "ledger", week_ago, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A recent id is still recognised as processed.
  ASSERT_TRUE(pool_->InTransaction([&](db::Transaction& tx) -> absl::Status {
    auto fresh = MarkProcessed(tx, "ledger", "c", "event-29");
    EXPECT_TRUE(fresh.ok() && !*fresh);
    return absl::OkStatus();
  }).ok());

  // The relay prunes on its own.
  ASSERT_TRUE(pool_->Exec("UPDATE ledger.processed_events SET processed_at = now() - interval '2 hours'").ok());
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  OutboxRelay relay(*pool_, "ledger", *producer,
                    {.processed_retention = absl::Hours(1), .prune_interval = absl::Milliseconds(50)});
  relay.Start();
  EXPECT_TRUE(testing::WaitFor([&] { return count() == 0; }, absl::Seconds(10)));
  relay.Stop();
}

// The lease: a second relay publishes nothing while the first holds it,
// takes over when it is handed over (Stop) and publishes under a new stream.
TEST_F(OutboxTest, TheLeaseMovesToAnotherRelayWhenTheHolderStops) {
  std::string topic = UniqueTopic("orders");
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  ASSERT_TRUE(PlaceOrder(1, topic).ok());
  prometheus::Registry registry;
  auto first = std::make_unique<OutboxRelay>(*pool_, "orders", *producer, RelayOptions{.registry = &registry});
  OutboxRelay second(*pool_, "orders", *producer);
  ASSERT_EQ(*first->PublishBatch(), 1);
  std::string metrics = metrics::Serialize(registry);
  EXPECT_TRUE(absl::StrContains(metrics, "cloudflux_outbox_lease_held{schema=\"orders\"} 1")) << metrics;
  EXPECT_TRUE(absl::StrContains(metrics, "cloudflux_outbox_published_total{schema=\"orders\"} 1")) << metrics;
  // An idle poll soon after keeps the lease without rewriting its row.
  auto lease_version = [&] {
    return (*pool_->Exec("SELECT xmin::text || expires_at::text FROM orders.outbox_lease"))[0].Text(0);
  };
  std::string version = lease_version();
  EXPECT_EQ(*first->PublishBatch(), 0);
  EXPECT_EQ(lease_version(), version);
  EXPECT_TRUE(absl::StrContains(metrics::Serialize(registry), "cloudflux_outbox_lease_held{schema=\"orders\"} 1"));
  ASSERT_TRUE(PlaceOrder(2, topic).ok());
  EXPECT_EQ(*second.PublishBatch(), 0) << "the first holds the lease";
  auto stream_of_first = (*pool_->Exec("SELECT stream::text FROM orders.outbox_lease"))[0].Text(0);
  first->Stop();
  metrics = metrics::Serialize(registry);
  EXPECT_TRUE(absl::StrContains(metrics, "cloudflux_outbox_lease_held{schema=\"orders\"} 0")) << metrics;
  EXPECT_EQ(*second.PublishBatch(), 1);
  auto stream_of_second = (*pool_->Exec("SELECT stream::text FROM orders.outbox_lease"))[0].Text(0);
  EXPECT_NE(stream_of_first, stream_of_second);
  EXPECT_EQ(Count("SELECT count(*) FROM orders.outbox"), 0);
}

TEST_F(OutboxTest, OnlyOneRelayPublishesAtATime) {
  std::string topic = UniqueTopic("orders");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(PlaceOrder(i, topic).ok());
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  std::atomic<bool> in_send{false};
  std::atomic<int> second_result{-1};
  RelayOptions slow;
  OutboxRelay* other_ptr = nullptr;
  slow.after_send = [&](int) {
    // While this relay holds the batch, a second one finds nothing to do.
    auto n = other_ptr->PublishBatch();
    second_result = n.ok() ? *n : -2;
  };
  OutboxRelay other(*pool_, "orders", *producer);
  other_ptr = &other;
  OutboxRelay first(*pool_, "orders", *producer, slow);
  auto n = first.PublishBatch();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 10);
  EXPECT_EQ(second_result.load(), 0);
}

}  // namespace
}  // namespace cloudflux::events
