#include "cloudflux/testing/testing.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <random>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"

namespace cloudflux::testing {

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout,
             absl::Duration every) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(every);
  }
}

namespace {
size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
}  // namespace

absl::StatusOr<std::string> HttpGet(const std::string& url, absl::Duration timeout) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) return absl::UnavailableError(absl::StrCat(url, ": ", curl_easy_strerror(rc)));
  if (code < 200 || code > 299) return absl::UnavailableError(absl::StrCat(url, ": HTTP ", code));
  return body;
}

absl::StatusOr<std::string> RequiredEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    return absl::FailedPreconditionError(
        absl::StrCat(name, " is not set: run the tests through `scripts/dev test`, which starts "
                           "the servers they need"));
  }
  return std::string(value);
}

absl::StatusOr<std::string> TestPostgresUrl() { return RequiredEnv("CLOUDFLUX_TEST_PG_URL"); }
absl::StatusOr<std::string> TestKafkaBootstrap() { return RequiredEnv("CLOUDFLUX_TEST_KAFKA"); }
absl::StatusOr<std::string> TestRedisAddress() { return RequiredEnv("CLOUDFLUX_TEST_REDIS"); }
absl::StatusOr<std::string> TestS3Endpoint() { return RequiredEnv("CLOUDFLUX_TEST_S3_ENDPOINT"); }
absl::StatusOr<std::string> TestAzureEndpoint() { return RequiredEnv("CLOUDFLUX_TEST_AZURE_ENDPOINT"); }
absl::StatusOr<std::string> TestRadosgwEndpoint() { return RequiredEnv("CLOUDFLUX_TEST_RADOSGW_ENDPOINT"); }

absl::StatusOr<std::string> RunNodeScript(const std::string& script,
                                          const std::vector<std::string>& args,
                                          absl::Duration timeout) {
  CF_ASSIGN_OR_RETURN(std::string source, RequiredEnv("CLOUDFLUX_SOURCE_DIR"));
  std::vector<std::string> argv = {"node", source + "/tests/node/" + script};
  argv.insert(argv.end(), args.begin(), args.end());
  CF_ASSIGN_OR_RETURN(auto child, ChildProcess::Start(argv));
  int code = child->Wait(timeout);
  if (code != 0) {
    return absl::InternalError(absl::StrCat("node ", script, " exited with ", code, ": ", child->Output()));
  }
  return child->Output();
}

namespace {
// Replaces the dbname=... part of a key/value conninfo, or appends it.
std::string WithDatabase(const std::string& url, const std::string& db) {
  std::string out;
  std::istringstream in(url);
  std::string part;
  while (in >> part) {
    if (part.rfind("dbname=", 0) == 0) continue;
    out += part + " ";
  }
  return out + "dbname=" + db;
}
}  // namespace

absl::StatusOr<std::unique_ptr<ScratchDatabase>> ScratchDatabase::Create() {
  auto admin = TestPostgresUrl();
  if (!admin.ok()) return admin.status();
  std::unique_ptr<ScratchDatabase> db(new ScratchDatabase());
  db->admin_url_ = *admin;
  std::string id = core::NewId();
  id.erase(std::remove(id.begin(), id.end(), '-'), id.end());
  db->name_ = "t_" + id;
  try {
    pqxx::connection conn(db->admin_url_);
    pqxx::nontransaction tx(conn);
    tx.exec("CREATE DATABASE " + db->name_);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("create scratch database: ", e.what()));
  }
  db->url_ = WithDatabase(db->admin_url_, db->name_);
  return db;
}

ScratchDatabase::~ScratchDatabase() {
  try {
    pqxx::connection conn(admin_url_);
    pqxx::nontransaction tx(conn);
    tx.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  } catch (const std::exception&) {
  }
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
    const std::string& log_path) {
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->log_path_ = log_path.empty()
                         ? absl::StrCat(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp", "/cloudflux-child-", core::NewId(), ".log")
                         : log_path;
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    int fd = open(child->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());  // a bare name is looked up in PATH
    _exit(127);
  }
  child->pid_ = pid;
  return child;
}

ChildProcess::~ChildProcess() {
  if (Running()) {
    kill(pid_, SIGKILL);
    Wait(absl::Seconds(5));
  }
}

void ChildProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool ChildProcess::Running() {
  if (exit_code_ >= 0 || pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return r == 0;
}

int ChildProcess::Wait(absl::Duration timeout) {
  WaitFor([this] { return !Running(); }, timeout, absl::Milliseconds(10));
  return exit_code_;
}

std::string ChildProcess::Output() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

// Binds a listening-capable socket to 127.0.0.1:port (0 = the kernel's
// choice); the port bound, or -1.
int TryBind(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int got = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) got = ntohs(addr.sin_port);
  }
  close(fd);
  return got;
}

// Claims `port` for this process among all test processes on the machine
// (tests run side by side): false if another PickFreePort handed it out in
// the last 10 minutes. Between the pick and the child's bind the port is
// free, so a bind check alone lets two processes pick the same one.
bool ClaimPort(int port) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/cloudflux-test-ports");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::string path = absl::StrCat(dir, "/", port);
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    struct stat st;
    if (errno != EEXIST || stat(path.c_str(), &st) != 0 || time(nullptr) - st.st_mtime < 600) return false;
    unlink(path.c_str());  // a claim old enough that its service is listening or gone
  }
  return false;
}

}  // namespace

int PickFreePort() {
  // Below the ephemeral range, so that no outgoing connection (of a client,
  // a broker, a database) takes the port between now and the child's bind.
  int low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low;
  thread_local std::mt19937 rng(static_cast<uint32_t>(getpid()) ^ std::random_device{}());
  if (low > 10000) {
    std::uniform_int_distribution<int> pick(10000, low - 1);
    for (int attempt = 0; attempt < 64; ++attempt) {
      int port = TryBind(pick(rng));
      if (port > 0 && ClaimPort(port)) return port;
    }
  }
  return TryBind(0);
}

namespace {

std::string TempBase() { return std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp"; }

// Master key and bootstrap admin password files for the auth service.
std::map<std::string, std::string> AuthSecretsEnv() {
  std::string dir = absl::StrCat(TempBase(), "/cloudflux-test-secrets-", getpid());
  std::filesystem::create_directories(dir);
  std::string key = dir + "/master.key", password = dir + "/admin.password";
  std::ofstream(key) << "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
  std::ofstream(password) << kTestAdminPassword << "\n";
  return {{"CLOUDFLUX_MASTER_KEY_FILE", key}, {"CLOUDFLUX_BOOTSTRAP_ADMIN_PASSWORD_FILE", password}};
}

}  // namespace

absl::StatusOr<ServiceProcess> StartServiceBinary(const std::string& name, const std::string& pg_url,
                                                  const std::map<std::string, std::string>& extra_env) {
  ServiceProcess s;
  s.port = PickFreePort();
  s.metrics_port = PickFreePort();
  std::map<std::string, std::string> env = {
      {"CLOUDFLUX_LISTEN_ADDRESS", absl::StrCat("127.0.0.1:", s.port)},
      {"CLOUDFLUX_METRICS_ADDRESS", absl::StrCat("127.0.0.1:", s.metrics_port)},
      {"CLOUDFLUX_PG_URL", pg_url},
      {"CLOUDFLUX_KAFKA_BROKERS", TestKafkaBootstrap().value_or("")},
      {"CLOUDFLUX_REDIS_ADDRESS", TestRedisAddress().value_or("")},
      {"CLOUDFLUX_HEALTH_CHECK_INTERVAL", "100ms"},
      {"CLOUDFLUX_STARTUP_TIMEOUT", "20s"},
      // A killed service's relay lease runs out quickly for its restart.
      {"CLOUDFLUX_OUTBOX_LEASE", "3s"},
      {"CLOUDFLUX_DATA_DIR", absl::StrCat(TempBase(), "/cloudflux-data-", name, "-", s.port)},
  };
  if (name == "auth") {
    for (auto& [k, v] : AuthSecretsEnv()) env[k] = v;
    // Every test calls from 127.0.0.1 against the one test Redis: their
    // failed logins would add up to the per-peer limit and lock out the
    // next test's. The per-name limit stays as shipped.
    env["CLOUDFLUX_MAX_FAILED_LOGINS_PER_PEER"] = "100000";
  } else {
    env["CLOUDFLUX_INSECURE_NO_AUTH"] = "true";
  }
  // Each classification instance in a consumer group of its own: tests run
  // side by side on one dev broker, and a member another test killed would
  // hold the shared group's rebalances (and every other member's shutdown,
  // which waits for its pending join) until its session times out. Short
  // sessions, as the tests' own consumers use: the dev broker makes every
  // join wait about a session timeout.
  if (name == "classification") {
    env["CLOUDFLUX_STATS_GROUP"] = "test-" + core::NewId();
    env["CLOUDFLUX_STATS_SESSION_TIMEOUT"] = "3s";
  }
  if (name == "migration") {  // the same for its placement decisions
    env["CLOUDFLUX_PLACEMENT_GROUP"] = "test-" + core::NewId();
    env["CLOUDFLUX_PLACEMENT_SESSION_TIMEOUT"] = "3s";
  }
  if (name == "prediction") {  // the same for its histories
    env["CLOUDFLUX_HISTORY_GROUP"] = "test-" + core::NewId();
    env["CLOUDFLUX_HISTORY_SESSION_TIMEOUT"] = "3s";
  }
  for (const auto& [k, v] : extra_env) env[k] = v;
  // A caller that chose the address (a restart on the same port) gets it.
  if (auto it = extra_env.find("CLOUDFLUX_LISTEN_ADDRESS"); it != extra_env.end()) {
    absl::string_view address = it->second;
    if (size_t colon = address.rfind(':'); colon != absl::string_view::npos) {
      (void)absl::SimpleAtoi(address.substr(colon + 1), &s.port);
    }
  }
  auto child = ChildProcess::Start({absl::StrCat(BinaryDir(), "/services/", name, "/cloudflux-", name)}, env);
  if (!child.ok()) return child.status();
  s.process = std::move(*child);
  return s;
}

std::string BinaryDir() {
  const char* dir = std::getenv("CLOUDFLUX_BINARY_DIR");
  return dir != nullptr ? dir : CLOUDFLUX_DEFAULT_BINARY_DIR;
}

namespace {
constexpr char kPgBin[] = "/usr/lib/postgresql/15/bin";

// Runs a shell command, as `postgres` when we are root (PostgreSQL refuses
// to run as root).
absl::Status RunAsPostgres(const std::string& command) {
  std::string full = geteuid() == 0 ? absl::StrCat("runuser -u postgres -- ", command) : command;
  int rc = std::system(full.c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat("`", full, "` exited with ", rc));
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<std::unique_ptr<PostgresProcess>> PostgresProcess::Create() {
  std::unique_ptr<PostgresProcess> pg(new PostgresProcess());
  std::string base = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  pg->dir_ = absl::StrCat(base, "/cloudflux-pg-", core::NewId());
  std::filesystem::create_directories(pg->dir_);
  if (geteuid() == 0) {
    passwd* pw = getpwnam("postgres");
    if (pw == nullptr) return absl::FailedPreconditionError("no postgres user");
    chown(pg->dir_.c_str(), pw->pw_uid, pw->pw_gid);
  }
  pg->port_ = PickFreePort();
  auto s = RunAsPostgres(absl::StrCat(kPgBin, "/initdb -D ", pg->dir_,
                                      "/data -A trust -U postgres -E UTF8 --locale=C >", pg->dir_, "/initdb.log 2>&1"));
  if (!s.ok()) return s;
  s = pg->Start();
  if (!s.ok()) return s;
  return pg;
}

absl::Status PostgresProcess::PgCtl(const std::string& action) {
  std::string opts = absl::StrCat("-o '-p ", port_, " -k ", dir_, " -c listen_addresses=127.0.0.1'");
  return RunAsPostgres(absl::StrCat(kPgBin, "/pg_ctl -D ", dir_, "/data ", opts, " -w -t 30 -l ",
                                    dir_, "/pg.log ", action, " >/dev/null 2>&1"));
}

absl::Status PostgresProcess::Start() { return PgCtl("start"); }
absl::Status PostgresProcess::Stop() { return PgCtl("-m fast stop"); }

PostgresProcess::~PostgresProcess() {
  (void)PgCtl("-m immediate stop");
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string PostgresProcess::url() const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=postgres dbname=postgres connect_timeout=2");
}

absl::Status MakeTestCertificates(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto run = [](const std::string& command) -> absl::Status {
    if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) {
      return absl::InternalError("failed: " + command);
    }
    return absl::OkStatus();
  };
  auto path = [&](const std::string& name) { return dir + "/" + name; };
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  for (const char* ca : {"ca", "other-ca"}) {
    absl::Status s = run(absl::StrCat("openssl req -x509 ", key, " -days 2 -subj /CN=", ca, " -keyout ",
                                      path(absl::StrCat(ca, ".key")), " -out ", path(absl::StrCat(ca, ".pem"))));
    if (!s.ok()) return s;
  }
  const std::vector<std::pair<std::string, std::string>> leaves = {
      {"server", "ca"}, {"server2", "ca"}, {"client", "ca"}, {"stranger", "other-ca"}};
  for (const auto& [name, ca] : leaves) {
    std::ofstream(path(name + ".ext"))
        << "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n";
    absl::Status s = run(absl::StrCat("openssl req ", key, " -subj /CN=", name, " -keyout ",
                                      path(name + ".key"), " -out ", path(name + ".csr")));
    if (s.ok()) {
      s = run(absl::StrCat("openssl x509 -req -days 2 -in ", path(name + ".csr"), " -CA ",
                           path(ca + ".pem"), " -CAkey ", path(ca + ".key"),
                           " -CAcreateserial -extfile ", path(name + ".ext"), " -out ",
                           path(name + ".pem")));
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace cloudflux::testing
