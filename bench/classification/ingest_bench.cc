// Access-statistics ingest end to end: object events produced to the dev
// broker, consumed in batches and written to PostgreSQL by the
// classification service's StatsIngest/AccessStatsStore. Peer: the same
// consumer reading the same events and discarding them (librdkafka's own
// rate on this broker, the ceiling). Needs the test servers:
//   scripts/dev bench build/release/bench/classification/ingest_bench [--events=300000] [--objects=20000]
#include <cstdio>
#include <random>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "access_stats.h"
#include "cloudflux/core/config.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/storage/v1/events.pb.h"
#include "cloudflux/testing/testing.h"
#include "stats_ingest.h"

ABSL_FLAG(int32_t, events, 300000, "Events to ingest.");
ABSL_FLAG(int32_t, objects, 20000, "Distinct objects they are about.");
ABSL_FLAG(int32_t, batch, 5000, "Most events per batch.");
ABSL_FLAG(int32_t, consumers, 4, "Ingest consumers (parallel batches).");
ABSL_FLAG(int32_t, round, 20000, "Events produced per round (the dev broker keeps 5 MB per partition).");
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
  auto migrations = db::LoadMigrations(CLOUDFLUX_SOURCE_DIR "/services/classification/schema");
  if (!migrations.ok() || !db::ApplyMigrations(**pool, "classification", *migrations).ok() ||
      !events::MigrateEventTables(**pool, "classification").ok()) {
    Die("cannot migrate the classification schema");
  }

  // The dev broker keeps at most 5 MB per partition, so events are produced
  // in rounds of --round (a backlog it keeps whole). Per round: the ingest
  // (produce -> consume -> fold -> PostgreSQL), then the peer (the same
  // production time, then consume and discard).
  std::string topic = "bench.objects." + core::NewId();
  auto producer = events::Producer::Create({.brokers = *brokers});
  if (!producer.ok()) Die("producer");
  events::ConsumerOptions co;
  co.kafka.brokers = *brokers;
  co.group_id = "bench-peer-" + core::NewId();
  co.topics = {topic};
  auto peer = events::Consumer::Create(co, nullptr);
  if (!peer.ok()) Die("consumer");
  classification::AccessStatsStore store(**pool);
  auto ingest = classification::StatsIngest::Start(
      store, {.kafka = {.brokers = *brokers}, .group_id = "bench-" + core::NewId(), .topic = topic,
              .max_batch = static_cast<size_t>(absl::GetFlag(FLAGS_batch)),
              .consumers = absl::GetFlag(FLAGS_consumers)});
  if (!ingest.ok()) Die("ingest");

  std::mt19937 rng(3);
  const std::string stream = core::NewId();
  const bool relay_headers = absl::GetFlag(FLAGS_relay_headers);
  int produced = 0, created = 0;
  int64_t peer_got = 0;
  double peer_seconds = 0, ingest_seconds = 0;
  const int round = absl::GetFlag(FLAGS_round);
  while (produced < n) {
    std::vector<events::Message> batch;
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
        e = events::MakeEnvelope("bench", "objects/bench/" + key, "bench/" + key, r);
      }
      events::Headers headers = events::EnvelopeHeaders(e);
      if (relay_headers) {
        headers.emplace_back(events::kStreamHeader, stream);
        headers.emplace_back(events::kStreamSeqHeader, std::to_string(produced + 1));
      }
      batch.push_back({topic, e.partition_key(), e.SerializeAsString(), std::move(headers)});
    }
    // End to end: from handing the round to the producer until the
    // statistics are written (the ingest consumes while it is produced).
    absl::Time start = absl::Now();
    if (!(*producer)->SendAll(batch, absl::Seconds(60)).ok()) Die("produce");
    double produce_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    // Redelivered messages (a rebalance re-reads from the committed offset)
    // are consumed but not new: wait for every event produced.
    while ((*ingest)->consumed() - (*ingest)->duplicates() < produced) {
      absl::SleepFor(absl::Milliseconds(1));
      if (absl::Now() - start > absl::Seconds(60)) Die(absl::StrCat("ingest stalled at ", (*ingest)->consumed()));
    }
    if (produced > round) ingest_seconds += absl::ToDoubleSeconds(absl::Now() - start);  // not the group join
    // Peer: the same production time, then consume and discard.
    start = absl::Now();
    while (peer_got < produced) {
      auto k = (*peer)->PollBatch(absl::GetFlag(FLAGS_batch), absl::Seconds(1),
                                  [](const std::vector<events::ConsumedMessage>&) { return absl::OkStatus(); });
      if (!k.ok()) Die(std::string(k.status().message()));
      peer_got += static_cast<int64_t>(*k);
      if (absl::Now() - start > absl::Seconds(60)) Die(absl::StrCat("peer stalled at ", peer_got));
    }
    if (produced > round) peer_seconds += produce_seconds + absl::ToDoubleSeconds(absl::Now() - start);
  }
  (*ingest)->Stop();
  const int timed = n - round;
  std::printf("%d events about %d objects in rounds of %d (the first round, with the group joins, untimed), %s\n",
              n, objects, round,
              relay_headers ? "claimed by relay stream position" : "claimed by event id");
  std::printf("produce + consume only (peer)      : %9.0f events/s (%.2f s)\n", timed / peer_seconds,
              peer_seconds);
  std::printf("produce + ingest into PostgreSQL  : %9.0f events/s (%.2f s; target >= 50,000/s) ratio %.2f\n",
              timed / ingest_seconds, ingest_seconds, peer_seconds / ingest_seconds);
  auto rows = (*pool)->Exec("SELECT count(*), sum(reads_total) FROM classification.object_stats");
  std::printf("statistics: %lld objects, %lld reads counted\n", static_cast<long long>((*rows)[0].Int(0)),
              static_cast<long long>((*rows)[0].Int(1)));
  return 0;
}
