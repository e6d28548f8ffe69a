#include "cloudflux/db/db.h"

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <fstream>
#include <mutex>
#include <pqxx/pqxx>
#include <regex>
#include <sstream>
#include <atomic>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/names.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"

namespace cloudflux::db {

std::string TimestampLiteral(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}
namespace {

absl::Status FromException(const std::exception& e) {
  std::string what = e.what();
  while (!what.empty() && what.back() == '\n') what.pop_back();
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return absl::UnavailableError(absl::StrCat("commit outcome unknown: ", what));
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    return absl::UnavailableError(absl::StrCat("database connection lost: ", what));
  }
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) {
    return absl::AbortedError(absl::StrCat("transaction conflict: ", what));
  }
  if (dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr) {
    return absl::AlreadyExistsError(what);
  }
  if (dynamic_cast<const pqxx::integrity_constraint_violation*>(&e) != nullptr) {
    return absl::FailedPreconditionError(what);
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    if (sql->sqlstate() == "57014") return absl::DeadlineExceededError(what);  // query_canceled
    if (sql->sqlstate().rfind("08", 0) == 0 || sql->sqlstate().rfind("57P", 0) == 0) {
      return absl::UnavailableError(what);  // connection exception / admin shutdown
    }
    if (sql->sqlstate() == "22P02" || sql->sqlstate() == "22001") {
      return absl::InvalidArgumentError(what);  // invalid text representation / too long
    }
    if (sql->sqlstate() == "22021") {  // character_not_in_repertoire: bytes that are no UTF-8
      return absl::InvalidArgumentError(absl::StrCat("text is not valid UTF-8: ", what));
    }
  }
  return absl::InternalError(what);
}

bool IsRetryableTx(const absl::Status& s) {
  return s.code() == absl::StatusCode::kAborted ||
         (s.code() == absl::StatusCode::kUnavailable &&
          s.message().find("commit outcome unknown") == absl::string_view::npos);
}

std::string WithConnectTimeout(const std::string& url, absl::Duration timeout) {
  if (url.find("connect_timeout") != std::string::npos) return url;
  int64_t secs = std::max<int64_t>(1, absl::ToInt64Seconds(timeout));
  if (url.rfind("postgres://", 0) == 0 || url.rfind("postgresql://", 0) == 0) {
    return absl::StrCat(url, url.find('?') == std::string::npos ? "?" : "&",
                        "connect_timeout=", secs);
  }
  return absl::StrCat(url, " connect_timeout=", secs);
}



}  // namespace

std::string Bytea(std::string_view bytes) { return "\\x" + core::HexEncode(bytes); }

std::string ArrayLiteral(const std::vector<Param>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    if (!items[i].has_value()) {
      out += "NULL";
      continue;
    }
    out += '"';
    for (char c : *items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string ArrayLiteral(const std::vector<std::string>& items) {
  return ArrayLiteral(std::vector<Param>(items.begin(), items.end()));
}

int64_t Row::Int(size_t column) const {
  int64_t v = 0;
  (void)absl::SimpleAtoi(Text(column), &v);
  return v;
}

double Row::Double(size_t column) const {
  double v = 0;
  (void)absl::SimpleAtod(Text(column), &v);
  return v;
}

std::string Row::Bytes(size_t column) const {
  std::string text = Text(column);
  if (text.rfind("\\x", 0) != 0) return text;
  std::string out;
  out.reserve((text.size() - 2) / 2);
  auto hex = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t i = 2; i + 1 < text.size(); i += 2) {
    out.push_back(static_cast<char>(hex(text[i]) << 4 | hex(text[i + 1])));
  }
  return out;
}

// A pool connection and the statements prepared on it: SQL text -> name.
struct PooledConnection {
  explicit PooledConnection(const std::string& url) : pq(url) {}
  pqxx::connection pq;
  absl::flat_hash_map<std::string, std::string> prepared;
  int limit = 0;  // PoolOptions::prepared_statements
  // A schema change outdated a prepared statement: the connection is closed
  // when it comes back to the pool, whatever the caller made of the error.
  bool outdated = false;
};

namespace {

// PostgreSQL refuses to run a prepared statement whose result columns a
// schema change has altered ("cached plan must not change result type").
bool IsStalePlan(const std::exception& e) {
  const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
  return sql != nullptr && sql->sqlstate() == "0A000" &&
         std::string_view(e.what()).find("cached plan") != std::string_view::npos;
}

}  // namespace

absl::StatusOr<Result> Transaction::Exec(std::string_view sql, const std::vector<Param>& params) {
  auto& work = *static_cast<pqxx::transaction_base*>(work_);
  auto& conn = *static_cast<PooledConnection*>(conn_);
  // libpq sends text parameters as C strings: PostgreSQL would see one cut
  // at its first NUL byte (and text can hold none), so such a value is
  // refused here rather than silently shortened.
  // Text that is no UTF-8 is refused too, whatever the database's encoding
  // (a SQL_ASCII database would store it as it is).
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].has_value()) continue;
    if (params[i]->find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter $", i + 1, " contains a NUL byte, which text cannot hold"));
    }
    if (!core::IsValidUtf8(*params[i])) {
      return absl::InvalidArgumentError(absl::StrCat("parameter $", i + 1, " is not valid UTF-8"));
    }
  }
  try {
    std::vector<const char*> raw;
    raw.reserve(params.size());
    for (const auto& p : params) raw.push_back(p.has_value() ? p->c_str() : nullptr);
    pqxx::result r;
    if (params.empty()) {
      r = work.exec(std::string(sql));
    } else if (auto it = conn.prepared.find(absl::string_view(sql.data(), sql.size()));
               it != conn.prepared.end()) {
      r = work.exec_prepared(it->second, pqxx::prepare::make_dynamic_params(raw));
    } else if (static_cast<int>(conn.prepared.size()) < conn.limit) {
      // Kept whatever this run gives: libpqxx holds the name from here on
      // (one that failed to prepare is prepared again on its next run), so a
      // name is never given to a second statement.
      std::string name = absl::StrCat("cf", conn.prepared.size());
      conn.pq.prepare(name, std::string(sql));
      const std::string& kept = conn.prepared.emplace(std::string(sql), std::move(name)).first->second;
      r = work.exec_prepared(kept, pqxx::prepare::make_dynamic_params(raw));
    } else {
      r = work.exec_params(std::string(sql), pqxx::prepare::make_dynamic_params(raw));
    }
    Result out;
    out.affected_rows_ = r.affected_rows();
    out.rows_.reserve(r.size());
    for (const auto& row : r) {
      Row o;
      o.values_.reserve(row.size());
      for (const auto& field : row) {
        if (field.is_null()) {
          o.values_.emplace_back(std::nullopt);
        } else {
          o.values_.emplace_back(std::string(field.c_str(), field.size()));
        }
      }
      out.rows_.push_back(std::move(o));
    }
    return out;
  } catch (const std::exception& e) {
    if (IsStalePlan(e)) {
      // A new connection prepares against the new schema; Pool::Exec and
      // InTransaction retry UNAVAILABLE there.
      conn.outdated = true;
      return absl::UnavailableError(absl::StrCat("prepared statement outdated by a schema change: ", e.what()));
    }
    return FromException(e);
  }
}

class Pool::Impl {
 public:
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<PooledConnection>> idle;
  int open = 0;  // idle + in use
};

Pool::Pool(PoolOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {}
Pool::~Pool() = default;

absl::StatusOr<std::unique_ptr<Pool>> Pool::Create(PoolOptions options) {
  if (options.url.empty()) return absl::InvalidArgumentError("database url is empty");
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("max_connections must be at least 1");
  }
  if (options.prepared_statements < 0) {
    return absl::InvalidArgumentError("prepared_statements must be 0 or more");
  }
  if (!options.schema.empty() && !IsValidIdentifier(options.schema)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid schema name '", options.schema, "'"));
  }
  options.url = WithConnectTimeout(options.url, options.connect_timeout);
  return std::unique_ptr<Pool>(new Pool(std::move(options)));
}

namespace {

// A connection checked out of the pool; returned on destruction unless
// marked broken.
class Lease {
 public:
  Lease(Pool::Impl* impl, std::unique_ptr<PooledConnection> conn)
      : impl_(impl), conn_(std::move(conn)) {}
  ~Lease() {
    std::lock_guard lock(impl_->mu);
    if (conn_ != nullptr && conn_->pq.is_open() && !broken_ && !conn_->outdated) {
      impl_->idle.push_back(std::move(conn_));
    } else {
      --impl_->open;
    }
    impl_->cv.notify_one();
  }
  pqxx::connection& conn() { return conn_->pq; }
  PooledConnection* pooled() { return conn_.get(); }
  void MarkBroken() { broken_ = true; }

 private:
  Pool::Impl* impl_;
  std::unique_ptr<PooledConnection> conn_;
  bool broken_ = false;
};

}  // namespace

// Checks out an idle connection, or opens one while under max_connections,
// or waits up to `timeout` for one to come back.
static absl::StatusOr<std::unique_ptr<Lease>> Acquire(Pool::Impl* impl, const PoolOptions& options,
                                                      absl::Duration timeout) {
  {
    std::unique_lock lock(impl->mu);
    bool ok = impl->cv.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] {
      return !impl->idle.empty() || impl->open < options.max_connections;
    });
    if (!ok) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no database connection free within ", absl::FormatDuration(timeout), " (",
                       options.max_connections, " in use)"));
    }
    if (!impl->idle.empty()) {
      auto conn = std::move(impl->idle.back());
      impl->idle.pop_back();
      return std::make_unique<Lease>(impl, std::move(conn));
    }
    ++impl->open;
  }
  try {
    auto conn = std::make_unique<PooledConnection>(options.url);
    conn->limit = options.prepared_statements;
    pqxx::nontransaction setup(conn->pq);
    setup.exec(absl::StrCat("SET statement_timeout = ",
                            absl::ToInt64Milliseconds(options.statement_timeout)));
    if (!options.schema.empty()) {
      setup.exec(absl::StrCat("SET search_path TO ", options.schema, ", public"));
    }
    setup.commit();
    return std::make_unique<Lease>(impl, std::move(conn));
  } catch (const std::exception& e) {
    std::lock_guard lock(impl->mu);
    --impl->open;
    impl->cv.notify_one();
    std::string what = e.what();
    while (!what.empty() && what.back() == '\n') what.pop_back();
    return absl::UnavailableError(absl::StrCat("cannot connect to database: ", what));
  }
}

absl::Status Pool::InTransaction(const std::function<absl::Status(Transaction&)>& fn,
                                 const TxOptions& tx_options) {
  absl::Status last;
  absl::Duration backoff = absl::Milliseconds(5);
  for (int attempt = 1; attempt <= std::max(1, tx_options.max_attempts); ++attempt) {
    auto lease = Acquire(impl_.get(), options_, options_.acquire_timeout);
    if (!lease.ok()) return lease.status();
    absl::Status status;
    try {
      pqxx::work work((*lease)->conn());
      switch (tx_options.isolation) {
        case Isolation::kReadCommitted: break;
        case Isolation::kRepeatableRead:
          work.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
          break;
        case Isolation::kSerializable:
          work.exec("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
          break;
      }
      Transaction tx(&work, (*lease)->pooled());
      status = fn(tx);
      if (status.ok()) {
        work.commit();
        return absl::OkStatus();
      }
      work.abort();
    } catch (const std::exception& e) {
      status = FromException(e);
    }
    if (status.code() == absl::StatusCode::kUnavailable) (*lease)->MarkBroken();
    if (!IsRetryableTx(status)) return status;
    last = status;
    if (attempt < tx_options.max_attempts) {
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Milliseconds(200));
    }
  }
  return last;
}

absl::StatusOr<Result> Pool::Exec(std::string_view sql, const std::vector<Param>& params) {
  // Autocommit: one round trip instead of BEGIN, statement, COMMIT. A
  // connection lost before the statement ran is retried once.
  absl::Status last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto lease = Acquire(impl_.get(), options_, options_.acquire_timeout);
    if (!lease.ok()) return lease.status();
    try {
      pqxx::nontransaction tx((*lease)->conn());
      Transaction wrapped(&tx, (*lease)->pooled());
      auto result = wrapped.Exec(sql, params);
      if (result.ok() || result.status().code() != absl::StatusCode::kUnavailable) return result;
      (*lease)->MarkBroken();
      last = result.status();
    } catch (const std::exception& e) {
      (*lease)->MarkBroken();
      last = FromException(e);
    }
  }
  return last;
}

absl::Status Pool::Ping(absl::Duration timeout) {
  auto lease = Acquire(impl_.get(), options_, timeout);
  if (!lease.ok()) return lease.status();
  try {
    pqxx::nontransaction tx((*lease)->conn());
    tx.exec("SELECT 1");
    return absl::OkStatus();
  } catch (const std::exception& e) {
    (*lease)->MarkBroken();
    return FromException(e);
  }
}

absl::Status Pool::WithSession(const std::function<absl::Status(Transaction&)>& fn) {
  auto lease = Acquire(impl_.get(), options_, options_.acquire_timeout);
  if (!lease.ok()) return lease.status();
  try {
    pqxx::nontransaction session((*lease)->conn());
    Transaction tx(&session, (*lease)->pooled());
    absl::Status s = fn(tx);
    if (s.code() == absl::StatusCode::kUnavailable) (*lease)->MarkBroken();
    return s;
  } catch (const std::exception& e) {
    (*lease)->MarkBroken();
    return FromException(e);
  }
}

bool IsValidIdentifier(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (!(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z'))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
}

absl::StatusOr<std::vector<Migration>> LoadMigrations(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("migration directory ", dir, " does not exist"));
  }
  static const std::regex kName(R"(^(\d{3,})_[A-Za-z0-9_\-]+\.sql$)");
  std::vector<Migration> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".sql") continue;
    std::smatch m;
    if (!std::regex_match(name, m, kName)) {
      return absl::InvalidArgumentError(
          absl::StrCat("migration file ", name, " is not named NNN_description.sql"));
    }
    Migration mig;
    mig.version = std::stoi(m[1].str());
    mig.name = name;
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    mig.sql = ss.str();
    out.push_back(std::move(mig));
  }
  std::sort(out.begin(), out.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i].version == out[i - 1].version) {
      return absl::InvalidArgumentError(absl::StrCat("migrations ", out[i - 1].name, " and ",
                                                     out[i].name, " share a version"));
    }
  }
  return out;
}

absl::Status ApplyMigrations(Pool& pool, const std::string& schema,
                             const std::vector<Migration>& migrations, const std::string& ledger) {
  if (!IsValidIdentifier(schema)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid schema name '", schema, "'"));
  }
  if (!IsValidIdentifier(ledger)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid ledger table name '", ledger, "'"));
  }
  const std::string lock_key = absl::StrCat("cloudflux.migrate.", schema);
  const std::string table = absl::StrCat(schema, ".", ledger);
  return pool.WithSession([&](Transaction& session) -> absl::Status {
    // Session-level lock: held across the per-migration transactions below,
    // released explicitly (or by the server if this process dies).
    CF_RETURN_IF_ERROR(
        session.Exec("SELECT pg_advisory_lock(hashtext($1))", {lock_key}).status());
    auto body = [&]() -> absl::Status {
      CF_RETURN_IF_ERROR(session.Exec(absl::StrCat("CREATE SCHEMA IF NOT EXISTS ", schema)).status());
      CF_RETURN_IF_ERROR(session
                             .Exec(absl::StrCat("CREATE TABLE IF NOT EXISTS ", table,
                                                " (version integer PRIMARY KEY, "
                                                "name text NOT NULL, checksum text NOT NULL, "
                                                "applied_at timestamptz NOT NULL DEFAULT now())"))
                             .status());
      CF_ASSIGN_OR_RETURN(
          Result applied,
          session.Exec(absl::StrCat("SELECT version, checksum FROM ", table)));
      std::map<int, std::string> done;
      for (const auto& row : applied) done[static_cast<int>(row.Int(0))] = row.Text(1);
      for (const auto& m : migrations) {
        std::string checksum = core::Sha256Hex(m.sql);
        auto it = done.find(m.version);
        if (it != done.end()) {
          if (it->second != checksum) {
            return absl::FailedPreconditionError(absl::StrCat(
                "migration ", m.name, " was changed after it was applied to schema ", schema,
                "; add a new migration instead"));
          }
          continue;
        }
        CF_RETURN_IF_ERROR(session.Exec("BEGIN").status());
        absl::Status s = [&]() -> absl::Status {
          CF_RETURN_IF_ERROR(
              session.Exec(absl::StrCat("SET LOCAL search_path TO ", schema, ", public")).status());
          CF_RETURN_IF_ERROR(core::Annotate(session.Exec(m.sql).status(), m.name));
          CF_RETURN_IF_ERROR(session
                                 .Exec(absl::StrCat("INSERT INTO ", table,
                                                    " (version, name, checksum) "
                                                    "VALUES ($1, $2, $3)"),
                                       {std::to_string(m.version), m.name, checksum})
                                 .status());
          return session.Exec("COMMIT").status();
        }();
        if (!s.ok()) {
          (void)session.Exec("ROLLBACK");
          return s;
        }
        core::LogInfo("migration applied", {{"schema", schema}, {"migration", m.name}});
      }
      return absl::OkStatus();
    }();
    (void)session.Exec("SELECT pg_advisory_unlock(hashtext($1))", {lock_key});
    return body;
  });
}


// ---------------------------------------------------------------- Listener

class Listener::Impl {
 public:
  Impl(std::string url, std::string channel, Callbacks callbacks)
      : url_(std::move(url)), channel_(std::move(channel)), callbacks_(std::move(callbacks)) {}

  void Run() {
    absl::Duration backoff = absl::Milliseconds(100);
    while (!stop_.load()) {
      try {
        pqxx::connection conn(WithConnectTimeout(url_, absl::Seconds(2)));
        Receiver receiver(conn, channel_, callbacks_.on_notify);
        connected_.store(true);
        if (callbacks_.on_state) callbacks_.on_state(true);
        backoff = absl::Milliseconds(100);
        while (!stop_.load()) conn.await_notification(0, 200000);
      } catch (const std::exception& e) {
        if (connected_.exchange(false)) {
          core::Log(core::LogLevel::kWarn, "database listener disconnected",
                    {{"channel", channel_}, {"error", e.what()}});
        }
        if (callbacks_.on_state) callbacks_.on_state(false);
        absl::SleepFor(backoff);
        backoff = std::min(backoff * 2, absl::Seconds(2));
      }
    }
    connected_.store(false);
  }

  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::thread thread_;

 private:
  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection& conn, const std::string& channel,
             const std::function<void(const std::string&)>& on_notify)
        : pqxx::notification_receiver(conn, channel), on_notify_(on_notify) {}
    void operator()(const std::string& payload, int) override {
      if (on_notify_) on_notify_(payload);
    }

   private:
    const std::function<void(const std::string&)>& on_notify_;
  };

  std::string url_;
  std::string channel_;
  Callbacks callbacks_;
};

absl::StatusOr<std::unique_ptr<Listener>> Listener::Start(const std::string& url,
                                                          const std::string& channel,
                                                          Callbacks callbacks) {
  if (!IsValidIdentifier(channel)) {
    return absl::InvalidArgumentError(absl::StrCat("bad channel name '", channel, "'"));
  }
  auto impl = std::make_unique<Impl>(url, channel, std::move(callbacks));
  Impl* raw = impl.get();
  raw->thread_ = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<Listener>(new Listener(std::move(impl)));
}

Listener::Listener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Listener::~Listener() {
  impl_->stop_.store(true);
  if (impl_->thread_.joinable()) impl_->thread_.join();
}

bool Listener::connected() const { return impl_->connected_.load(); }

}  // namespace cloudflux::db
