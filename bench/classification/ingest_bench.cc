// Object-event ingest end to end: object events produced to the dev broker,
// consumed in batches (events::BatchIngest) and written to PostgreSQL by the
// classification service's AccessStatsStore (--store=classification) or the
// prediction service's HistoryStore (--store=prediction). Peer: the same
// consumer reading the same events and discarding them (librdkafka's own
// rate on this broker, the ceiling). Needs the test servers:
//   scripts/dev bench build/release/bench/classification/ingest_bench [--events=300000] [--objects=20000]
//       [--store=prediction]
#include <google/protobuf/util/time_util.h>

#include <cstdio>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "access_stats.h"
#include "cloudflux/core/config.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/storage/v1/events.pb.h"
#include "cloudflux/testing/testing.h"
#include "history_store.h"
#include "stats_ingest.h"

ABSL_FLAG(std::string, store, "classification",
          "Whose store the events are written to: classification (access statistics) or prediction "
          "(daily histories).");
ABSL_FLAG(int32_t, events, 300000, "Events to ingest.");
ABSL_FLAG(int32_t, days, 1,
          "Reads fall on this many days back from today (prediction's histories grow to that many days).");
ABSL_FLAG(int32_t, objects, 20000, "Distinct objects they are about.");
ABSL_FLAG(int32_t, batch, 5000, "Most events per batch.");
ABSL_FLAG(int32_t, consumers, 4, "Ingest consumers (parallel batches).");
ABSL_FLAG(int32_t, round, 20000, "Events produced per round (the dev broker keeps 5 MB per partition).");
ABSL_FLAG(int32_t, fetch_wait_ms, -1,
          "fetch.wait.max.ms of every consumer (peer and ingest); -1: the consumers' default.");
ABSL_FLAG(bool, relay_headers, true,
          "Send the events as the outbox relay does, with its stream headers (the ingest claims them by "
          "stream position); false: plain envelopes (claimed by event id).");

using namespace cloudflux;  // NOLINT
namespace sv1 = cloudflux::storage::v1;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::exit(1);
}

int main(int argc, char** argv) {
  core::ParseFlags(argc, argv, "access statistics ingest rate");
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  const int n = absl::GetFlag(FLAGS_events), objects = absl::GetFlag(FLAGS_objects);
  auto brokers = testing::TestKafkaBootstrap();
  if (!brokers.ok()) Die("run through scripts/dev bench");
  auto db = testing::ScratchDatabase::Create();
  if (!db.ok()) Die(std::string(db.status().message()));
  auto pool = db::Pool::Create({.url = (*db)->url(), .max_connections = 4});
  if (!pool.ok()) Die(std::string(pool.status().message()));
  const std::string schema = absl::GetFlag(FLAGS_store);
  if (schema != "classification" && schema != "prediction") Die("--store must be classification or prediction");
  auto migrations = db::LoadMigrations(absl::StrCat(CLOUDFLUX_SOURCE_DIR "/services/", schema, "/schema"));
  if (!migrations.ok() || !db::ApplyMigrations(**pool, schema, *migrations).ok() ||
      !events::MigrateEventTables(**pool, schema).ok()) {
    Die("cannot migrate the " + schema + " schema");
  }

  // The events, generated once and produced twice: to the peer's topic and
  // to the ingest's. The dev broker keeps at most 5 MB per partition, so
  // they go out in rounds of --round (a backlog it keeps whole).
  const int round = absl::GetFlag(FLAGS_round);
  const int members = absl::GetFlag(FLAGS_consumers);
  const bool relay_headers = absl::GetFlag(FLAGS_relay_headers);
  std::vector<std::vector<events::Message>> rounds;
  {
    std::mt19937 rng(3);
    const std::string stream = core::NewId();
    int created = 0;
    for (int produced = 0; produced < n;) {
      std::vector<events::Message>& batch = rounds.emplace_back();
      for (int i = 0; i < round && produced < n; ++i, ++produced) {
        int obj = static_cast<int>(rng() % objects);
        std::string key = "k" + std::to_string(obj);
        int kind = static_cast<int>(rng() % 100);
        events::v1::EventEnvelope e;
        if (created < objects || kind < 5) {
          if (created < objects) key = "k" + std::to_string(created++);
          sv1::ObjectCreated c;
          c.mutable_object()->set_namespace_("bench");
          c.mutable_object()->set_key(key);
          c.mutable_object()->set_size(1 << 20);
          c.mutable_object()->set_version(1);
          e = events::MakeEnvelope("bench", "objects/bench/" + key, "bench/" + key, c);
        } else if (kind < 8) {
          sv1::ObjectTierChanged t;
          t.set_namespace_("bench");
          t.set_key(key);
          t.set_to_tier(cloudflux::common::v1::STORAGE_TIER_WARM);
          e = events::MakeEnvelope("bench", "objects/bench/" + key, "bench/" + key, t);
        } else if (kind < 9) {
          sv1::ObjectDeleted d;
          d.set_namespace_("bench");
          d.set_key(key);
          e = events::MakeEnvelope("bench", "objects/bench/" + key, "bench/" + key, d);
        } else {
          sv1::ObjectRead r;
          r.set_namespace_("bench");
          r.set_key(key);
          r.set_version(1);
          r.set_reads(1 + rng() % 5);
          r.set_bytes_read(r.reads() << 20);
          r.set_size(1 << 20);
          const int days = std::max(1, absl::GetFlag(FLAGS_days));
          *r.mutable_last_read() = google::protobuf::util::TimeUtil::SecondsToTimestamp(
              absl::ToUnixSeconds(absl::Now()) - static_cast<int64_t>(rng() % days) * 86400);
          e = events::MakeEnvelope("bench", "objects/bench/" + key, "bench/" + key, r);
        }
        events::Headers headers = events::EnvelopeHeaders(e);
        if (relay_headers) {
          headers.emplace_back(events::kStreamHeader, stream);
          headers.emplace_back(events::kStreamSeqHeader, std::to_string(produced + 1));
        }
        batch.push_back({"", e.partition_key(), e.SerializeAsString(), std::move(headers)});
      }
    }
  }
  auto producer = events::Producer::Create({.brokers = *brokers});
  if (!producer.ok()) Die("producer");
  events::KafkaOptions consumer_kafka{.brokers = *brokers};
  if (absl::GetFlag(FLAGS_fetch_wait_ms) >= 0) {
    consumer_kafka.properties["fetch.wait.max.ms"] = std::to_string(absl::GetFlag(FLAGS_fetch_wait_ms));
  }

  // One pass: each round timed from handing it to the producer until
  // `done` (what the consumers have finished) reaches every event produced
  // (they consume while it is produced). The first round, with the group
  // joins, is not timed.
  struct Pass {
    double seconds = 0, producing = 0;
  };
  auto run_pass = [&](const std::string& topic, const std::function<int64_t()>& done) {
    Pass pass;
    int64_t produced = 0;
    for (size_t r = 0; r < rounds.size(); ++r) {
      std::vector<events::Message> batch = rounds[r];
      for (auto& m : batch) m.topic = topic;
      absl::Time start = absl::Now();
      if (!(*producer)->SendAll(batch, absl::Seconds(60)).ok()) Die("produce");
      double producing = absl::ToDoubleSeconds(absl::Now() - start);
      produced += static_cast<int64_t>(batch.size());
      while (done() < produced) {
        absl::SleepFor(absl::Milliseconds(1));
        if (absl::Now() - start > absl::Seconds(60)) Die(absl::StrCat(topic, " stalled at ", done()));
      }
      if (r > 0) {
        pass.seconds += absl::ToDoubleSeconds(absl::Now() - start);
        pass.producing += producing;
      }
    }
    return pass;
  };

  // Peer: as many members in one group, same consumer settings, reading and
  // discarding. Done = distinct messages seen (highest offset + 1 per
  // partition; a rebalance's redeliveries do not count).
  Pass peer;
  {
    const std::string topic = "bench.peer." + core::NewId();
    const std::string group = "bench-peer-" + core::NewId();
    std::mutex mu;
    std::map<int32_t, int64_t> next_offset;
    std::atomic<int64_t> seen{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < members; ++i) {
      events::ConsumerOptions co;
      co.kafka = consumer_kafka;
      co.group_id = group;
      co.topics = {topic};
      auto consumer = events::Consumer::Create(co, nullptr);
      if (!consumer.ok()) Die("peer consumer");
      threads.emplace_back([&, c = std::shared_ptr<events::Consumer>(std::move(*consumer))] {
        while (!stop) {
          auto k = c->PollBatch(absl::GetFlag(FLAGS_batch), absl::Milliseconds(200),
                                [&](const std::vector<events::ConsumedMessage>& got) {
                                  std::lock_guard lock(mu);
                                  for (const auto& m : got) {
                                    int64_t& next = next_offset[m.partition];
                                    if (m.offset + 1 > next) {
                                      seen += m.offset + 1 - next;
                                      next = m.offset + 1;
                                    }
                                  }
                                  return absl::OkStatus();
                                });
          if (!k.ok()) Die(std::string(k.status().message()));
        }
        c->Stop();
      });
    }
    peer = run_pass(topic, [&] { return seen.load(); });
    stop = true;
    for (auto& t : threads) t.join();
  }

  classification::AccessStatsStore stats(**pool);
  prediction::HistoryStore histories(**pool);
  const std::string topic = "bench.objects." + core::NewId();
  auto ingest = events::BatchIngest::Start(
      [&](const std::vector<events::ConsumedMessage>& batch) {
        return schema == "classification" ? stats.ApplyMessages(batch) : histories.ApplyMessages(batch);
      },
      {.kafka = consumer_kafka,
       .group_id = "bench-" + core::NewId(),
       .topic = topic,
       .max_batch = static_cast<size_t>(absl::GetFlag(FLAGS_batch)),
       .consumers = members});
  if (!ingest.ok()) Die("ingest");
  int64_t batches_before = -1;
  // Redelivered messages (a rebalance re-reads from the committed offset)
  // are consumed but not new: wait for every event produced.
  Pass in = run_pass(topic, [&] {
    int64_t done = (*ingest)->consumed() - (*ingest)->duplicates();
    if (batches_before < 0 && done >= static_cast<int64_t>(rounds[0].size())) batches_before = (*ingest)->batches();
    return done;
  });
  (*ingest)->Stop();
  const int timed = n - static_cast<int>(rounds[0].size());
  const int64_t batches = (*ingest)->batches() - std::max<int64_t>(batches_before, 0);
  std::printf("%s store: %d events about %d objects in rounds of %d (the first round, with the group joins, untimed), "
              "%d consumers, fetch wait %s, %s\n",
              schema.c_str(), n, objects, round, members,
              absl::GetFlag(FLAGS_fetch_wait_ms) >= 0 ? absl::StrCat(absl::GetFlag(FLAGS_fetch_wait_ms), " ms").c_str()
                                                      : "default",
              relay_headers ? "claimed by relay stream position" : "claimed by event id");
  std::printf("produce + consume only (peer)      : %9.0f events/s (%.2f s, producing %.2f s)\n",
              timed / peer.seconds, peer.seconds, peer.producing);
  std::printf("produce + ingest into PostgreSQL  : %9.0f events/s (%.2f s, producing %.2f s; target >= "
              "50,000/s) ratio %.2f\n",
              timed / in.seconds, in.seconds, in.producing, peer.seconds / in.seconds);
  std::printf("ingest: %lld transactions (%.0f events each)\n", static_cast<long long>(batches),
              batches > 0 ? timed / static_cast<double>(batches) : 0.0);
  auto rows = (*pool)->Exec(
      schema == "classification"
          ? "SELECT count(*), sum(reads_total) FROM classification.object_stats"
          : "SELECT count(*), coalesce(sum((SELECT sum(x) FROM unnest(reads) x)), 0) FROM prediction.histories");
  std::printf("%s: %lld object rows, %lld reads counted\n", schema.c_str(),
              static_cast<long long>((*rows)[0].Int(0)), static_cast<long long>((*rows)[0].Int(1)));
  return 0;
}
