#pragma once
#include <span>
// The transactional outbox and consumer-side de-duplication.
//
// A service writes its business change and the event describing it in one
// database transaction (Outbox::Enqueue), so either both happen or neither.
// OutboxRelay publishes the rows in order and deletes them once Kafka has
// acknowledged them; if it dies between publishing and deleting, the rows are
// published again: delivery is at least once. Consumers make the effect
// exactly once in the same transaction as their own change, either by
// recording each event id and skipping ids they have seen (MarkProcessed),
// or, without a row per event, by the position of each message in its
// relay's stream (ClaimMessages).

#include <google/protobuf/message.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <vector>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/v1/envelope.pb.h"

namespace cloudflux::events {

// Creates <schema>.outbox and <schema>.processed_events (tracked in
// <schema>.events_migrations, apart from the service's own migrations).
absl::Status MigrateEventTables(db::Pool& pool, const std::string& schema);

// Builds an envelope with a fresh UUIDv7 id, the time from `clock`, and
// `payload` packed into the Any.
cloudflux::events::v1::EventEnvelope MakeEnvelope(const std::string& source,
                                                  const std::string& subject,
                                                  const std::string& partition_key,
                                                  const google::protobuf::Message& payload,
                                                  const core::Clock& clock = core::SystemClock::Get());

// Decodes a consumed message; INVALID_ARGUMENT if it is not an envelope with
// an id and a type.
absl::StatusOr<cloudflux::events::v1::EventEnvelope> ParseEnvelope(const ConsumedMessage& message);

// The envelopes of a consumed batch, each with the message it came from
// (for ClaimMessages); messages that are not envelopes are only counted.
struct DecodedBatch {
  std::vector<cloudflux::events::v1::EventEnvelope> envelopes;
  std::vector<const ConsumedMessage*> origins;
  int undecodable = 0;
};
DecodedBatch DecodeMessages(const std::vector<ConsumedMessage>& messages);

// Kafka headers carried with every published envelope (CloudEvents binary
// mode attribute names), so that tools can route without decoding.
Headers EnvelopeHeaders(const cloudflux::events::v1::EventEnvelope& envelope);

// An envelope serialized for the outbox (done once, outside any transaction).
struct PreparedEvent {
  std::string id;
  std::string partition_key;
  std::string bytea;  // db::Bytea of the serialized envelope
};
absl::StatusOr<PreparedEvent> PrepareEvent(const cloudflux::events::v1::EventEnvelope& envelope);

class Outbox {
 public:
  explicit Outbox(std::string schema) : schema_(std::move(schema)) {}
  // Adds the event to the outbox inside the caller's transaction.
  absl::Status Enqueue(db::Transaction& tx, const std::string& topic,
                       const cloudflux::events::v1::EventEnvelope& envelope) const {
    return EnqueueAll(tx, topic, {envelope});
  }
  // Several events, one INSERT, in order.
  absl::Status EnqueueAll(db::Transaction& tx, const std::string& topic,
                          const std::vector<cloudflux::events::v1::EventEnvelope>& envelopes) const;
  // Already prepared events, one INSERT, in order.
  absl::Status EnqueuePrepared(db::Transaction& tx, const std::string& topic,
                               std::span<const PreparedEvent> events) const;
  // The INSERT statement of EnqueuePrepared, its parameters appended to
  // `params` (numbered after those already there), for callers that make it
  // part of a larger statement (a data-modifying WITH: one round trip).
  std::string InsertStatement(const std::string& topic, std::span<const PreparedEvent> events,
                              std::vector<db::Param>& params) const;

 private:
  std::string schema_;
};

// Headers the relay adds to every message: the stream it published it in (a
// UUID, new whenever a relay takes the outbox over) and its number there,
// which only grows within the stream and which a resent message keeps.
inline constexpr char kStreamHeader[] = "cloudflux-stream";
inline constexpr char kStreamSeqHeader[] = "cloudflux-stream-seq";

// One message to claim: the consumed message (null for an event that did
// not come from Kafka) and its event id.
struct Claim {
  const ConsumedMessage* message = nullptr;
  std::string event_id;
};

// Exactly once without a row per event: in the caller's transaction, says
// for each claim (in consumption order) whether it is new. A message with
// stream headers is new if its number is above the last one `consumer`
// applied from that stream in that topic partition (kept in
// <schema>.stream_positions, one row per consumer, partition and stream; the
// rows are locked, so two members briefly handling one partition during a
// rebalance wait for each other): Kafka keeps a partition in order, the
// relay's producer is gapless and numbers only grow, so anything at or
// below the last number is a redelivery or a resend. Other messages (no
// relay headers) fall back to their event ids (<schema>.processed_events).
absl::StatusOr<std::vector<bool>> ClaimMessages(db::Transaction& tx, const std::string& schema,
                                                const std::string& consumer,
                                                const std::vector<Claim>& claims);

// Records that `consumer` processed `event_id`, in the caller's transaction.
// Returns false if it had already been processed: skip the effect then.
absl::StatusOr<bool> MarkProcessed(db::Transaction& tx, const std::string& schema,
                                   const std::string& consumer, const std::string& event_id);

// Deletes up to `limit` ids of <schema>.processed_events recorded before
// `before`, and the stream positions not advanced since then; returns how
// many ids. An event redelivered after its id was pruned
// would take effect again, so the retention must exceed any redelivery
// (relay re-sends come within seconds, consumer rewinds within a batch).
absl::StatusOr<int64_t> PruneProcessedEvents(db::Pool& pool, const std::string& schema, absl::Time before,
                                             int limit);

struct RelayOptions {
  int batch_size = 200;
  absl::Duration idle_poll_interval = absl::Milliseconds(100);
  absl::Duration send_timeout = absl::Seconds(10);
  // Where the relay's metrics go (none when null): cloudflux_outbox_
  // published_total, _resent_total, _batch_failures_total and
  // _lease_held (1 while this relay publishes), labelled by schema.
  prometheus::Registry* registry = nullptr;
  // How long the publishing lease lasts without renewal (the holder's polls
  // renew it once a tenth of it has passed): after a relay dies, another
  // replica takes over after this.
  absl::Duration lease = absl::Seconds(30);
  // Called after a batch was acknowledged by Kafka and before it is deleted (tests use it to kill the relay at the worst moment).
  std::function<void(int published)> after_send;
  // The relay also prunes the schema's processed-event ids older than this
  // (<= 0: never), every prune_interval.
  absl::Duration processed_retention = absl::Hours(24 * 7);
  absl::Duration prune_interval = absl::Minutes(10);
};

// Publishes the outbox of one schema. Several replicas may run one each:
// one at a time holds the lease (<schema>.outbox_lease, renewed by the
// holder's polls, handed over by Stop, taken over when it runs out), which keeps
// per-key order. A holder publishes under a stream of its own: each batch
// first numbers its new rows (one sequence, so numbers only grow) and
// commits that, then sends, then deletes what Kafka acknowledged. Rows
// numbered but not deleted (a failed send, a crash) go out again first, with
// their stream and number, so consumers recognise them (ClaimMessages).
// Start/Stop from one thread.
class OutboxRelay {
 public:
  OutboxRelay(db::Pool& pool, std::string schema, Producer& producer, RelayOptions options = {});
  ~OutboxRelay();

  // Publishes up to batch_size events; returns how many.
  absl::StatusOr<int> PublishBatch();
  // Runs PublishBatch in a background thread until Stop.
  void Start();
  // Stops the thread, then publishes what is still unsent (up to
  // send_timeout; the rest waits for another replica or a restart).
  void Stop();
  int64_t published() const { return published_.load(); }
  // Of those, sent again with the stream and number of an earlier attempt.
  int64_t resent() const { return resent_.load(); }

 private:
  absl::StatusOr<int> PublishBatchOnce();
  db::Pool& pool_;
  std::string schema_;
  Producer& producer_;
  RelayOptions options_;
  std::string holder_;  // this relay's name in the lease
  std::string stream_;  // the stream it last published under (PublishBatch's thread)
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> published_{0}, resent_{0};
  // Metrics, when options_.registry is set.
  prometheus::Counter* published_metric_ = nullptr;
  prometheus::Counter* resent_metric_ = nullptr;
  prometheus::Counter* failures_metric_ = nullptr;
  prometheus::Gauge* lease_metric_ = nullptr;
  std::thread thread_;
};

}  // namespace cloudflux::events
