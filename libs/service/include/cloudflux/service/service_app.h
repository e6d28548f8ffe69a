#pragma once
// ServiceApp: what every CloudFlux service binary shares, built once from the
// common flags. It owns, in start order: JSON logging, the Prometheus
// endpoint, the PostgreSQL pool (with the service's schema migrated, event
// tables included), the Kafka producer, the Redis client (for services that
// use it), the outbox relay of the service's schema, and the ServerRunner
// whose health follows Postgres, Kafka and Redis.
//
// main.cpp stays a composition root:
//   int main(int argc, char** argv) {
//     cloudflux::server::BlockShutdownSignals();
//     auto app = cloudflux::service::ServiceApp::CreateOrExit(spec, argc, argv);
//     ... build the service's own objects from app->pool(), app->producer() ...
//     app->runner().RegisterService(&service, Generated::service_full_name());
//     return app->Run();
//   }
//
// Common flags (each also read from CLOUDFLUX_<NAME>): listen_address,
// metrics_address, pg_url, pg_pool_size, kafka_brokers,
// kafka_properties_file, redis_address,
// log_level, default_deadline, shutdown_grace, shutdown_delay,
// health_check_interval, startup_timeout, access_log, auth_address,
// insecure_no_auth, token_issuer, token_audience, client_id,
// client_secret_file, tls_*.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cloudflux/cache/redis.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/metrics/metrics.h"
#include "cloudflux/authn/service_token.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/server/server_runner.h"

namespace cloudflux::service {

// Defined in every service binary by cloudflux_service(): the SQL files of
// services/<name>/schema, embedded at build time.
std::vector<db::Migration> EmbeddedMigrations();

struct ServiceSpec {
  std::string name;         // "storage-adapter"
  std::string schema;       // its PostgreSQL schema, "storage"
  int default_port = 50051;  // gRPC; metrics default to 9100 + (port - 50050)
  bool uses_redis = false;
  // The auth service installs its own authenticator; every other service
  // verifies tokens against --auth_address.
  bool authenticates_itself = false;
  std::vector<db::Migration> migrations = EmbeddedMigrations();
};

class ServiceApp {
 public:
  // Parses flags/env, validates them (exits 2 with a message on bad config),
  // connects (retrying until --startup_timeout), migrates, and prepares the
  // runner. Errors are final: log and exit non-zero.
  static absl::StatusOr<std::unique_ptr<ServiceApp>> Create(ServiceSpec spec, int argc,
                                                            char** argv);
  // Create, or log the error and exit(1).
  static std::unique_ptr<ServiceApp> CreateOrExit(ServiceSpec spec, int argc, char** argv);
  ~ServiceApp();

  db::Pool& pool() { return *pool_; }
  events::Producer& producer() { return *producer_; }
  // The Kafka settings the producer uses, for the service's consumers.
  const events::KafkaOptions& kafka_options() const { return kafka_; }
  // Null unless the service uses Redis or verifies tokens (revocation list).
  cache::RedisClient* redis() { return redis_.get(); }
  metrics::MetricsServer& metrics() { return *metrics_; }
  server::ServerRunner& runner() { return *runner_; }
  const ServiceSpec& spec() const { return spec_; }
  const std::string& instance_id() const { return instance_id_; }

  // Calls to other CloudFlux services: the channel settings (TLS as the
  // service's own flags say) and the service account's token on each call
  // (nothing without --client_secret_file).
  const server::ChannelOptions& peer_channel_options() const { return peers_; }
  absl::Status AuthorizeCall(grpc::ClientContext& ctx);
  // Runs `fn` during a graceful shutdown, after the server has finished its
  // last call and before the outbox relay stops (a final flush into the
  // outbox is still published). In the order added.
  void OnStop(std::function<void()> fn) { on_stop_.push_back(std::move(fn)); }

  // Starts serving and the outbox relay; blocks until SIGTERM/SIGINT, then
  // shuts down gracefully. Returns the process exit code.
  int Run();

 private:
  explicit ServiceApp(ServiceSpec spec) : spec_(std::move(spec)) {}
  absl::Status Init();

  ServiceSpec spec_;
  std::string instance_id_;
  std::unique_ptr<metrics::MetricsServer> metrics_;
  std::unique_ptr<db::Pool> pool_;
  events::KafkaOptions kafka_;
  std::unique_ptr<events::Producer> producer_;
  std::unique_ptr<cache::RedisClient> redis_;
  std::unique_ptr<events::OutboxRelay> relay_;
  std::unique_ptr<server::ServerRunner> runner_;
  server::ChannelOptions peers_;
  std::unique_ptr<authn::ServiceToken> service_token_;
  std::vector<std::function<void()>> on_stop_;
};

}  // namespace cloudflux::service
