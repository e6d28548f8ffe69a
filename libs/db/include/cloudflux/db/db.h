#pragma once
// PostgreSQL access for CloudFlux services: a connection pool with timeouts,
// transactions that retry serialization failures and deadlocks, and schema
// migrations applied once, in order, under an advisory lock. libpqxx stays
// behind this header: callers see Status, Result and Row.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cloudflux::db {

// A query parameter: text, or nullopt for NULL. Use Bytea() for binary data.
using Param = std::optional<std::string>;

// A timestamptz literal (UTC, microseconds) of `t`.
std::string TimestampLiteral(absl::Time t);

// A nullable parameter: NULL for nullopt, else the text of the value
// (strings as they are, times as TimestampLiteral, numbers in decimal).
template <class T>
Param OptionalParam(const std::optional<T>& v) {
  if (!v.has_value()) return std::nullopt;
  if constexpr (std::is_same_v<T, std::string>) {
    return *v;
  } else if constexpr (std::is_same_v<T, absl::Time>) {
    return TimestampLiteral(*v);
  } else {
    return std::to_string(*v);
  }
}

// Encodes bytes as PostgreSQL's bytea hex input ("\x0a1b...").
std::string Bytea(std::string_view bytes);

// A PostgreSQL array literal of text elements ({"a","b\"c"}): every element
// quoted, '"' and '\' escaped. Cast it in SQL ($1::text[], $2::bigint[]) to
// pass many rows in one statement (with unnest).
std::string ArrayLiteral(const std::vector<std::string>& items);
// The same with NULL elements (nullopt), unquoted as PostgreSQL reads them.
std::string ArrayLiteral(const std::vector<Param>& items);

class Row {
 public:
  bool IsNull(size_t column) const { return !values_.at(column).has_value(); }
  // Text form; empty for NULL.
  std::string Text(size_t column) const { return values_.at(column).value_or(""); }
  std::optional<std::string> Optional(size_t column) const { return values_.at(column); }
  int64_t Int(size_t column) const;
  bool Bool(size_t column) const { return Text(column) == "t"; }
  double Double(size_t column) const;
  // A bytea column decoded to raw bytes.
  std::string Bytes(size_t column) const;
  size_t size() const { return values_.size(); }

 private:
  friend class Transaction;
  friend class Pool;
  std::vector<std::optional<std::string>> values_;
};

class Result {
 public:
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  const Row& operator[](size_t i) const { return rows_.at(i); }
  std::vector<Row>::const_iterator begin() const { return rows_.begin(); }
  std::vector<Row>::const_iterator end() const { return rows_.end(); }
  // Rows inserted/updated/deleted by the statement.
  int64_t affected_rows() const { return affected_rows_; }

 private:
  friend class Transaction;
  friend class Pool;
  std::vector<Row> rows_;
  int64_t affected_rows_ = 0;
};

enum class Isolation { kReadCommitted, kRepeatableRead, kSerializable };

struct TxOptions {
  Isolation isolation = Isolation::kReadCommitted;
  // Attempts for serialization failures, deadlocks and connections that
  // broke before commit. 1 disables retries.
  int max_attempts = 5;
};

// An open transaction. Only valid inside Pool::InTransaction's callback.
class Transaction {
 public:
  // SQL errors come back as statuses: unique violation -> ALREADY_EXISTS,
  // other integrity violations -> FAILED_PRECONDITION, statement timeout ->
  // DEADLINE_EXCEEDED, serialization failure/deadlock -> ABORTED, lost
  // connection -> UNAVAILABLE, anything else -> INTERNAL.
  // A statement with parameters is prepared on its connection the first time
  // it runs there and executed by name after that (PoolOptions::
  // prepared_statements); one without parameters is sent as text and may
  // hold several statements.
  absl::StatusOr<Result> Exec(std::string_view sql, const std::vector<Param>& params = {});

 private:
  friend class Pool;
  Transaction(void* work, void* conn) : work_(work), conn_(conn) {}
  void* work_;  // pqxx::transaction_base
  void* conn_;  // the pool's connection, with its prepared statements
};

struct PoolOptions {
  // libpq connection string: "host=127.0.0.1 port=5432 dbname=x user=y" or
  // "postgresql://user@host:port/db".
  std::string url;
  int max_connections = 8;
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration acquire_timeout = absl::Seconds(5);
  absl::Duration statement_timeout = absl::Seconds(30);
  // If set, every connection uses this schema first in its search_path.
  std::string schema;
  // Statements with parameters each connection keeps prepared (parsed and
  // planned once, then executed by name); past this many a statement runs
  // unprepared. 0 prepares nothing (e.g. behind a pooler in transaction
  // mode, where a session's prepared statements are not the next one's).
  int prepared_statements = 256;
};

// A fixed-size pool of connections, opened lazily and replaced when broken.
// Thread-safe.
class Pool {
 public:
  static absl::StatusOr<std::unique_ptr<Pool>> Create(PoolOptions options);
  ~Pool();

  // Runs `fn` in one transaction and commits if it returns OK (rolls back
  // otherwise, returning fn's status). Retries the whole callback on
  // retryable failures, so `fn` must not have effects outside the database.
  absl::Status InTransaction(const std::function<absl::Status(Transaction&)>& fn,
                             const TxOptions& options = {});

  // One statement, autocommitted (atomic on its own, one round trip).
  absl::StatusOr<Result> Exec(std::string_view sql, const std::vector<Param>& params = {});

  // Health check: a round trip within `timeout`.
  absl::Status Ping(absl::Duration timeout);

  // Runs `fn` on a connection held for its whole duration, outside any
  // transaction (session-level advisory locks, LISTEN, DDL batches).
  absl::Status WithSession(const std::function<absl::Status(Transaction&)>& fn);

  const PoolOptions& options() const { return options_; }

 public:
  class Impl;  // connection bookkeeping, private to the implementation

 private:
  explicit Pool(PoolOptions options);
  PoolOptions options_;
  std::unique_ptr<Impl> impl_;
};

struct Migration {
  int version = 0;
  std::string name;  // file name, "001_init.sql"
  std::string sql;
};

// Reads NNN_*.sql files from `dir`, sorted by version; duplicate or
// malformed versions are INVALID_ARGUMENT.
absl::StatusOr<std::vector<Migration>> LoadMigrations(const std::string& dir);

// Creates `schema` and <schema>.schema_migrations if missing and applies the
// migrations not yet applied, each in its own transaction with search_path
// set to the schema, under a PostgreSQL advisory lock so that replicas
// starting together apply each migration exactly once. A changed migration
// that was already applied is FAILED_PRECONDITION (checksums are recorded).
// `ledger` names the bookkeeping table, so that a library can keep its own
// migrations in a service's schema apart from the service's.
absl::Status ApplyMigrations(Pool& pool, const std::string& schema,
                             const std::vector<Migration>& migrations,
                             const std::string& ledger = "schema_migrations");

// True for lowercase SQL identifiers ([a-z_][a-z0-9_]*, at most 63 chars).
bool IsValidIdentifier(std::string_view name);

}  // namespace cloudflux::db

namespace cloudflux::db {

// LISTEN on one channel over a dedicated connection, calling `on_notify`
// with each NOTIFY payload from a background thread. Reconnects when the
// connection breaks. `on_state(true)` runs once LISTEN is active on a new
// connection, before any of its notifications; `on_state(false)` when it
// breaks. Whatever was announced while disconnected is lost: treat a
// reconnect as "everything may have changed" (clear caches there).
class Listener {
 public:
  struct Callbacks {
    std::function<void(const std::string& payload)> on_notify;
    std::function<void(bool listening)> on_state;
  };
  static absl::StatusOr<std::unique_ptr<Listener>> Start(const std::string& url,
                                                         const std::string& channel,
                                                         Callbacks callbacks);
  ~Listener();  // stops the thread

  // True while the connection is up and listening.
  bool connected() const;

 public:
  class Impl;

 private:
  explicit Listener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cloudflux::db
