#include "cloudflux/events/kafka.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"

namespace cloudflux::events {
namespace {

absl::Status KafkaError(RdKafka::ErrorCode code, const std::string& context) {
  std::string msg = absl::StrCat(context, ": ", RdKafka::err2str(code));
  switch (code) {
    case RdKafka::ERR__TIMED_OUT:
    case RdKafka::ERR__TRANSPORT:
    case RdKafka::ERR__ALL_BROKERS_DOWN:
    case RdKafka::ERR__MSG_TIMED_OUT:
    case RdKafka::ERR_REQUEST_TIMED_OUT:
    case RdKafka::ERR_NOT_ENOUGH_REPLICAS:
    case RdKafka::ERR_LEADER_NOT_AVAILABLE:
    case RdKafka::ERR_NOT_LEADER_FOR_PARTITION:
      return absl::UnavailableError(msg);
    case RdKafka::ERR_MSG_SIZE_TOO_LARGE:
    case RdKafka::ERR_INVALID_MSG:
      return absl::InvalidArgumentError(msg);
    case RdKafka::ERR__QUEUE_FULL:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// librdkafka's own log lines and errors, as JSON log lines.
class LogEvents final : public RdKafka::EventCb {
 public:
  void event_cb(RdKafka::Event& event) override {
    if (event.type() != RdKafka::Event::EVENT_LOG && event.type() != RdKafka::Event::EVENT_ERROR) {
      return;
    }
    core::LogLevel level = core::LogLevel::kInfo;
    if (event.type() == RdKafka::Event::EVENT_ERROR ||
        event.severity() <= RdKafka::Event::EVENT_SEVERITY_ERROR) {
      level = core::LogLevel::kWarn;  // transient for a client: it reconnects
    } else if (event.severity() >= RdKafka::Event::EVENT_SEVERITY_DEBUG) {
      level = core::LogLevel::kDebug;
    }
    core::Log(level, "kafka", {{"facility", event.fac()}, {"detail", event.str()}});
  }
};

absl::StatusOr<std::unique_ptr<RdKafka::Conf>> MakeConf(
    const KafkaOptions& kafka, const std::map<std::string, std::string>& defaults) {
  if (kafka.brokers.empty()) return absl::InvalidArgumentError("kafka brokers are empty");
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::map<std::string, std::string> all = defaults;
  all["bootstrap.servers"] = kafka.brokers;
  all["client.id"] = kafka.client_id;
  all["log_level"] = "3";
  for (const auto& [k, v] : kafka.properties) all[k] = v;
  std::string err;
  static LogEvents* log_events = new LogEvents();  // shared by every handle, never destroyed
  conf->set("event_cb", log_events, err);
  for (const auto& [k, v] : all) {
    if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) {
      // librdkafka's message may quote the value: not for secrets.
      if (IsSecretKafkaProperty(k)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "kafka property ", k, " rejected by librdkafka (a secret: its value and the reason are not shown)"));
      }
      return absl::InvalidArgumentError(absl::StrCat("kafka property ", k, "=", v, ": ", err));
    }
  }
  return conf;
}

}  // namespace

absl::Status CheckKafkaOptions(const KafkaOptions& options) {
  return MakeConf(options, {}).status();
}

bool IsSecretKafkaProperty(const std::string& key) {
  std::string k = absl::AsciiStrToLower(key);
  return absl::StrContains(k, "password") || absl::StrContains(k, "secret") ||
         absl::StrContains(k, "key") || absl::StrContains(k, "token") ||
         absl::StrContains(k, "sasl.jaas") || absl::StrContains(k, "oauthbearer.config");
}

absl::StatusOr<std::map<std::string, std::string>> LoadKafkaProperties(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read kafka properties file ", path));
  std::map<std::string, std::string> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l.front() == '#') continue;
    size_t eq = l.find('=');
    absl::string_view key = eq == absl::string_view::npos ? l : absl::StripAsciiWhitespace(l.substr(0, eq));
    if (eq == absl::string_view::npos || key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", n, ": expected key=value (librdkafka property)"));
    }
    out[std::string(key)] = std::string(absl::StripAsciiWhitespace(l.substr(eq + 1)));
  }
  return out;
}

namespace {

// Tracks the delivery reports of one SendAll call. Shared with librdkafka's
// callback so that a timed-out caller may leave early.
struct Batch {
  std::mutex mu;
  std::condition_variable cv;
  size_t remaining = 0;
  absl::Status first_error;
};

class DeliveryReports final : public RdKafka::DeliveryReportCb {
 public:
  void dr_cb(RdKafka::Message& message) override {
    auto* batch = static_cast<std::shared_ptr<Batch>*>(message.msg_opaque());
    if (batch == nullptr) return;
    {
      std::lock_guard lock((*batch)->mu);
      if (message.err() != RdKafka::ERR_NO_ERROR && (*batch)->first_error.ok()) {
        (*batch)->first_error = KafkaError(message.err(), "delivery to " + message.topic_name());
      }
      --(*batch)->remaining;
    }
    (*batch)->cv.notify_all();
    delete batch;
  }
};

}  // namespace

std::string ConsumedMessage::Header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

class Producer::Impl {
 public:
  DeliveryReports reports;
  std::unique_ptr<RdKafka::Producer> producer;
  std::atomic<bool> stop{false};
  std::thread poller;

  ~Impl() {
    if (producer != nullptr) producer->flush(10000);
    stop = true;
    if (poller.joinable()) poller.join();
  }
};

namespace {

absl::StatusOr<std::shared_ptr<Producer::Impl>> MakeProducerImpl(const KafkaOptions& options) {
  CF_ASSIGN_OR_RETURN(auto conf, MakeConf(options, {{"enable.idempotence", "true"},
                                                    {"enable.gapless.guarantee", "true"},
                                                    {"acks", "all"},
                                                    {"linger.ms", "2"},
                                                    {"message.timeout.ms", "30000"},
                                                    {"socket.connection.setup.timeout.ms", "5000"}}));
  auto impl = std::make_shared<Producer::Impl>();
  std::string err;
  conf->set("dr_cb", &impl->reports, err);
  impl->producer.reset(RdKafka::Producer::create(conf.get(), err));
  if (impl->producer == nullptr) return absl::InvalidArgumentError("kafka producer: " + err);
  Producer::Impl* raw = impl.get();
  impl->poller = std::thread([raw] {
    while (!raw->stop) raw->producer->poll(50);
  });
  return impl;
}

}  // namespace

Producer::Producer(KafkaOptions options, std::shared_ptr<Impl> impl)
    : options_(std::move(options)), impl_(std::move(impl)) {}
Producer::~Producer() = default;

absl::StatusOr<std::unique_ptr<Producer>> Producer::Create(const KafkaOptions& options) {
  CF_ASSIGN_OR_RETURN(auto impl, MakeProducerImpl(options));
  return std::unique_ptr<Producer>(new Producer(options, std::move(impl)));
}

std::shared_ptr<Producer::Impl> Producer::Current() const {
  std::lock_guard lock(mu_);
  return impl_;
}

absl::Status Producer::Recreate(const std::shared_ptr<Impl>& failed, const std::string& reason) {
  core::LogWarn("kafka producer hit a fatal error; recreating it", {{"error", reason}});
  auto fresh = MakeProducerImpl(options_);
  if (!fresh.ok()) return fresh.status();
  std::lock_guard lock(mu_);
  if (impl_ == failed) impl_ = std::move(*fresh);  // another caller may have replaced it already
  return absl::UnavailableError(absl::StrCat("kafka producer failed fatally (", reason,
                                             "); a new one replaces it"));
}

absl::Status Producer::Enqueue(Impl& impl, const Message& m, const std::shared_ptr<void>& batch_ptr,
                               absl::Time deadline) {
  auto batch = std::static_pointer_cast<Batch>(batch_ptr);
  while (true) {
    RdKafka::Headers* headers = RdKafka::Headers::create();
    for (const auto& [k, v] : m.headers) headers->add(k, v.data(), v.size());
    auto* opaque = new std::shared_ptr<Batch>(batch);
    RdKafka::ErrorCode rc = impl.producer->produce(
        m.topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
        const_cast<char*>(m.value.data()), m.value.size(), m.key.data(), m.key.size(), 0, headers,
        opaque);
    if (rc == RdKafka::ERR_NO_ERROR) return absl::OkStatus();  // headers now owned by rdkafka
    delete headers;
    delete opaque;
    if (rc != RdKafka::ERR__QUEUE_FULL || absl::Now() >= deadline) {
      return KafkaError(rc, "produce to " + m.topic);
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

absl::Status Producer::SendAll(const std::vector<Message>& messages, absl::Duration timeout) {
  std::shared_ptr<Impl> impl = Current();
  absl::Status sent = SendAllWith(*impl, messages, timeout);
  if (!sent.ok()) {
    std::string reason;
    if (impl->producer->fatal_error(reason) != RdKafka::ERR_NO_ERROR) return Recreate(impl, reason);
  }
  return sent;
}

absl::Status Producer::SendAllWith(Impl& impl, const std::vector<Message>& messages,
                                   absl::Duration timeout) {
  auto batch = std::make_shared<Batch>();
  batch->remaining = messages.size();
  absl::Time deadline = absl::Now() + timeout;
  for (size_t i = 0; i < messages.size(); ++i) {
    absl::Status handed_over = Enqueue(impl, messages[i], batch, deadline);
    if (!handed_over.ok()) {
      // Messages not handed over will never be reported.
      std::lock_guard lock(batch->mu);
      batch->remaining -= messages.size() - i;
      if (batch->first_error.ok()) batch->first_error = handed_over;
      break;
    }
  }
  std::unique_lock lock(batch->mu);
  if (!batch->cv.wait_until(lock, absl::ToChronoTime(deadline),
                            [&] { return batch->remaining == 0; })) {
    return absl::UnavailableError(absl::StrCat(batch->remaining, " of ", messages.size(),
                                               " messages not acknowledged within ",
                                               absl::FormatDuration(timeout)));
  }
  return batch->first_error;
}

void Producer::InjectFatalErrorForTest(const std::string& reason) {
  rd_kafka_test_fatal_error(Current()->producer->c_ptr(), RD_KAFKA_RESP_ERR__GAPLESS_GUARANTEE,
                            reason.c_str());
}

absl::Status Producer::Ping(absl::Duration timeout) {
  RdKafka::Metadata* md = nullptr;
  RdKafka::ErrorCode rc = Current()->producer->metadata(
      false, nullptr, &md, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  std::unique_ptr<RdKafka::Metadata> owned(md);
  if (rc != RdKafka::ERR_NO_ERROR) return KafkaError(rc, "kafka metadata");
  if (md->brokers()->empty()) return absl::UnavailableError("kafka: no brokers in metadata");
  return absl::OkStatus();
}

class Consumer::Impl {
 public:
  ConsumerOptions options;
  Handler handler;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer;
  std::unique_ptr<Producer> dlq;  // created on first dead letter
  std::atomic<bool> stop{false};
  mutable std::mutex stats_mu;
  Stats stats;

  ~Impl() {
    if (consumer != nullptr) consumer->close();  // commits stored offsets, leaves the group
  }

  absl::Status StoreOffset(const RdKafka::Message& m) {
    std::vector<RdKafka::TopicPartition*> offsets = {
        RdKafka::TopicPartition::create(m.topic_name(), m.partition(), m.offset() + 1)};
    RdKafka::ErrorCode rc = consumer->offsets_store(offsets);
    RdKafka::TopicPartition::destroy(offsets);
    // A partition revoked meanwhile cannot store: the next owner re-reads it.
    if (rc != RdKafka::ERR_NO_ERROR && rc != RdKafka::ERR__STATE) {
      return KafkaError(rc, "store offset");
    }
    return absl::OkStatus();
  }

  absl::Status DeadLetter(const ConsumedMessage& m, const absl::Status& error, int attempts) {
    if (dlq == nullptr) {
      auto producer = Producer::Create(options.kafka);
      if (!producer.ok()) return producer.status();
      dlq = std::move(*producer);
    }
    Message out;
    out.topic = m.topic + options.dead_letter_suffix;
    out.key = m.key;
    out.value = m.value;
    out.headers = m.headers;
    out.headers.emplace_back(kDlqErrorHeader, std::string(error.message()));
    out.headers.emplace_back(kDlqCodeHeader, absl::StatusCodeToString(error.code()));
    out.headers.emplace_back(kDlqTopicHeader, m.topic);
    out.headers.emplace_back(kDlqPartitionHeader, std::to_string(m.partition));
    out.headers.emplace_back(kDlqOffsetHeader, std::to_string(m.offset));
    out.headers.emplace_back(kDlqAttemptsHeader, std::to_string(attempts));
    out.headers.emplace_back(kDlqGroupHeader, options.group_id);
    return dlq->Send(out, absl::Seconds(10));
  }
};

Consumer::Consumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Consumer::~Consumer() = default;

absl::StatusOr<std::unique_ptr<Consumer>> Consumer::Create(ConsumerOptions options,
                                                           Handler handler) {
  if (options.group_id.empty()) return absl::InvalidArgumentError("consumer group id is empty");
  if (options.topics.empty()) return absl::InvalidArgumentError("no topics to consume");
  if (options.max_attempts < 1) return absl::InvalidArgumentError("max_attempts must be >= 1");
  const int64_t session_ms = absl::ToInt64Milliseconds(options.session_timeout);
  if (session_ms < 1000) return absl::InvalidArgumentError("session_timeout must be >= 1s");
  const int64_t fetch_wait_ms = absl::ToInt64Milliseconds(options.fetch_wait);
  if (fetch_wait_ms < 0 || fetch_wait_ms > 300000) {
    return absl::InvalidArgumentError("fetch_wait must be between 0 and 300s");
  }
  CF_ASSIGN_OR_RETURN(auto conf,
                      MakeConf(options.kafka, {{"group.id", options.group_id},
                                               {"enable.auto.commit", "true"},
                                               {"enable.auto.offset.store", "false"},
                                               {"auto.commit.interval.ms", "500"},
                                               {"auto.offset.reset", options.auto_offset_reset},
                                               {"partition.assignment.strategy", options.assignment_strategy},
                                               {"allow.auto.create.topics", "true"},
                                               {"topic.metadata.refresh.interval.ms", "1000"},
                                               {"session.timeout.ms", std::to_string(session_ms)},
                                               {"fetch.wait.max.ms", std::to_string(fetch_wait_ms)},
                                               {"heartbeat.interval.ms", std::to_string(std::max<int64_t>(100, session_ms / 10))}}));
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->handler = std::move(handler);
  std::string err;
  impl->consumer.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (impl->consumer == nullptr) return absl::InvalidArgumentError("kafka consumer: " + err);
  RdKafka::ErrorCode rc = impl->consumer->subscribe(impl->options.topics);
  if (rc != RdKafka::ERR_NO_ERROR) return KafkaError(rc, "subscribe");
  return std::unique_ptr<Consumer>(new Consumer(std::move(impl)));
}

namespace {

// One message from librdkafka, or nullopt when there was none in time.
absl::StatusOr<std::optional<ConsumedMessage>> ConsumeOne(RdKafka::KafkaConsumer& consumer,
                                                          absl::Duration timeout,
                                                          std::unique_ptr<RdKafka::Message>* raw) {
  std::unique_ptr<RdKafka::Message> msg(
      consumer.consume(static_cast<int>(absl::ToInt64Milliseconds(timeout))));
  switch (msg->err()) {
    case RdKafka::ERR_NO_ERROR: break;
    case RdKafka::ERR__TIMED_OUT:
    case RdKafka::ERR__PARTITION_EOF:
    case RdKafka::ERR_UNKNOWN_TOPIC_OR_PART:  // not created yet; it will be
      return std::nullopt;
    default:
      return KafkaError(msg->err(), "consume");
  }
  ConsumedMessage m;
  m.topic = msg->topic_name();
  m.partition = msg->partition();
  m.offset = msg->offset();
  if (msg->key() != nullptr) m.key = *msg->key();
  m.value.assign(static_cast<const char*>(msg->payload()), msg->len());
  if (RdKafka::Headers* headers = msg->headers()) {
    for (const auto& h : headers->get_all()) {
      m.headers.emplace_back(h.key(), std::string(static_cast<const char*>(h.value()), h.value_size()));
    }
  }
  *raw = std::move(msg);
  return std::optional<ConsumedMessage>(std::move(m));
}

}  // namespace

absl::StatusOr<size_t> Consumer::PollBatch(size_t max, absl::Duration timeout,
                                           const BatchHandler& handler) {
  std::vector<ConsumedMessage> batch;
  std::vector<std::unique_ptr<RdKafka::Message>> raw;
  while (batch.size() < max) {
    std::unique_ptr<RdKafka::Message> msg;
    CF_ASSIGN_OR_RETURN(auto m, ConsumeOne(*impl_->consumer, batch.empty() ? timeout : absl::ZeroDuration(), &msg));
    if (!m.has_value()) break;
    batch.push_back(std::move(*m));
    raw.push_back(std::move(msg));
  }
  if (batch.empty()) return 0;
  absl::Status status;
  for (int attempt = 1;; ++attempt) {
    try {
      status = handler(batch);
    } catch (const std::exception& e) {
      status = absl::InternalError(absl::StrCat("handler threw: ", e.what()));
    }
    if (status.ok() || !core::IsRetryable(status) || attempt >= impl_->options.max_attempts || impl_->stop) {
      break;
    }
    {
      std::lock_guard lock(impl_->stats_mu);
      ++impl_->stats.retries;
    }
    absl::SleepFor(impl_->options.retry_backoff * (1 << std::min(attempt - 1, 6)));
  }
  if (!status.ok()) {
    // Rewind every partition to its first message of this batch.
    std::map<std::pair<std::string, int32_t>, int64_t> first;
    for (const auto& m : batch) first.try_emplace({m.topic, m.partition}, m.offset);
    for (const auto& [tp, offset] : first) {
      RdKafka::TopicPartition* p = RdKafka::TopicPartition::create(tp.first, tp.second, offset);
      impl_->consumer->seek(*p, 5000);
      delete p;
    }
    return core::Annotate(status, "batch not handled; it will be consumed again");
  }
  // The last message of each partition carries the offset to store.
  std::map<std::pair<std::string, int32_t>, const RdKafka::Message*> last;
  for (const auto& msg : raw) last[{msg->topic_name(), msg->partition()}] = msg.get();
  for (const auto& [tp, msg] : last) CF_RETURN_IF_ERROR(impl_->StoreOffset(*msg));
  std::lock_guard lock(impl_->stats_mu);
  impl_->stats.handled += static_cast<int64_t>(batch.size());
  return batch.size();
}

absl::StatusOr<int64_t> Consumer::Lag() {
  std::vector<RdKafka::TopicPartition*> parts;
  RdKafka::ErrorCode rc = impl_->consumer->assignment(parts);
  if (rc == RdKafka::ERR_NO_ERROR && !parts.empty()) rc = impl_->consumer->position(parts);
  int64_t lag = 0;
  for (RdKafka::TopicPartition* p : parts) {
    int64_t low = 0, high = 0;
    if (p->offset() < 0 ||  // nothing read from it yet
        impl_->consumer->get_watermark_offsets(p->topic(), p->partition(), &low, &high) != RdKafka::ERR_NO_ERROR ||
        high < 0) {
      continue;
    }
    lag += std::max<int64_t>(0, high - p->offset());
  }
  RdKafka::TopicPartition::destroy(parts);
  if (rc != RdKafka::ERR_NO_ERROR) return KafkaError(rc, "consumer position");
  return lag;
}

absl::StatusOr<bool> Consumer::PollOnce(absl::Duration timeout) {
  std::unique_ptr<RdKafka::Message> msg;
  CF_ASSIGN_OR_RETURN(auto consumed, ConsumeOne(*impl_->consumer, timeout, &msg));
  if (!consumed.has_value()) return false;
  ConsumedMessage m = std::move(*consumed);

  absl::Status status;
  int attempt = 1;
  for (;; ++attempt) {
    try {
      status = impl_->handler(m);
    } catch (const std::exception& e) {
      status = absl::InternalError(absl::StrCat("handler threw: ", e.what()));
    }
    if (status.ok()) {
      CF_RETURN_IF_ERROR(impl_->StoreOffset(*msg));
      std::lock_guard lock(impl_->stats_mu);
      ++impl_->stats.handled;
      return true;
    }
    if (!core::IsRetryable(status) && status.code() != absl::StatusCode::kInternal) break;
    if (attempt >= impl_->options.max_attempts || impl_->stop) break;
    {
      std::lock_guard lock(impl_->stats_mu);
      ++impl_->stats.retries;
    }
    absl::SleepFor(impl_->options.retry_backoff * (1 << std::min(attempt - 1, 6)));
  }
  if (impl_->stop && core::IsRetryable(status) && attempt < impl_->options.max_attempts) {
    // Stopping: leave the message for the next owner of the partition.
    return false;
  }
  core::LogWarn("dead-lettering message", {{"topic", m.topic},
                                           {"partition", std::to_string(m.partition)},
                                           {"offset", std::to_string(m.offset)},
                                           {"error", std::string(status.message())}});
  absl::Status dlq = impl_->DeadLetter(m, status, attempt);
  if (!dlq.ok()) {
    // Never drop a message: rewind so that it is consumed again.
    RdKafka::TopicPartition* tp =
        RdKafka::TopicPartition::create(m.topic, m.partition, m.offset);
    impl_->consumer->seek(*tp, 5000);
    delete tp;
    return core::Annotate(dlq, "dead-letter publish failed; message will be retried");
  }
  CF_RETURN_IF_ERROR(impl_->StoreOffset(*msg));
  std::lock_guard lock(impl_->stats_mu);
  ++impl_->stats.dead_lettered;
  return true;
}

void Consumer::Run() {
  while (!impl_->stop) {
    auto r = PollOnce(absl::Milliseconds(200));
    if (!r.ok()) {
      core::LogWarn("consumer poll failed", {{"group", impl_->options.group_id},
                                             {"error", std::string(r.status().message())}});
      absl::SleepFor(absl::Milliseconds(200));
    }
  }
}

absl::StatusOr<int> Consumer::Drain(absl::Duration timeout) {
  int handled = 0;
  for (;;) {
    CF_ASSIGN_OR_RETURN(bool one, PollOnce(timeout));
    if (!one || impl_->stop) return handled;
    ++handled;
  }
}

void Consumer::Stop() { impl_->stop = true; }

Consumer::Stats Consumer::stats() const {
  std::lock_guard lock(impl_->stats_mu);
  return impl_->stats;
}

}  // namespace cloudflux::events
