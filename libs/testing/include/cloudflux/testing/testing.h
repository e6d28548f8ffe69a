#pragma once
// Helpers for tests that run against real servers: polling with a deadline
// (never sleeps to wait), HTTP GET, child processes, and the loopback
// endpoints of the servers the test runner started.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cloudflux::testing {

// Polls `condition` every `every` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout,
             absl::Duration every = absl::Milliseconds(20));

// GET http://... ; the body on a 2xx answer.
absl::StatusOr<std::string> HttpGet(const std::string& url, absl::Duration timeout = absl::Seconds(5));

// The value of a required environment variable set by the test runner
// (scripts/dev test), or a failed status naming it.
absl::StatusOr<std::string> RequiredEnv(const char* name);
// CLOUDFLUX_TEST_PG_URL, CLOUDFLUX_TEST_KAFKA, CLOUDFLUX_TEST_REDIS.
absl::StatusOr<std::string> TestPostgresUrl();
absl::StatusOr<std::string> TestKafkaBootstrap();
absl::StatusOr<std::string> TestRedisAddress();
absl::StatusOr<std::string> TestS3Endpoint();  // s3rver, "http://127.0.0.1:port"
// azurite's blob endpoint of its development account,
// "http://127.0.0.1:port/devstoreaccount1" (container cloudflux-test exists).
absl::StatusOr<std::string> TestAzureEndpoint();
// Ceph's S3 gateway (radosgw on a one-OSD memstore cluster), s3rver's
// credentials, the same buckets: CLOUDFLUX_TEST_RADOSGW_ENDPOINT.
absl::StatusOr<std::string> TestRadosgwEndpoint();
inline constexpr char kAzuriteAccount[] = "devstoreaccount1";
inline constexpr char kAzuriteKey[] =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

// TLS material for tests, made with the openssl command line in `dir`:
// <name>.pem and <name>.key for two CAs, "ca" and "other-ca"; signed by
// "ca": "server" and "server2" (for localhost and 127.0.0.1) and "client";
// signed by "other-ca": "stranger". Every leaf is good for servers and
// clients. Valid for two days.
absl::Status MakeTestCertificates(const std::string& dir);

// Runs tests/node/<script> (of CLOUDFLUX_SOURCE_DIR) with Node.js: the
// independent clients (official SDKs) that cross-check what CloudFlux
// stores. Its output (stdout and stderr) when it exits 0, else an error
// carrying that output.
absl::StatusOr<std::string> RunNodeScript(const std::string& script,
                                          const std::vector<std::string>& args,
                                          absl::Duration timeout = absl::Seconds(60));

// A fresh database on the test PostgreSQL server, dropped on destruction, so
// that tests never see each other's schemas.
class ScratchDatabase {
 public:
  static absl::StatusOr<std::unique_ptr<ScratchDatabase>> Create();
  ~ScratchDatabase();
  const std::string& url() const { return url_; }

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

// A child process with its stdout+stderr in a file. Killed (SIGKILL) on
// destruction if still running.
class ChildProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
      const std::string& log_path = "");
  ~ChildProcess();
  int pid() const { return pid_; }
  void Signal(int sig);
  // Exit code (or 128+signal) once exited within timeout; -1 on timeout.
  int Wait(absl::Duration timeout);
  bool Running();
  std::string Output() const;  // the log file's contents

 private:
  int pid_ = -1;
  int exit_code_ = -1;
  std::string log_path_;
};

// A private PostgreSQL cluster (initdb + pg_ctl) on a free loopback port, for
// tests that stop and restart the database. Runs as the `postgres` user when
// the test runs as root.
class PostgresProcess {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresProcess>> Create();
  ~PostgresProcess();
  absl::Status Start();
  absl::Status Stop();
  std::string url() const;
  int port() const { return port_; }

 private:
  absl::Status PgCtl(const std::string& action);
  std::string dir_;
  int port_ = 0;
};

// The bootstrap admin password StartServiceBinary gives the auth service.
inline constexpr char kTestAdminPassword[] = "correct horse battery staple";

// A service binary on free loopback ports.
struct ServiceProcess {
  std::unique_ptr<ChildProcess> process;
  int port = 0;
  int metrics_port = 0;
  std::string target() const { return "127.0.0.1:" + std::to_string(port); }
};

// Starts services/<name>/cloudflux-<name> against `pg_url` and the test
// Kafka and Redis, with a private data dir, 100 ms health checks and a 20 s
// startup timeout. The auth service gets a test master key, the
// kTestAdminPassword admin and no practical per-peer login limit (every test
// shares 127.0.0.1); the others run with --insecure_no_auth.
// `extra_env` overrides any of it (a CLOUDFLUX_LISTEN_ADDRESS given there is
// the port returned: a restart on the same address).
absl::StatusOr<ServiceProcess> StartServiceBinary(const std::string& name, const std::string& pg_url,
                                                  const std::map<std::string, std::string>& extra_env = {});

// A TCP port that was free a moment ago on 127.0.0.1, below the ephemeral
// range (outgoing connections cannot take it before the caller binds it),
// and handed out to no other test process in the last 10 minutes (claims
// are files in $TMPDIR/cloudflux-test-ports).
int PickFreePort();

// Directory holding the built binaries (CLOUDFLUX_BINARY_DIR, set by CMake).
std::string BinaryDir();

}  // namespace cloudflux::testing
