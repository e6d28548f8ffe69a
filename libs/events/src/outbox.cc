#include "cloudflux/events/outbox.h"

#include <google/protobuf/util/time_util.h>

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

}  // namespace

absl::Status MigrateEventTables(db::Pool& pool, const std::string& schema) {
  return db::ApplyMigrations(pool, schema, {{1, "001_event_tables.sql", kEventTablesSql},
                                 {2, "002_delete_on_publish.sql", kDeleteOnPublishSql},
                                 {3, "003_processed_at_index.sql", kProcessedAtIndexSql},
                                 {4, "004_processed_collation.sql", kProcessedCollationSql}},
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

absl::StatusOr<int64_t> PruneProcessedEvents(db::Pool& pool, const std::string& schema, absl::Time before,
                                             int limit) {
  if (limit < 1) return absl::InvalidArgumentError("prune limit must be positive");
  CF_ASSIGN_OR_RETURN(
      db::Result r,
      pool.Exec(absl::StrCat("DELETE FROM ", schema, ".processed_events WHERE ctid = ANY(ARRAY(SELECT ctid FROM ",
                             schema, ".processed_events WHERE processed_at < $1 LIMIT $2))"),
                {absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", before, absl::UTCTimeZone()), std::to_string(limit)}));
  return r.affected_rows();
}

OutboxRelay::OutboxRelay(db::Pool& pool, std::string schema, Producer& producer,
                         RelayOptions options)
    : pool_(pool), schema_(std::move(schema)), producer_(producer), options_(std::move(options)) {}

OutboxRelay::~OutboxRelay() { Stop(); }

absl::StatusOr<int> OutboxRelay::PublishBatch() {
  int published = 0;
  db::TxOptions once;
  once.max_attempts = 1;
  absl::Status s = pool_.InTransaction(
      [&](db::Transaction& tx) -> absl::Status {
        published = 0;
        // One publisher per schema at a time keeps each key's events in order.
        CF_ASSIGN_OR_RETURN(db::Result lock,
                            tx.Exec("SELECT pg_try_advisory_xact_lock(hashtext($1))",
                                    {"cloudflux.outbox." + schema_}));
        if (!lock[0].Bool(0)) return absl::OkStatus();
        CF_ASSIGN_OR_RETURN(
            db::Result rows,
            tx.Exec(absl::StrCat("SELECT seq, topic, partition_key, envelope FROM ", schema_,
                                 ".outbox ORDER BY seq LIMIT $1"),
                    {std::to_string(options_.batch_size)}));
        if (rows.empty()) return absl::OkStatus();
        std::vector<Message> messages;
        std::vector<std::string> seqs;
        for (const auto& row : rows) {
          Message m;
          m.topic = row.Text(1);
          m.key = row.Text(2);
          m.value = row.Bytes(3);
          EventEnvelope envelope;
          if (envelope.ParseFromString(m.value)) m.headers = EnvelopeHeaders(envelope);
          messages.push_back(std::move(m));
          seqs.push_back(row.Text(0));
        }
        CF_RETURN_IF_ERROR(producer_.SendAll(messages, options_.send_timeout));
        if (options_.after_send) options_.after_send(static_cast<int>(messages.size()));
        // By seq, not a range: a row of a transaction still in flight may
        // have a smaller seq than the rows read here.
        CF_RETURN_IF_ERROR(tx.Exec(absl::StrCat("DELETE FROM ", schema_,
                                                ".outbox WHERE seq = ANY($1::bigint[])"),
                                   {absl::StrCat("{", absl::StrJoin(seqs, ","), "}")})
                               .status());
        published = static_cast<int>(messages.size());
        return absl::OkStatus();
      },
      once);
  if (!s.ok()) return s;
  published_ += published;
  return published;
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
  if (!thread_.joinable()) return;
  thread_.join();
  // Drain what the last moments of the service wrote (bounded; anything
  // left is published by another replica or after a restart).
  absl::Time deadline = absl::Now() + options_.send_timeout;
  while (absl::Now() < deadline) {
    auto n = PublishBatch();
    if (!n.ok() || *n < options_.batch_size) break;
  }
}

}  // namespace cloudflux::events
