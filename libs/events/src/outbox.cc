#include "cloudflux/events/outbox.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"

namespace cloudflux::events {

using cloudflux::events::v1::EventEnvelope;

namespace {

constexpr char kEventTablesSql[] = R"sql(
CREATE TABLE outbox (
  seq           bigserial PRIMARY KEY,
  event_id      uuid NOT NULL UNIQUE,
  topic         text NOT NULL,
  partition_key text NOT NULL,
  envelope      bytea NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE processed_events (
  consumer     text NOT NULL,
  event_id     text NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);
)sql";

// Published rows are deleted at once (Kafka keeps them): the table holds only
// what is still to send, its primary key is the one index a write maintains.
constexpr char kDeleteOnPublishSql[] = R"sql(
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX outbox_unpublished;
DROP INDEX outbox_published_at;
ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key;
ALTER TABLE outbox DROP COLUMN published_at;
)sql";

// Pruning processed-event ids by age scans this small index, not the table.
constexpr char kProcessedAtIndexSql[] = R"sql(
CREATE INDEX processed_events_at ON processed_events USING brin (processed_at);
)sql";

// Event ids and consumer names are compared byte for byte ("C" collation:
// memcmp, not the database locale's strcoll, in the processed-events index).
constexpr char kProcessedCollationSql[] = R"sql(
ALTER TABLE processed_events
  ALTER COLUMN consumer TYPE text COLLATE "C",
  ALTER COLUMN event_id TYPE text COLLATE "C";
)sql";

// Publishing under a lease, in numbered streams (see OutboxRelay), and the
// positions consumers keep in those streams (ClaimMessages).
constexpr char kStreamsSql[] = R"sql(
ALTER TABLE outbox ADD COLUMN stream uuid, ADD COLUMN stream_seq bigint;
CREATE SEQUENCE outbox_stream_seq;
CREATE TABLE outbox_lease (
  id         boolean PRIMARY KEY DEFAULT true CHECK (id),
  holder     text NOT NULL,
  stream     uuid NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE TABLE stream_positions (
  consumer   text COLLATE "C" NOT NULL,
  topic      text COLLATE "C" NOT NULL,
  partition  int NOT NULL,
  stream     uuid NOT NULL,
  last_seq   bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, topic, partition, stream)
);
)sql";

// Numbered rows are read by number, new ones by seq (the primary key):
// neither sorts the whole outbox when a backlog has built up.
constexpr char kAssignedIndexSql[] = R"sql(
CREATE INDEX outbox_numbered ON outbox (stream_seq) WHERE stream_seq IS NOT NULL;
)sql";

}  // namespace

absl::Status MigrateEventTables(db::Pool& pool, const std::string& schema) {
  return db::ApplyMigrations(pool, schema, {{1, "001_event_tables.sql", kEventTablesSql},
                                 {2, "002_delete_on_publish.sql", kDeleteOnPublishSql},
                                 {3, "003_processed_at_index.sql", kProcessedAtIndexSql},
                                 {4, "004_processed_collation.sql", kProcessedCollationSql},
                                 {5, "005_streams.sql", kStreamsSql},
                                 {6, "006_numbered_index.sql", kAssignedIndexSql}},
                             "events_migrations");
}

EventEnvelope MakeEnvelope(const std::string& source, const std::string& subject,
                           const std::string& partition_key,
                           const google::protobuf::Message& payload, const core::Clock& clock) {
  EventEnvelope e;
  e.set_id(core::NewId());
  e.set_source(source);
  e.set_spec_version("1.0");
  e.set_type(payload.GetDescriptor()->full_name());
  e.set_subject(subject);
  *e.mutable_time() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(clock.Now()));
  e.set_partition_key(partition_key);
  e.set_data_content_type("application/protobuf");
  e.mutable_payload()->PackFrom(payload);
  return e;
}

DecodedBatch DecodeMessages(const std::vector<ConsumedMessage>& messages) {
  DecodedBatch out;
  for (const auto& m : messages) {
    auto e = ParseEnvelope(m);
    if (!e.ok()) {
      ++out.undecodable;
      continue;
    }
    out.envelopes.push_back(std::move(*e));
    out.origins.push_back(&m);
  }
  return out;
}

absl::StatusOr<EventEnvelope> ParseEnvelope(const ConsumedMessage& message) {
  EventEnvelope e;
  if (!e.ParseFromString(message.value)) {
    return absl::InvalidArgumentError(absl::StrCat("message at ", message.topic, "/",
                                                   message.partition, "@", message.offset,
                                                   " is not an EventEnvelope"));
  }
  if (e.id().empty() || e.type().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("envelope at ", message.topic, "/",
                                                   message.partition, "@", message.offset,
                                                   " lacks an id or a type"));
  }
  return e;
}

Headers EnvelopeHeaders(const EventEnvelope& envelope) {
  return {{"ce_id", envelope.id()},
          {"ce_source", envelope.source()},
          {"ce_specversion", envelope.spec_version()},
          {"ce_type", envelope.type()},
          {"ce_subject", envelope.subject()},
          {"content-type", "application/protobuf"}};
}

absl::StatusOr<PreparedEvent> PrepareEvent(const EventEnvelope& envelope) {
  if (!core::ParseUuid(envelope.id()).has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("event id '", envelope.id(), "' is not a UUID"));
  }
  return PreparedEvent{envelope.id(), envelope.partition_key(),
                       db::Bytea(envelope.SerializeAsString())};
}

absl::Status Outbox::EnqueueAll(db::Transaction& tx, const std::string& topic,
                                const std::vector<EventEnvelope>& envelopes) const {
  std::vector<PreparedEvent> prepared;
  prepared.reserve(envelopes.size());
  for (const EventEnvelope& e : envelopes) {
    CF_ASSIGN_OR_RETURN(PreparedEvent p, PrepareEvent(e));
    prepared.push_back(std::move(p));
  }
  return EnqueuePrepared(tx, topic, prepared);
}

std::string Outbox::InsertStatement(const std::string& topic,
                                    std::span<const PreparedEvent> events,
                                    std::vector<db::Param>& params) const {
  // One statement text whatever the number of events (arrays, not a VALUES
  // list): PostgreSQL parses a few hundred bytes, not thousands of
  // parameters.
  std::vector<std::string> ids, keys, envelopes;
  ids.reserve(events.size());
  keys.reserve(events.size());
  envelopes.reserve(events.size());
  for (const PreparedEvent& e : events) {
    ids.push_back(e.id);
    keys.push_back(e.partition_key);
    envelopes.push_back(e.bytea);
  }
  size_t n = params.size();
  params.push_back(topic);
  params.push_back(db::ArrayLiteral(ids));
  params.push_back(db::ArrayLiteral(keys));
  params.push_back(db::ArrayLiteral(envelopes));
  return absl::StrCat("INSERT INTO ", schema_,
                      ".outbox (event_id, topic, partition_key, envelope) SELECT e, $", n + 1,
                      ", k, v FROM unnest($", n + 2, "::uuid[], $", n + 3, "::text[], $", n + 4,
                      "::bytea[]) WITH ORDINALITY AS x(e, k, v, i) ORDER BY i");
}

absl::Status Outbox::EnqueuePrepared(db::Transaction& tx, const std::string& topic,
                                     std::span<const PreparedEvent> events) const {
  if (topic.empty()) return absl::InvalidArgumentError("event topic is empty");
  if (events.empty()) return absl::OkStatus();
  std::vector<db::Param> params;
  std::string sql = InsertStatement(topic, events, params);
  return tx.Exec(sql, params).status();
}

absl::StatusOr<bool> MarkProcessed(db::Transaction& tx, const std::string& schema,
                                   const std::string& consumer, const std::string& event_id) {
  CF_ASSIGN_OR_RETURN(db::Result r,
                      tx.Exec(absl::StrCat("INSERT INTO ", schema,
                                           ".processed_events (consumer, event_id) VALUES ($1, $2) "
                                           "ON CONFLICT DO NOTHING"),
                              {consumer, event_id}));
  return r.affected_rows() == 1;
}

namespace {

// A message's place in a relay's stream, if it carries one.
struct StreamPlace {
  std::string stream;
  int64_t seq = 0;
};
std::optional<StreamPlace> PlaceOf(const ConsumedMessage& m) {
  StreamPlace p{absl::AsciiStrToLower(m.Header(kStreamHeader)), 0};  // as PostgreSQL prints a uuid
  if (!core::ParseUuid(p.stream).has_value() || !absl::SimpleAtoi(m.Header(kStreamSeqHeader), &p.seq) ||
      p.seq < 1) {
    return std::nullopt;
  }
  return p;
}

}  // namespace

absl::StatusOr<std::vector<bool>> ClaimMessages(db::Transaction& tx, const std::string& schema,
                                                const std::string& consumer,
                                                const std::vector<Claim>& claims) {
  std::vector<bool> fresh(claims.size(), false);
  // Stream positions: (topic, partition, stream) -> the last sequence applied.
  using Key = std::tuple<std::string, int32_t, std::string>;
  std::map<Key, int64_t> positions;
  std::vector<std::optional<StreamPlace>> places(claims.size());
  std::vector<std::string> ids;
  for (size_t i = 0; i < claims.size(); ++i) {
    if (claims[i].message != nullptr) places[i] = PlaceOf(*claims[i].message);
    if (places[i].has_value()) {
      positions[{claims[i].message->topic, claims[i].message->partition, places[i]->stream}] = 0;
    } else {
      ids.push_back(claims[i].event_id);
    }
  }
  if (!positions.empty()) {
    std::vector<std::string> topics, partitions, streams;
    for (const auto& [key, last] : positions) {
      topics.push_back(std::get<0>(key));
      partitions.push_back(std::to_string(std::get<1>(key)));
      streams.push_back(std::get<2>(key));
    }
    std::vector<db::Param> params = {consumer, db::ArrayLiteral(topics), db::ArrayLiteral(partitions),
                                     db::ArrayLiteral(streams)};
    const std::string keys = "unnest($2::text[], $3::int[], $4::uuid[]) AS k(topic, partition, stream)";
    // The rows exist before they are locked, so that two members handling the
    // same partition during a rebalance wait for each other.
    CF_RETURN_IF_ERROR(tx.Exec(absl::StrCat("INSERT INTO ", schema,
                                            ".stream_positions (consumer, topic, partition, stream, last_seq) "
                                            "SELECT $1, topic, partition, stream, 0 FROM ", keys,
                                            " ON CONFLICT DO NOTHING"),
                               params)
                           .status());
    CF_ASSIGN_OR_RETURN(
        db::Result rows,
        tx.Exec(absl::StrCat("SELECT p.topic, p.partition, p.stream::text, p.last_seq FROM ", schema,
                             ".stream_positions p JOIN ", keys,
                             " USING (topic, partition, stream) WHERE p.consumer = $1 "
                             // Locked in one order by everyone: no deadlock between members.
                             "ORDER BY p.topic, p.partition, p.stream FOR UPDATE OF p"),
                params));
    for (const auto& row : rows) {
      positions[{row.Text(0), static_cast<int32_t>(row.Int(1)), row.Text(2)}] = row.Int(3);
    }
    std::map<Key, int64_t> before = positions;
    for (size_t i = 0; i < claims.size(); ++i) {
      if (!places[i].has_value()) continue;
      int64_t& last = positions[{claims[i].message->topic, claims[i].message->partition, places[i]->stream}];
      if (places[i]->seq > last) {
        fresh[i] = true;
        last = places[i]->seq;
      }
    }
    std::vector<std::string> up_topics, up_partitions, up_streams, up_seqs;
    for (const auto& [key, last] : positions) {
      if (before[key] == last) continue;
      up_topics.push_back(std::get<0>(key));
      up_partitions.push_back(std::to_string(std::get<1>(key)));
      up_streams.push_back(std::get<2>(key));
      up_seqs.push_back(std::to_string(last));
    }
    if (!up_topics.empty()) {
      CF_RETURN_IF_ERROR(
          tx.Exec(absl::StrCat("UPDATE ", schema,
                               ".stream_positions p SET last_seq = k.last_seq, updated_at = now() FROM "
                               "unnest($2::text[], $3::int[], $4::uuid[], $5::bigint[]) AS k(topic, "
                               "partition, stream, last_seq) WHERE p.consumer = $1 AND p.topic = k.topic "
                               "AND p.partition = k.partition AND p.stream = k.stream"),
                  {consumer, db::ArrayLiteral(up_topics), db::ArrayLiteral(up_partitions),
                   db::ArrayLiteral(up_streams), db::ArrayLiteral(up_seqs)})
              .status());
    }
  }
  if (!ids.empty()) {
    CF_ASSIGN_OR_RETURN(db::Result rows,
                        tx.Exec(absl::StrCat("INSERT INTO ", schema,
                                             ".processed_events (consumer, event_id) SELECT $1, "
                                             "unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING event_id"),
                                {consumer, db::ArrayLiteral(ids)}));
    std::set<std::string> first_seen;
    for (const auto& row : rows) first_seen.insert(row.Text(0));
    for (size_t i = 0; i < claims.size(); ++i) {
      // The first of several claims of one id in the batch is the new one.
      if (!places[i].has_value()) fresh[i] = first_seen.erase(claims[i].event_id) > 0;
    }
  }
  return fresh;
}

absl::StatusOr<int64_t> PruneProcessedEvents(db::Pool& pool, const std::string& schema, absl::Time before,
                                             int limit) {
  if (limit < 1) return absl::InvalidArgumentError("prune limit must be positive");
  std::string cutoff = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", before, absl::UTCTimeZone());
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      pool.Exec(absl::StrCat("DELETE FROM ", schema, ".processed_events WHERE ctid = ANY(ARRAY(SELECT ctid FROM ",
                             schema, ".processed_events WHERE processed_at < $1 LIMIT $2))"),
                {cutoff, std::to_string(limit)}));
  // Positions in streams nothing has been read from since (a relay that took
  // over publishes under a new stream; old ones only see rare resends).
  CF_RETURN_IF_ERROR(
      pool.Exec(absl::StrCat("DELETE FROM ", schema, ".stream_positions WHERE updated_at < $1"), {cutoff})
          .status());
  return r.affected_rows();
}

OutboxRelay::OutboxRelay(db::Pool& pool, std::string schema, Producer& producer,
                         RelayOptions options)
    : pool_(pool),
      schema_(std::move(schema)),
      producer_(producer),
      options_(std::move(options)),
      holder_(core::NewId()) {
  if (options_.registry != nullptr) {
    auto& r = *options_.registry;
    prometheus::Labels labels{{"schema", schema_}};
    auto counter = [&](const char* name, const char* help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(labels);
    };
    published_metric_ =
        counter("cloudflux_outbox_published_total", "Outbox events Kafka acknowledged, sent by this replica");
    resent_metric_ = counter("cloudflux_outbox_resent_total",
                             "Of those, sent again with the stream and number of an unconfirmed attempt");
    failures_metric_ = counter("cloudflux_outbox_batch_failures_total",
                               "Relay batches that failed (database or Kafka); they are tried again");
    lease_metric_ = &prometheus::BuildGauge()
                         .Name("cloudflux_outbox_lease_held")
                         .Help("1 while this replica holds the outbox's publishing lease")
                         .Register(r)
                         .Add(labels);
  }
}

OutboxRelay::~OutboxRelay() { Stop(); }

absl::StatusOr<int> OutboxRelay::PublishBatch() {
  absl::StatusOr<int> n = PublishBatchOnce();
  if (!n.ok() && failures_metric_ != nullptr) failures_metric_->Increment();
  return n;
}

absl::StatusOr<int> OutboxRelay::PublishBatchOnce() {
  db::TxOptions once;
  once.max_attempts = 1;
  struct Row {
    std::string seq, stream, stream_seq;
    Message message;
  };
  std::vector<Row> rows;
  std::string stream;
  int resending = 0;
  // 1. Under the lease, take the next rows in order and number the new ones
  //    in this holder's stream; committed before anything is sent, so that a
  //    resend (after a crash or a failed send) carries the same numbers.
  absl::Status claimed = pool_.InTransaction(
      [&](db::Transaction& tx) -> absl::Status {
        rows.clear();
        stream.clear();
        resending = 0;
        // Take the lease if it is free or has run out; renew our own once a
        // tenth of it has passed (the relay polls far more often than that,
        // and an idle poll then writes nothing). The upsert locks the row
        // either way, so this part of every batch runs one relay at a time.
        CF_ASSIGN_OR_RETURN(
            db::Result lease,
            tx.Exec(absl::StrCat(
                        "WITH up AS (INSERT INTO ", schema_, ".outbox_lease (holder, stream, expires_at) "
                        "VALUES ($1, gen_random_uuid(), now() + $2::interval) ON CONFLICT (id) DO UPDATE SET "
                        "stream = CASE WHEN outbox_lease.holder = EXCLUDED.holder THEN outbox_lease.stream "
                        "ELSE EXCLUDED.stream END, holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at "
                        "WHERE (outbox_lease.holder = EXCLUDED.holder AND outbox_lease.expires_at < "
                        "EXCLUDED.expires_at - $2::interval / 10) OR outbox_lease.expires_at < now() "
                        "RETURNING stream::text) "
                        "SELECT stream FROM up UNION ALL SELECT stream::text FROM ", schema_,
                        ".outbox_lease WHERE holder = $1 AND expires_at > now() AND NOT EXISTS (SELECT 1 FROM up)"),
                    {holder_, absl::StrCat(absl::ToInt64Milliseconds(options_.lease), " milliseconds")}));
        if (lease.empty()) return absl::OkStatus();  // another relay publishes
        stream = lease[0].Text(0);
        CF_ASSIGN_OR_RETURN(
            db::Result selected,
            tx.Exec(absl::StrCat("SELECT seq, topic, partition_key, envelope, stream::text, stream_seq FROM (("
                                 "SELECT *, 0 AS part, stream_seq AS pos FROM ", schema_,
                                 ".outbox WHERE stream_seq IS NOT NULL ORDER BY stream_seq LIMIT $1) UNION ALL ("
                                 "SELECT *, 1, seq FROM ", schema_,
                                 ".outbox WHERE stream_seq IS NULL ORDER BY seq LIMIT $1)) o "
                                 "ORDER BY part, pos LIMIT $1"),
                    {std::to_string(options_.batch_size)}));
        std::vector<std::string> fresh;
        for (const auto& r : selected) {
          Row row{r.Text(0), r.IsNull(4) ? stream : r.Text(4), r.IsNull(5) ? "" : r.Text(5), {}};
          row.message.topic = r.Text(1);
          row.message.key = r.Text(2);
          row.message.value = r.Bytes(3);
          if (r.IsNull(5)) {
            fresh.push_back(row.seq);
          } else {
            ++resending;
          }
          rows.push_back(std::move(row));
        }
        if (fresh.empty()) return absl::OkStatus();
        // Numbers from one sequence (they only grow, across streams too),
        // handed out in seq order, the order the rows were selected in.
        CF_ASSIGN_OR_RETURN(db::Result numbers,
                            tx.Exec(absl::StrCat("SELECT nextval('", schema_,
                                                 ".outbox_stream_seq') FROM generate_series(1, $1)"),
                                    {std::to_string(fresh.size())}));
        std::vector<int64_t> sorted;
        for (const auto& r : numbers) sorted.push_back(r.Int(0));
        std::sort(sorted.begin(), sorted.end());
        std::vector<std::string> qs;
        size_t next = 0;
        for (auto& row : rows) {
          if (!row.stream_seq.empty()) continue;
          row.stream_seq = std::to_string(sorted[next++]);
          qs.push_back(row.stream_seq);
        }
        return tx.Exec(absl::StrCat("UPDATE ", schema_,
                                    ".outbox o SET stream = $3::uuid, stream_seq = x.q FROM "
                                    "unnest($1::bigint[], $2::bigint[]) AS x(s, q) WHERE o.seq = x.s"),
                       {absl::StrCat("{", absl::StrJoin(fresh, ","), "}"),
                        absl::StrCat("{", absl::StrJoin(qs, ","), "}"), stream})
            .status();
      },
      once);
  if (!claimed.ok()) return claimed;
  if (lease_metric_ != nullptr) lease_metric_->Set(stream.empty() ? 0 : 1);
  if (!stream.empty() && stream != stream_) {
    core::LogInfo("publishing the outbox", {{"schema", schema_}, {"stream", stream}});
    stream_ = stream;
  }
  if (rows.empty()) return 0;
  if (resending > 0) {
    core::LogWarn("resending outbox events whose delivery was not confirmed",
                  {{"schema", schema_}, {"events", std::to_string(resending)}});
    resent_ += resending;
    if (resent_metric_ != nullptr) resent_metric_->Increment(resending);
  }

  // 2. Send, each message with its stream and number.
  std::vector<Message> messages;
  std::vector<std::string> seqs;
  messages.reserve(rows.size());
  for (auto& row : rows) {
    EventEnvelope envelope;
    if (envelope.ParseFromString(row.message.value)) row.message.headers = EnvelopeHeaders(envelope);
    row.message.headers.emplace_back(kStreamHeader, row.stream);
    row.message.headers.emplace_back(kStreamSeqHeader, row.stream_seq);
    messages.push_back(std::move(row.message));
    seqs.push_back(row.seq);
  }
  CF_RETURN_IF_ERROR(producer_.SendAll(messages, options_.send_timeout));
  if (options_.after_send) options_.after_send(static_cast<int>(messages.size()));

  // 3. Delete what Kafka acknowledged.
  CF_RETURN_IF_ERROR(pool_.Exec(absl::StrCat("DELETE FROM ", schema_, ".outbox WHERE seq = ANY($1::bigint[])"),
                                {absl::StrCat("{", absl::StrJoin(seqs, ","), "}")})
                         .status());
  published_ += static_cast<int64_t>(messages.size());
  if (published_metric_ != nullptr) published_metric_->Increment(static_cast<double>(messages.size()));
  return static_cast<int>(messages.size());
}

void OutboxRelay::Start() {
  stop_ = false;
  thread_ = std::thread([this] {
    absl::Time next_prune = absl::Now();
    while (!stop_) {
      if (options_.processed_retention > absl::ZeroDuration() && absl::Now() >= next_prune) {
        // Forget processed-event ids older than the retention, a chunk at a time.
        constexpr int kChunk = 10000;
        absl::StatusOr<int64_t> pruned;
        do {
          pruned = PruneProcessedEvents(pool_, schema_, absl::Now() - options_.processed_retention, kChunk);
        } while (pruned.ok() && *pruned == kChunk && !stop_);
        if (!pruned.ok()) {
          core::LogWarn("pruning processed events failed",
                        {{"schema", schema_}, {"error", std::string(pruned.status().message())}});
        }
        next_prune = absl::Now() + options_.prune_interval;
      }
      auto n = PublishBatch();
      if (!n.ok()) {
        core::LogWarn("outbox relay batch failed",
                      {{"schema", schema_}, {"error", std::string(n.status().message())}});
      }
      if (!n.ok() || *n < options_.batch_size) {
        // Sleep in small steps so that Stop is prompt.
        absl::Time until = absl::Now() + options_.idle_poll_interval;
        while (!stop_ && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
      }
    }
  });
}

void OutboxRelay::Stop() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
    // Drain what the last moments of the service wrote (bounded; anything
    // left is published by another replica or after a restart).
    absl::Time deadline = absl::Now() + options_.send_timeout;
    while (absl::Now() < deadline) {
      auto n = PublishBatch();
      if (!n.ok() || *n < options_.batch_size) break;
    }
  }
  // Hand the lease over at once instead of letting it run out.
  auto released = pool_.Exec(absl::StrCat("UPDATE ", schema_, ".outbox_lease SET expires_at = now() "
                                          "WHERE holder = $1 AND expires_at > now()"),
                             {holder_});
  if (lease_metric_ != nullptr) lease_metric_->Set(0);
  if (!released.ok()) {
    core::LogWarn("releasing the outbox lease failed",
                  {{"schema", schema_}, {"error", std::string(released.status().message())}});
  }
}

}  // namespace cloudflux::events
