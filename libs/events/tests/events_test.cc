#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>

#include "absl/strings/match.h"
#include "cloudflux/common/v1/common.pb.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/outbox.h"
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

  // A restarted relay publishes everything, the killed batch again.
  auto producer = std::move(*Producer::Create({.brokers = Brokers()}));
  OutboxRelay relay(*pool_, "orders", *producer, {.batch_size = 100});
  relay.Start();
  ASSERT_TRUE(testing::WaitFor(
      [&] { return Count("SELECT count(*) FROM orders.outbox") == 0; },
      absl::Seconds(30)));
  relay.Stop();
  EXPECT_EQ(relay.published(), kOrders);

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
