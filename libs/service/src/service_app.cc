#include "cloudflux/service/service_app.h"

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/authn/authenticator.h"
#include "cloudflux/authn/service_token.h"
#include "cloudflux/authn/permissions.h"
#include "cloudflux/core/config.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"

ABSL_FLAG(std::string, listen_address, "",
          "gRPC listen address host:port (default 0.0.0.0:<the service's port>).");
ABSL_FLAG(std::string, metrics_address, "",
          "Prometheus /metrics listen address (default 0.0.0.0:<9100 + service index>).");
ABSL_FLAG(std::string, pg_url, "host=127.0.0.1 port=25432 user=postgres dbname=cloudflux",
          "PostgreSQL connection string (libpq key=value or postgresql:// URI).");
ABSL_FLAG(std::string, pg_password_file, "",
          "File holding the PostgreSQL password (appended to --pg_url).");
ABSL_FLAG(int32_t, pg_pool_size, 8, "Maximum PostgreSQL connections of this process.");
ABSL_FLAG(int32_t, pg_prepared_statements, 256,
          "Statements with parameters each PostgreSQL connection keeps prepared; 0 prepares none "
          "(behind a pooler in transaction mode).");
ABSL_FLAG(std::string, kafka_brokers, "127.0.0.1:9092", "Kafka bootstrap servers.");
ABSL_FLAG(std::string, kafka_properties_file, "",
          "File of librdkafka key=value properties for every producer and consumer of the "
          "service (security.protocol, sasl.*, ssl.*, ...); secrets in it are never logged.");
ABSL_FLAG(std::string, redis_address, "127.0.0.1:26379", "Redis host:port (services that use it).");
ABSL_FLAG(std::string, redis_password_file, "", "File holding the Redis password.");
ABSL_FLAG(absl::Duration, outbox_lease, absl::Seconds(15),
          "How long one replica's outbox relay holds the publishing lease without renewing it "
          "(renewed while it runs; a stopping replica hands it over): after a crash, another "
          "replica, or the restarted one, publishes after this.");
ABSL_FLAG(absl::Duration, processed_events_retention, absl::Hours(24 * 7),
          "How long ids of consumed events are kept to drop redeliveries (0 = forever).");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error.");
ABSL_FLAG(std::string, access_log, "all", "Which calls get an access-log line: all, errors, none.");
ABSL_FLAG(absl::Duration, default_deadline, absl::Seconds(30),
          "Deadline applied to calls that arrive without one.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(20),
          "On SIGTERM, how long in-flight calls may take to finish.");
ABSL_FLAG(absl::Duration, shutdown_delay, absl::ZeroDuration(),
          "On SIGTERM, how long to stay up NOT_SERVING before refusing calls.");
ABSL_FLAG(absl::Duration, health_check_interval, absl::Seconds(2),
          "How often dependencies are checked.");
ABSL_FLAG(absl::Duration, startup_timeout, absl::Seconds(60),
          "How long to wait for PostgreSQL at start before giving up.");
ABSL_FLAG(std::string, token_issuer, "cloudflux-auth", "The iss claim of access tokens.");
ABSL_FLAG(std::string, token_audience, "cloudflux", "The aud claim access tokens must carry.");
ABSL_FLAG(std::string, auth_address, "",
          "The auth service (host:port) whose JWKS verifies callers' tokens.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate (chain) this service serves gRPC with; with --tls_key_file it turns TLS "
          "on. Also its client certificate towards other services when they require one. Reloaded "
          "when the file changes.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA certificates that other services' certificates (and, with "
          "--tls_require_client_cert, clients' certificates) must chain to; with it, calls to "
          "other services (--auth_address) use TLS.");
ABSL_FLAG(bool, tls_require_client_cert, false,
          "Mutual TLS: refuse clients without a certificate from --tls_ca_file.");
ABSL_FLAG(std::string, client_id, "cloudflux-services",
          "Service account this service calls other services as (the auth service's "
          "--bootstrap_service_account).");
ABSL_FLAG(std::string, client_secret_file, "",
          "File holding --client_id's client secret; empty = calls to other services carry no token "
          "(they must run with --insecure_no_auth).");
ABSL_FLAG(bool, insecure_no_auth, false,
          "Serve without authentication (development only; the default is to refuse to start "
          "without --auth_address).");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(30),
          "Interval of server keepalive pings on idle connections.");
ABSL_FLAG(int32_t, grpc_stream_window, 1 << 20,
          "Fixed HTTP/2 receive window per stream in bytes (bounds memory of streaming calls); 0 = "
          "gRPC's adaptive (bandwidth-delay probed) windows.");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(10),
          "How long a keepalive (or shutdown) ping may go unanswered before the connection "
          "is closed.");
ABSL_FLAG(absl::Duration, diagnostics_max_delay, absl::Seconds(30),
          "Longest delay Diagnostics.Echo accepts.");

namespace cloudflux::service {
namespace {

constexpr char kVersion[] = CLOUDFLUX_VERSION;

bool ValidHostPort(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  int port = -1;
  return absl::SimpleAtoi(s.substr(colon + 1), &port) && port >= 0 && port <= 65535;
}

}  // namespace

ServiceApp::~ServiceApp() {
  if (relay_ != nullptr) relay_->Stop();
}

absl::StatusOr<std::unique_ptr<ServiceApp>> ServiceApp::Create(ServiceSpec spec, int argc,
                                                               char** argv) {
  core::ParseFlags(argc, argv,
                   absl::StrCat("cloudflux-", spec.name, ": the CloudFlux ", spec.name,
                                " service. Flags may also be set as CLOUDFLUX_<FLAG> variables."));
  core::LogLevel level = core::LogLevel::kInfo;
  std::string access_log = absl::GetFlag(FLAGS_access_log);
  if (absl::GetFlag(FLAGS_listen_address).empty()) {
    absl::SetFlag(&FLAGS_listen_address, absl::StrCat("0.0.0.0:", spec.default_port));
  }
  if (absl::GetFlag(FLAGS_metrics_address).empty()) {
    absl::SetFlag(&FLAGS_metrics_address,
                  absl::StrCat("0.0.0.0:", 9100 + (spec.default_port - 50050)));
  }
  core::ConfigValidator()
      .Require(core::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level), "log_level",
               "must be one of trace, debug, info, warn, error")
      .Require(access_log == "all" || access_log == "errors" || access_log == "none",
               "access_log", "must be all, errors or none")
      .Require(ValidHostPort(absl::GetFlag(FLAGS_listen_address)), "listen_address",
               "must be host:port")
      .Require(ValidHostPort(absl::GetFlag(FLAGS_metrics_address)), "metrics_address",
               "must be host:port")
      .Require(!absl::GetFlag(FLAGS_pg_url).empty(), "pg_url", "must not be empty")
      .Require(absl::GetFlag(FLAGS_pg_pool_size) >= 1 && absl::GetFlag(FLAGS_pg_pool_size) <= 256,
               "pg_pool_size", "must be between 1 and 256")
      .Require(!absl::GetFlag(FLAGS_kafka_brokers).empty(), "kafka_brokers", "must not be empty")
      .Require(absl::GetFlag(FLAGS_outbox_lease) >= absl::Seconds(1), "outbox_lease",
               "must be at least 1s")
      .Require(!spec.uses_redis || ValidHostPort(absl::GetFlag(FLAGS_redis_address)),
               "redis_address", "must be host:port")
      .Require(spec.authenticates_itself || absl::GetFlag(FLAGS_insecure_no_auth) ||
                   ValidHostPort(absl::GetFlag(FLAGS_auth_address)),
               "auth_address", "must be the auth service's host:port (or pass --insecure_no_auth)")
      .Require(absl::GetFlag(FLAGS_default_deadline) > absl::ZeroDuration(), "default_deadline",
               "must be positive")
      .Require(absl::GetFlag(FLAGS_shutdown_grace) >= absl::ZeroDuration(), "shutdown_grace",
               "must not be negative")
      .Require(absl::GetFlag(FLAGS_health_check_interval) >= absl::Milliseconds(10),
               "health_check_interval", "must be at least 10ms")
      .ExitOnError();
  core::InitLogging(spec.name, level);

  std::unique_ptr<ServiceApp> app(new ServiceApp(std::move(spec)));
  absl::Status s = app->Init();
  if (!s.ok()) return s;
  return app;
}

std::unique_ptr<ServiceApp> ServiceApp::CreateOrExit(ServiceSpec spec, int argc, char** argv) {
  auto app = Create(std::move(spec), argc, argv);
  if (!app.ok()) {
    core::LogError("cannot start", {{"error", std::string(app.status().message())}});
    std::exit(1);
  }
  return std::move(*app);
}

absl::Status ServiceApp::Init() {
  instance_id_ = core::NewId();
  core::LogInfo("starting", {{"version", kVersion}, {"instance_id", instance_id_}});

  kafka_.brokers = absl::GetFlag(FLAGS_kafka_brokers);
  kafka_.client_id = absl::StrCat("cloudflux-", spec_.name);
  if (std::string path = absl::GetFlag(FLAGS_kafka_properties_file); !path.empty()) {
    CF_ASSIGN_OR_RETURN(kafka_.properties, events::LoadKafkaProperties(path));
  }
  CF_RETURN_IF_ERROR(events::CheckKafkaOptions(kafka_));  // before waiting for anything else
  CF_ASSIGN_OR_RETURN(metrics_, metrics::MetricsServer::Start(absl::GetFlag(FLAGS_metrics_address)));

  db::PoolOptions pool_options;
  pool_options.url = absl::GetFlag(FLAGS_pg_url);
  std::string pg_password;
  CF_RETURN_IF_ERROR(core::ReadSecretFile(absl::GetFlag(FLAGS_pg_password_file), &pg_password));
  if (!pg_password.empty()) {
    if (absl::StartsWith(pool_options.url, "postgres")) {
      return absl::InvalidArgumentError(
          "--pg_password_file works with key=value --pg_url only; put the password in the URI");
    }
    pool_options.url += " password='" + pg_password + "'";
  }
  pool_options.max_connections = absl::GetFlag(FLAGS_pg_pool_size);
  pool_options.prepared_statements = absl::GetFlag(FLAGS_pg_prepared_statements);
  pool_options.schema = spec_.schema;
  CF_ASSIGN_OR_RETURN(pool_, db::Pool::Create(pool_options));

  // Wait for PostgreSQL (it may start after us), then migrate.
  absl::Time deadline = absl::Now() + absl::GetFlag(FLAGS_startup_timeout);
  absl::Status ping;
  while (!(ping = pool_->Ping(absl::Seconds(2))).ok()) {
    if (absl::Now() >= deadline) {
      return core::Annotate(ping, absl::StrCat("PostgreSQL not reachable within ",
                                               absl::FormatDuration(absl::GetFlag(FLAGS_startup_timeout))));
    }
    core::LogWarn("waiting for PostgreSQL", {{"error", std::string(ping.message())}});
    absl::SleepFor(absl::Milliseconds(500));
  }
  CF_RETURN_IF_ERROR(core::Annotate(events::MigrateEventTables(*pool_, spec_.schema),
                                    "migrating event tables"));
  CF_RETURN_IF_ERROR(core::Annotate(db::ApplyMigrations(*pool_, spec_.schema, spec_.migrations),
                                    "migrating schema " + spec_.schema));
  CF_RETURN_IF_ERROR(pool_
                         ->Exec(absl::StrCat("INSERT INTO ", spec_.schema,
                                             ".instances (instance_id, version) VALUES ($1, $2)"),
                                {instance_id_, kVersion})
                         .status());

  CF_ASSIGN_OR_RETURN(producer_, events::Producer::Create(kafka_));
  events::RelayOptions relay_options;
  relay_options.processed_retention = absl::GetFlag(FLAGS_processed_events_retention);
  relay_options.lease = absl::GetFlag(FLAGS_outbox_lease);
  relay_options.registry = &metrics_->registry();
  relay_ = std::make_unique<events::OutboxRelay>(*pool_, spec_.schema, *producer_, relay_options);

  bool authenticate = !spec_.authenticates_itself && !absl::GetFlag(FLAGS_insecure_no_auth);
  if (spec_.uses_redis || authenticate) {
    cache::RedisOptions redis;
    redis.address = absl::GetFlag(FLAGS_redis_address);
    CF_RETURN_IF_ERROR(core::ReadSecretFile(absl::GetFlag(FLAGS_redis_password_file), &redis.password));
    CF_ASSIGN_OR_RETURN(redis_, cache::RedisClient::Create(redis));
  }

  server::ServerOptions options;
  options.service_name = spec_.name;
  options.version = kVersion;
  options.listen_address = absl::GetFlag(FLAGS_listen_address);
  options.default_deadline = absl::GetFlag(FLAGS_default_deadline);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.shutdown_delay = absl::GetFlag(FLAGS_shutdown_delay);
  options.health_check_interval = absl::GetFlag(FLAGS_health_check_interval);
  options.diagnostics_max_delay = absl::GetFlag(FLAGS_diagnostics_max_delay);
  options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  options.http2_stream_window_bytes = absl::GetFlag(FLAGS_grpc_stream_window);
  std::string access_log = absl::GetFlag(FLAGS_access_log);
  options.access_log = access_log == "none"     ? server::AccessLog::kNone
                       : access_log == "errors" ? server::AccessLog::kErrors
                                                : server::AccessLog::kAll;
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls.ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  options.tls.require_client_cert = absl::GetFlag(FLAGS_tls_require_client_cert);
  if (options.tls.cert_file.empty() && options.tls.key_file.empty() && !options.tls.require_client_cert) {
    options.tls.ca_file.clear();  // a CA alone: TLS only towards other services
  }
  CF_RETURN_IF_ERROR(core::Annotate(server::ValidateServerTls(options.tls),
                                    "--tls_cert_file/--tls_key_file/--tls_ca_file"));
  // Calls to other services: TLS when a CA is given, presenting this
  // service's certificate for their mutual TLS.
  server::ChannelOptions peers;
  peers.tls.ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  if (!peers.tls.ca_file.empty()) {
    peers.tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
    peers.tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  }
  CF_RETURN_IF_ERROR(core::Annotate(server::ValidateClientTls(peers.tls), "--tls_ca_file"));
  peers_ = peers;
  std::string client_secret;
  CF_RETURN_IF_ERROR(core::ReadSecretFile(absl::GetFlag(FLAGS_client_secret_file), &client_secret));
  if (!client_secret.empty()) {
    if (absl::GetFlag(FLAGS_auth_address).empty()) {
      return absl::InvalidArgumentError("--client_secret_file needs --auth_address");
    }
    service_token_ = std::make_unique<authn::ServiceToken>(absl::GetFlag(FLAGS_auth_address), peers,
                                                           absl::GetFlag(FLAGS_client_id), client_secret);
  }
  runner_ = std::make_unique<server::ServerRunner>(options, metrics_->shared_registry());
  db::Pool* pool = pool_.get();
  runner_->AddDependency("postgres", [pool](absl::Duration t) { return pool->Ping(t); });
  events::Producer* producer = producer_.get();
  runner_->AddDependency("kafka", [producer](absl::Duration t) { return producer->Ping(t); });
  if (redis_ != nullptr) {
    cache::RedisClient* redis = redis_.get();
    runner_->AddDependency("redis", [redis](absl::Duration t) { return redis->Ping(t); });
  }
  if (authenticate) {
    authn::AuthenticatorOptions auth_options;
    auth_options.verify.issuer = absl::GetFlag(FLAGS_token_issuer);
    auth_options.verify.audience = absl::GetFlag(FLAGS_token_audience);
    runner_->SetAuthenticator(std::make_shared<authn::JwtAuthenticator>(
        auth_options, authn::MakeGrpcJwksSource(absl::GetFlag(FLAGS_auth_address), peers),
        std::make_shared<authn::RedisRevocationList>(*redis_),
        authn::DefaultPermissions()));
  } else if (!spec_.authenticates_itself) {
    core::LogWarn("serving WITHOUT authentication (--insecure_no_auth)");
  }
  return absl::OkStatus();
}

int ServiceApp::Run() {
  absl::Status s = runner_->Start();
  if (!s.ok()) {
    core::LogError("cannot start server", {{"error", std::string(s.message())}});
    return 1;
  }
  core::LogInfo("metrics", {{"address", absl::GetFlag(FLAGS_metrics_address)},
                            {"port", std::to_string(metrics_->port())}});
  relay_->Start();
  s = runner_->Run();
  for (auto& fn : on_stop_) fn();
  relay_->Stop();
  if (!s.ok()) {
    core::LogError("server failed", {{"error", std::string(s.message())}});
    return 1;
  }
  return 0;
}

absl::Status ServiceApp::AuthorizeCall(grpc::ClientContext& ctx) {
  if (service_token_ == nullptr) return absl::OkStatus();
  return service_token_->Authorize(ctx);
}

}  // namespace cloudflux::service
