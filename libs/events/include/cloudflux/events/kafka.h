#pragma once
// Kafka for CloudFlux services, with librdkafka kept behind this header.
//
// Producer: idempotent (enable.idempotence=true, hence acks=all) and
// gapless (enable.gapless.guarantee: a message of a partition is never
// written after an earlier one of that partition failed — librdkafka makes
// that a fatal error instead, and the producer is then recreated), reports
// each delivery back to the caller.
// Consumer: a consumer-group member (roundrobin rebalancing) that
// hands messages one at a time to a handler and stores a message's offset
// for commit only after the handler succeeded. A message whose handler keeps
// failing goes to a dead-letter topic with the error and its origin in
// headers, then the consumer moves on.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cloudflux::events {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Message {
  std::string topic;
  std::string key;
  std::string value;
  Headers headers;
};

struct ConsumedMessage {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  Headers headers;
  // Value of the first header named `name`, or empty.
  std::string Header(const std::string& name) const;
};

struct KafkaOptions {
  std::string brokers;  // bootstrap "host:port,host:port"
  std::string client_id = "cloudflux";
  // Extra librdkafka properties (security.protocol, sasl.*, ...).
  std::map<std::string, std::string> properties;
};

// librdkafka properties from a file of `key=value` lines (blank lines and
// lines starting with '#' ignored; spaces around key and value trimmed; the
// value may contain '='), e.g. security.protocol, sasl.*, ssl.* for a
// cluster that needs them. INVALID_ARGUMENT names the line that is not
// `key=value`; NOT_FOUND when the file cannot be read. Values are never
// put into a status.
absl::StatusOr<std::map<std::string, std::string>> LoadKafkaProperties(const std::string& path);

// Whether librdkafka accepts every property of `options` (INVALID_ARGUMENT
// naming the first it rejects, as Producer/Consumer creation would); no
// connection is made.
absl::Status CheckKafkaOptions(const KafkaOptions& options);

// Whether a librdkafka property holds a secret (passwords, keys, secrets):
// its value never goes into a status or a log line.
bool IsSecretKafkaProperty(const std::string& key);

// Thread-safe. Destroying it flushes outstanding messages (up to 10 s).
class Producer {
 public:
  static absl::StatusOr<std::unique_ptr<Producer>> Create(const KafkaOptions& options);
  ~Producer();

  // Sends all messages and waits until every one is acknowledged by all
  // in-sync replicas or `timeout` passes. OK only if all were delivered;
  // otherwise the first error (UNAVAILABLE for timeouts/transport errors).
  absl::Status SendAll(const std::vector<Message>& messages, absl::Duration timeout);
  absl::Status Send(const Message& message, absl::Duration timeout) {
    return SendAll({message}, timeout);
  }

  // Health check: a metadata round trip to the cluster within `timeout`.
  absl::Status Ping(absl::Duration timeout);

  // Tests: makes librdkafka raise a fatal error on the current handle.
  void InjectFatalErrorForTest(const std::string& reason);

  class Impl;

 private:
  Producer(KafkaOptions options, std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> Current() const;
  // After a fatal error of `failed` (librdkafka's handle is unusable then),
  // a new handle replaces it; the status says what happened.
  absl::Status Recreate(const std::shared_ptr<Impl>& failed, const std::string& reason);
  static absl::Status SendAllWith(Impl& impl, const std::vector<Message>& messages,
                                  absl::Duration timeout);
  static absl::Status Enqueue(Impl& impl, const Message& message, const std::shared_ptr<void>& batch,
                              absl::Time deadline);
  KafkaOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<Impl> impl_;  // guarded by mu_
};

struct ConsumerOptions {
  KafkaOptions kafka;
  std::string group_id;
  std::vector<std::string> topics;
  // Attempts per message for retryable handler errors before dead-lettering.
  // Non-retryable errors (INVALID_ARGUMENT, ...) are dead-lettered at once.
  int max_attempts = 3;
  absl::Duration retry_backoff = absl::Milliseconds(100);
  // Dead-letter topic = origin topic + this suffix.
  std::string dead_letter_suffix = ".dlq";
  // Where a group without committed offsets starts: "earliest" or "latest".
  std::string auto_offset_reset = "earliest";
  // partition.assignment.strategy. Not "cooperative-sticky" with librdkafka
  // 2.0.2 (Debian 12): it aborts when such a consumer is closed before its
  // first assignment or during a rebalance (librdkafka #4312, fixed in 2.3).
  std::string assignment_strategy = "roundrobin";
  // A member silent for this long is dropped from the group and its
  // partitions handed to the others. Heartbeats go out every tenth of it.
  // Rebalances in the dev broker take about this long, so tests shorten it.
  absl::Duration session_timeout = absl::Seconds(10);
  // fetch.wait.max.ms: how long a fetch may wait at the broker for data.
  // Kafka answers as soon as data arrives, so on a real cluster this only
  // sets how often an idle consumer asks (about ten fetches a second per
  // broker at 100 ms). The dev broker (librdkafka's mock cluster) always
  // waits the whole time when it has nothing, so this is the latency a
  // caught-up consumer adds to every new event there (librdkafka's default,
  // 500 ms, halved the statistics ingest's rate on it).
  absl::Duration fetch_wait = absl::Milliseconds(100);
};

// Header names on dead-lettered messages.
inline constexpr char kDlqErrorHeader[] = "cloudflux-dlq-error";
inline constexpr char kDlqCodeHeader[] = "cloudflux-dlq-code";
inline constexpr char kDlqTopicHeader[] = "cloudflux-dlq-origin-topic";
inline constexpr char kDlqPartitionHeader[] = "cloudflux-dlq-origin-partition";
inline constexpr char kDlqOffsetHeader[] = "cloudflux-dlq-origin-offset";
inline constexpr char kDlqAttemptsHeader[] = "cloudflux-dlq-attempts";
inline constexpr char kDlqGroupHeader[] = "cloudflux-dlq-consumer-group";

// Runs on the thread that calls Run/PollOnce. Not thread-safe apart from Stop.
class Consumer {
 public:
  using Handler = std::function<absl::Status(const ConsumedMessage&)>;

  static absl::StatusOr<std::unique_ptr<Consumer>> Create(ConsumerOptions options,
                                                          Handler handler);
  ~Consumer();

  // Handles at most one message, waiting up to `timeout` for it. Returns
  // true if a message was handled (or dead-lettered).
  absl::StatusOr<bool> PollOnce(absl::Duration timeout);
  // Handles messages until none has come for `timeout`; returns how many.
  absl::StatusOr<int> Drain(absl::Duration timeout);

  // Batch mode (the handler passed to Create is not used): waits up to
  // `timeout` for a first message, takes whatever else is already there up
  // to `max`, and hands them to `handler` in order. Offsets are stored only
  // when it succeeds; retryable failures are retried (max_attempts, with
  // backoff), and a batch that still fails is rewound so that nothing is
  // lost. The handler must skip (and count) messages it cannot use itself:
  // there is no dead-lettering here. Returns how many were handled.
  using BatchHandler = std::function<absl::Status(const std::vector<ConsumedMessage>&)>;
  absl::StatusOr<size_t> PollBatch(size_t max, absl::Duration timeout, const BatchHandler& handler);
  // Messages in the partitions assigned to this member after the next one
  // it will hand out (the high watermarks last fetched minus its
  // positions; partitions it has not read from yet do not count). Local:
  // no broker round trip. Same thread as the polls.
  absl::StatusOr<int64_t> Lag();
  // Polls until Stop() is called.
  void Run();
  void Stop();

  struct Stats {
    int64_t handled = 0;       // handler succeeded
    int64_t dead_lettered = 0;
    int64_t retries = 0;
  };
  Stats stats() const;

  class Impl;

 private:
  explicit Consumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cloudflux::events
