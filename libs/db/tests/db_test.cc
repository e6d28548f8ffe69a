#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/db/db.h"
#include "cloudflux/db/group_commit.h"
#include "absl/synchronization/mutex.h"
#include "cloudflux/testing/testing.h"

namespace cloudflux::db {
namespace {

class DbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scratch = testing::ScratchDatabase::Create();
    ASSERT_TRUE(scratch.ok()) << scratch.status();
    scratch_ = std::move(*scratch);
    pool_ = NewPool();
  }
  std::unique_ptr<Pool> NewPool(int max_connections = 4, int prepared_statements = 256) {
    PoolOptions o;
    o.url = scratch_->url();
    o.max_connections = max_connections;
    o.prepared_statements = prepared_statements;
    o.acquire_timeout = absl::Milliseconds(300);
    auto pool = Pool::Create(o);
    EXPECT_TRUE(pool.ok()) << pool.status();
    return std::move(*pool);
  }
  std::string WriteMigrations(const std::vector<std::pair<std::string, std::string>>& files) {
    std::string dir = ::testing::TempDir() + "/mig-" + std::to_string(counter_++) + "-" +
                      std::to_string(getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    for (const auto& [name, sql] : files) std::ofstream(dir + "/" + name) << sql;
    return dir;
  }
  std::unique_ptr<testing::ScratchDatabase> scratch_;
  std::unique_ptr<Pool> pool_;
  int counter_ = 0;
};

TEST_F(DbTest, ParamsNullsBytesAndErrorCodes) {
  ASSERT_TRUE(pool_->Exec("CREATE TABLE t (id int PRIMARY KEY, name text, blob bytea)").ok());
  std::string binary("\x00\x01\xff\x7f", 4);
  ASSERT_TRUE(pool_->Exec("INSERT INTO t VALUES ($1, $2, $3::bytea)",
                          {"1", std::nullopt, Bytea(binary)})
                  .ok());
  auto r = pool_->Exec("SELECT id, name, blob FROM t");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].Int(0), 1);
  EXPECT_TRUE((*r)[0].IsNull(1));
  EXPECT_EQ((*r)[0].Bytes(2), binary);

  auto dup = pool_->Exec("INSERT INTO t VALUES (1, 'x', NULL)");
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  auto bad = pool_->Exec("INSERT INTO t VALUES ($1, 'x', NULL)", {"not-a-number"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  auto syntax = pool_->Exec("SELEKT 1");
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInternal);
  // An injection attempt stays a value.
  ASSERT_TRUE(pool_->Exec("INSERT INTO t VALUES (2, $1, NULL)", {"'); DROP TABLE t; --"}).ok());
  EXPECT_EQ(pool_->Exec("SELECT count(*) FROM t")->operator[](0).Int(0), 2);
}

// libpq sends text parameters as C strings, so a NUL byte would cut a value
// short without a word (a lockout keyed by "name\0x" checked against "name").
// Such a value is refused and nothing is written; so is text that is no UTF-8.
TEST_F(DbTest, ParametersWithNulBytesOrInvalidUtf8AreRefusedAndChangeNothing) {
  ASSERT_TRUE(pool_->Exec("CREATE TABLE names (name text PRIMARY KEY)").ok());
  std::string with_nul("alice\0x", 7);
  auto insert = pool_->Exec("INSERT INTO names VALUES ($1)", {with_nul});
  EXPECT_EQ(insert.status().code(), absl::StatusCode::kInvalidArgument) << insert.status();
  EXPECT_TRUE(absl::StrContains(insert.status().message(), "NUL")) << insert.status();
  auto lookup = pool_->Exec("SELECT name FROM names WHERE name = $1", {with_nul});
  EXPECT_EQ(lookup.status().code(), absl::StatusCode::kInvalidArgument);
  absl::Status in_tx = pool_->InTransaction([&](Transaction& tx) {
    return tx.Exec("INSERT INTO names VALUES ($1)", {with_nul}).status();
  });
  EXPECT_EQ(in_tx.code(), absl::StatusCode::kInvalidArgument);
  auto not_utf8 = pool_->Exec("INSERT INTO names VALUES ($1)", {std::string("\xff\xfe")});
  EXPECT_EQ(not_utf8.status().code(), absl::StatusCode::kInvalidArgument) << not_utf8.status();
  EXPECT_EQ(pool_->Exec("SELECT count(*) FROM names")->operator[](0).Int(0), 0);
  // The connection stays usable.
  EXPECT_TRUE(pool_->Exec("INSERT INTO names VALUES ($1)", {"alice"}).ok());
}

// The statements prepared on the pool's connection (one connection, so the
// query below runs where the earlier ones did).
int64_t Prepared(Pool& pool) {
  auto r = pool.Exec("SELECT count(*) FROM pg_prepared_statements");
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? (*r)[0].Int(0) : -1;
}

TEST_F(DbTest, StatementsWithParametersArePreparedOncePerConnectionUpToTheLimit) {
  auto pool = NewPool(1, 2);
  ASSERT_TRUE(pool->Exec("CREATE TABLE t (id int PRIMARY KEY, name text)").ok());
  EXPECT_EQ(Prepared(*pool), 0);  // no parameters: sent as text
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool->Exec("INSERT INTO t VALUES ($1, $2)", {std::to_string(i), std::nullopt}).ok());
  }
  EXPECT_EQ(Prepared(*pool), 1);
  auto found = pool->Exec("SELECT name FROM t WHERE id = $1", {"2"});
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_TRUE((*found)[0].IsNull(0));
  EXPECT_EQ(Prepared(*pool), 2);
  // Past the limit a statement still runs, unprepared.
  auto counted = pool->Exec("SELECT count(*) FROM t WHERE id >= $1", {"1"});
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_EQ((*counted)[0].Int(0), 2);
  EXPECT_EQ(Prepared(*pool), 2);
  // Inside transactions too, reusing what the connection has prepared.
  ASSERT_TRUE(pool->InTransaction([](Transaction& tx) -> absl::Status {
                    auto r = tx.Exec("INSERT INTO t VALUES ($1, $2)", {"7", "seven"});
                    return r.status();
                  })
                  .ok());
  EXPECT_EQ(Prepared(*pool), 2);
  auto seven = pool->Exec("SELECT name FROM t WHERE id = $1", {"7"});
  ASSERT_TRUE(seven.ok());
  EXPECT_EQ((*seven)[0].Text(0), "seven");

  PoolOptions negative;
  negative.url = scratch_->url();
  negative.prepared_statements = -1;
  EXPECT_EQ(Pool::Create(negative).status().code(), absl::StatusCode::kInvalidArgument);

  auto unprepared = NewPool(1, 0);
  ASSERT_TRUE(unprepared->Exec("SELECT name FROM t WHERE id = $1", {"7"}).ok());
  EXPECT_EQ(Prepared(*unprepared), 0);
}

TEST_F(DbTest, AStatementThatFailsToPrepareOrToRunBreaksNothing) {
  auto pool = NewPool(1);
  auto bad = pool->Exec("SELECT nosuchcolumn FROM pg_class WHERE relname = $1", {"x"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal) << bad.status();
  EXPECT_EQ(Prepared(*pool), 0);
  bad = pool->Exec("SELECT nosuchcolumn FROM pg_class WHERE relname = $1", {"x"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal) << bad.status();
  // A failure inside a transaction (the statement prepared, then the
  // execution failing) leaves the connection usable.
  ASSERT_TRUE(pool->Exec("CREATE TABLE t (id int PRIMARY KEY)").ok());
  auto status = pool->InTransaction([](Transaction& tx) -> absl::Status {
    auto r = tx.Exec("INSERT INTO t VALUES ($1::int)", {"not a number"});
    return r.status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  // A different statement next, on the same connection.
  auto none = pool->Exec("SELECT id FROM t WHERE id > $1", {"0"});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  auto ok = pool->Exec("INSERT INTO t VALUES ($1::int)", {"5"});
  EXPECT_TRUE(ok.ok()) << ok.status();
  auto rows = pool->Exec("SELECT id FROM t WHERE id = $1", {"5"});
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->size(), 1u);
}

TEST_F(DbTest, PreparedStatementsFollowASchemaChangeMadeElsewhere) {
  auto pool = NewPool(1);
  ASSERT_TRUE(pool->Exec("CREATE TABLE t (id int PRIMARY KEY, name text)").ok());
  ASSERT_TRUE(pool->Exec("INSERT INTO t VALUES (1, 'one')").ok());
  const std::string select = "SELECT * FROM t WHERE id = $1";
  auto before = pool->Exec(select, {"1"});
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ((*before)[0].size(), 2u);
  // Another replica's migration adds a column: the prepared `SELECT *` now
  // has a different result type, which PostgreSQL refuses to run.
  ASSERT_TRUE(NewPool(1)->Exec("ALTER TABLE t ADD COLUMN size bigint NOT NULL DEFAULT 7").ok());
  auto after = pool->Exec(select, {"1"});
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ((*after)[0].size(), 3u);
  EXPECT_EQ((*after)[0].Int(2), 7);
  // The same inside a transaction, which is retried as a whole.
  ASSERT_TRUE(NewPool(1)->Exec("ALTER TABLE t ADD COLUMN kind text NOT NULL DEFAULT 'k'").ok());
  int attempts = 0;
  size_t columns = 0;
  auto status = pool->InTransaction([&](Transaction& tx) -> absl::Status {
    ++attempts;
    auto r = tx.Exec(select, {"1"});
    if (!r.ok()) return r.status();
    columns = (*r)[0].size();
    return absl::OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(columns, 4u);
  EXPECT_EQ(attempts, 2);
  // A caller that turns the error into its own (not retried) still gets a
  // fresh connection next time: the outdated one is not reused.
  ASSERT_TRUE(NewPool(1)->Exec("ALTER TABLE t ADD COLUMN extra int NOT NULL DEFAULT 0").ok());
  auto wrapped = [&]() {
    return pool->InTransaction([&](Transaction& tx) -> absl::Status {
      auto r = tx.Exec(select, {"1"});
      if (!r.ok()) return absl::InternalError(absl::StrCat("lookup failed: ", r.status().message()));
      columns = (*r)[0].size();
      return absl::OkStatus();
    });
  };
  EXPECT_EQ(wrapped().code(), absl::StatusCode::kInternal);
  ASSERT_TRUE(wrapped().ok());
  EXPECT_EQ(columns, 5u);
}

TEST_F(DbTest, ArrayLiteralsRoundTripAnyText) {
  std::vector<std::string> items = {"plain", "with \"quotes\"", "back\\slash", "{braces},comma", "", "NULL",
                                    "ünïcode"};
  auto r = pool_->Exec("SELECT x, ord FROM unnest($1::text[]) WITH ORDINALITY AS u(x, ord) ORDER BY ord",
                       {ArrayLiteral(items)});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_FALSE((*r)[i].IsNull(0)) << "\"NULL\" quoted is the text NULL";
    EXPECT_EQ((*r)[i].Text(0), items[i]);
  }
  auto sum = pool_->Exec("SELECT sum(x) FROM unnest($1::bigint[]) AS u(x)", {ArrayLiteral(std::vector<std::string>{"1", "-2", "40"})});
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ((*sum)[0].Int(0), 39);
  EXPECT_EQ(pool_->Exec("SELECT cardinality($1::text[])", {ArrayLiteral(std::vector<std::string>{})})
                ->operator[](0)
                .Int(0),
            0);
  auto nulls = pool_->Exec("SELECT x IS NULL FROM unnest($1::bigint[]) WITH ORDINALITY AS u(x, ord) ORDER BY ord",
                           {ArrayLiteral(std::vector<Param>{"7", std::nullopt, "9"})});
  ASSERT_TRUE(nulls.ok()) << nulls.status();
  ASSERT_EQ(nulls->size(), 3u);
  EXPECT_EQ((*nulls)[0].Text(0), "f");
  EXPECT_EQ((*nulls)[1].Text(0), "t");
}

TEST_F(DbTest, FailedCallbackRollsBackEverything) {
  ASSERT_TRUE(pool_->Exec("CREATE TABLE t (id int PRIMARY KEY)").ok());
  absl::Status s = pool_->InTransaction([](Transaction& tx) -> absl::Status {
    auto r = tx.Exec("INSERT INTO t VALUES (1)");
    if (!r.ok()) return r.status();
    return absl::InvalidArgumentError("validation failed after the insert");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool_->Exec("SELECT count(*) FROM t")->operator[](0).Int(0), 0);
}

TEST_F(DbTest, SerializationFailuresAreRetried) {
  ASSERT_TRUE(pool_->Exec("CREATE TABLE counter (n int)").ok());
  ASSERT_TRUE(pool_->Exec("INSERT INTO counter VALUES (0)").ok());
  // Concurrent read-modify-write under SERIALIZABLE: conflicts must be
  // retried so that no increment is lost.
  // First two transactions that surely collide: each reads before either
  // writes (on its first attempt), so one of them must be retried.
  {
    std::atomic<int> read{0}, tries{0};
    auto increment = [&] {
      TxOptions opts;
      opts.isolation = Isolation::kSerializable;
      opts.max_attempts = 5;
      return pool_->InTransaction(
          [&](Transaction& tx) -> absl::Status {
            const bool first = tries.fetch_add(1) < 2;
            auto r = tx.Exec("SELECT n FROM counter");
            if (!r.ok()) return r.status();
            if (first) {
              read.fetch_add(1);
              for (int i = 0; i < 500 && read.load() < 2; ++i) absl::SleepFor(absl::Milliseconds(10));
            }
            return tx.Exec("UPDATE counter SET n = $1", {std::to_string((*r)[0].Int(0) + 1)}).status();
          },
          opts);
    };
    absl::Status a, b;
    std::thread other([&] { b = increment(); });
    a = increment();
    other.join();
    EXPECT_TRUE(a.ok()) << a;
    EXPECT_TRUE(b.ok()) << b;
    EXPECT_EQ(pool_->Exec("SELECT n FROM counter")->operator[](0).Int(0), 2);
    EXPECT_GT(tries.load(), 2) << "the colliding pair was not retried";
  }
  constexpr int kThreads = 4, kPerThread = 15;
  std::atomic<int> attempts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        TxOptions opts;
        opts.isolation = Isolation::kSerializable;
        opts.max_attempts = 50;
        absl::Status s = pool_->InTransaction(
            [&](Transaction& tx) -> absl::Status {
              attempts.fetch_add(1);
              auto r = tx.Exec("SELECT n FROM counter");
              if (!r.ok()) return r.status();
              int64_t n = (*r)[0].Int(0);
              return tx.Exec("UPDATE counter SET n = $1", {std::to_string(n + 1)}).status();
            },
            opts);
        EXPECT_TRUE(s.ok()) << s;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(pool_->Exec("SELECT n FROM counter")->operator[](0).Int(0), 2 + kThreads * kPerThread);
  EXPECT_GE(attempts.load(), kThreads * kPerThread);
}

TEST_F(DbTest, StatementTimeoutAndPoolExhaustion) {
  PoolOptions o;
  o.url = scratch_->url();
  o.max_connections = 1;
  o.statement_timeout = absl::Milliseconds(100);
  o.acquire_timeout = absl::Milliseconds(100);
  auto pool = std::move(*Pool::Create(o));
  EXPECT_EQ(pool->Exec("SELECT pg_sleep(2)").status().code(), absl::StatusCode::kDeadlineExceeded);

  std::atomic<bool> holding{false};
  std::thread holder([&] {
    (void)pool->InTransaction([&](Transaction& tx) {
      holding = true;
      absl::SleepFor(absl::Milliseconds(400));
      return absl::OkStatus();
    });
  });
  ASSERT_TRUE(testing::WaitFor([&] { return holding.load(); }, absl::Seconds(5)));
  EXPECT_EQ(pool->Ping(absl::Milliseconds(50)).code(), absl::StatusCode::kResourceExhausted);
  holder.join();
  EXPECT_TRUE(pool->Ping(absl::Seconds(1)).ok());
}

TEST_F(DbTest, UnreachableServerIsUnavailable) {
  PoolOptions o;
  o.url = "host=127.0.0.1 port=" + std::to_string(testing::PickFreePort()) + " dbname=x";
  auto pool = std::move(*Pool::Create(o));
  EXPECT_EQ(pool->Ping(absl::Seconds(1)).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Pool::Create(PoolOptions{}).status().code(), absl::StatusCode::kInvalidArgument);
}

// sslmode=verify-full against the test server started with TLS: the
// connection is encrypted and the server's certificate checked against the
// CA and the host name; a CA that did not sign it is refused.
TEST_F(DbTest, VerifyFullTlsConnectsToTheRightServerOnly) {
  auto ca = testing::RequiredEnv("CLOUDFLUX_TEST_PG_CA");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto open = [&](const std::string& extra) {
    PoolOptions o;
    o.url = scratch_->url() + " " + extra;
    o.max_connections = 1;
    return Pool::Create(o);
  };
  auto pool = open("sslmode=verify-full sslrootcert=" + *ca);
  ASSERT_TRUE(pool.ok()) << pool.status();
  auto ssl = (*pool)->Exec("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  ASSERT_TRUE(ssl.ok()) << ssl.status();
  ASSERT_EQ(ssl->size(), 1u);
  EXPECT_TRUE((*ssl)[0].Bool(0)) << "the connection is not encrypted";
  EXPECT_TRUE(absl::StartsWith((*ssl)[0].Text(1), "TLS")) << (*ssl)[0].Text(1);

  const std::string dir = ::testing::TempDir() + "/db-tls-" + std::to_string(getpid());
  ASSERT_TRUE(testing::MakeTestCertificates(dir).ok());
  auto foreign = open("sslmode=verify-full sslrootcert=" + dir + "/other-ca.pem");
  ASSERT_TRUE(foreign.ok());
  absl::Status refused = (*foreign)->Ping(absl::Seconds(2));
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  std::filesystem::remove_all(dir);
}

TEST_F(DbTest, MigrationsApplyOnceInOrderAndAreIdempotent) {
  std::string dir = WriteMigrations({
      {"001_create.sql", "CREATE TABLE items (id int PRIMARY KEY, label text);"},
      {"002_seed.sql", "INSERT INTO items VALUES (1, 'first');"},
      {"README.txt", "ignored"},
  });
  auto migrations = LoadMigrations(dir);
  ASSERT_TRUE(migrations.ok()) << migrations.status();
  ASSERT_EQ(migrations->size(), 2u);
  EXPECT_EQ((*migrations)[0].version, 1);
  ASSERT_TRUE(ApplyMigrations(*pool_, "svc", *migrations).ok());
  ASSERT_TRUE(ApplyMigrations(*pool_, "svc", *migrations).ok()) << "second run is a no-op";
  EXPECT_EQ(pool_->Exec("SELECT count(*) FROM svc.items")->operator[](0).Int(0), 1);
  EXPECT_EQ(pool_->Exec("SELECT count(*) FROM svc.schema_migrations")->operator[](0).Int(0), 2);

  // A later migration is applied on the next start.
  std::string dir2 = WriteMigrations({
      {"001_create.sql", "CREATE TABLE items (id int PRIMARY KEY, label text);"},
      {"002_seed.sql", "INSERT INTO items VALUES (1, 'first');"},
      {"003_more.sql", "INSERT INTO items VALUES (2, 'second');"},
  });
  ASSERT_TRUE(ApplyMigrations(*pool_, "svc", *LoadMigrations(dir2)).ok());
  EXPECT_EQ(pool_->Exec("SELECT count(*) FROM svc.items")->operator[](0).Int(0), 2);
}

TEST_F(DbTest, ChangedOrBrokenMigrationsAreRefusedAndChangeNothing) {
  ASSERT_TRUE(ApplyMigrations(*pool_, "svc",
                              *LoadMigrations(WriteMigrations(
                                  {{"001_create.sql", "CREATE TABLE a (id int);"}})))
                  .ok());
  absl::Status changed = ApplyMigrations(
      *pool_, "svc",
      *LoadMigrations(WriteMigrations({{"001_create.sql", "CREATE TABLE a (id bigint);"}})));
  EXPECT_EQ(changed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(changed.message(), "001_create.sql"));

  absl::Status broken = ApplyMigrations(
      *pool_, "svc",
      *LoadMigrations(WriteMigrations({{"001_create.sql", "CREATE TABLE a (id int);"},
                                       {"002_half.sql", "CREATE TABLE b (id int); SELEKT;"}})));
  EXPECT_FALSE(broken.ok());
  EXPECT_TRUE(absl::StrContains(broken.message(), "002_half.sql"));
  auto b = pool_->Exec("SELECT to_regclass('svc.b') IS NULL");
  EXPECT_TRUE((*b)[0].Bool(0)) << "a failed migration must leave nothing behind";

  EXPECT_EQ(LoadMigrations(WriteMigrations({{"1_x.sql", ""}})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadMigrations(WriteMigrations({{"001_a.sql", ""}, {"001_b.sql", ""}})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyMigrations(*pool_, "Bad-Name", {}).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DbTest, ReplicasStartingTogetherApplyEachMigrationOnce) {
  // Non-idempotent statements: running any of them twice would fail.
  std::string dir = WriteMigrations({
      {"001_create.sql", "CREATE TABLE runs (n int); SELECT pg_sleep(0.2);"},
      {"002_insert.sql", "INSERT INTO runs VALUES (1);"},
  });
  auto migrations = *LoadMigrations(dir);
  constexpr int kReplicas = 4;
  std::vector<std::unique_ptr<Pool>> pools;
  for (int i = 0; i < kReplicas; ++i) pools.push_back(NewPool(1));
  std::vector<absl::Status> results(kReplicas);
  std::vector<std::thread> threads;
  for (int i = 0; i < kReplicas; ++i) {
    threads.emplace_back([&, i] { results[i] = ApplyMigrations(*pools[i], "race", migrations); });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) EXPECT_TRUE(r.ok()) << r;
  EXPECT_EQ(pool_->Exec("SELECT count(*) FROM race.runs")->operator[](0).Int(0), 1);
}

TEST_F(DbTest, GroupCommitBatchesConcurrentWritersAndIsolatesABadItem) {
  ASSERT_TRUE(pool_->Exec("CREATE TABLE g (id int PRIMARY KEY CHECK (id >= 0))").ok());
  std::atomic<int> flushes{0};
  GroupCommit<int> commit(
      [&](std::span<const int> ids) {
        ++flushes;
        std::string sql = "INSERT INTO g VALUES ";
        std::vector<Param> params;
        for (size_t i = 0; i < ids.size(); ++i) {
          sql += (i ? ", ($" : "($") + std::to_string(i + 1) + "::int)";
          params.push_back(std::to_string(ids[i]));
        }
        return pool_->Exec(sql, params).status();
      },
      /*max_batch=*/64);
  constexpr int kThreads = 16, kEach = 40;
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        int id = t * kEach + i;
        // One bad row (violates the CHECK) among the good ones.
        absl::Status s = commit.Commit(t == 3 && i == 7 ? -1 : id);
        (s.ok() ? ok : failed)++;
        if (t == 3 && i == 7) {
          EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
        } else {
          EXPECT_TRUE(s.ok()) << s;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kEach - 1);
  EXPECT_EQ(failed.load(), 1);
  auto count = pool_->Exec("SELECT count(*) FROM g");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ((*count)[0].Int(0), kThreads * kEach - 1) << "every committed row is there, once";
  // Batching happened: far fewer statements than items.
  EXPECT_LT(commit.batches(), kThreads * kEach / 2);
}

TEST_F(DbTest, GroupCommitAsyncCallsBackOnceEachAndDrainsOnDestruction) {
  ASSERT_TRUE(pool_->Exec("CREATE TABLE ga (id int PRIMARY KEY CHECK (id >= 0))").ok());
  constexpr int kItems = 300;
  std::atomic<int> ok{0}, failed{0}, calls{0};
  int64_t batches = 0;
  {
    GroupCommit<int> commit(
        [&](std::span<const int> ids) {
          std::vector<std::string> values;
          for (int id : ids) values.push_back(std::to_string(id));
          return pool_->Exec("INSERT INTO ga SELECT unnest($1::int[])", {ArrayLiteral(values)})
              .status();
        },
        /*max_batch=*/64);
    // All queued from one thread without waiting: nothing blocks the caller.
    for (int i = 0; i < kItems; ++i) {
      commit.CommitAsync(i == 42 ? -1 : i, [&, i](absl::Status s) {
        ++calls;
        (s.ok() ? ok : failed)++;
        if (i == 42) {
          EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
        }
      });
    }
    batches = commit.batches();
  }  // the destructor flushes what is still queued
  EXPECT_EQ(calls.load(), kItems);
  EXPECT_EQ(ok.load(), kItems - 1);
  EXPECT_EQ(failed.load(), 1);
  EXPECT_LT(batches, kItems);
  EXPECT_EQ(pool_->Exec("SELECT count(*) FROM ga")->operator[](0).Int(0), kItems - 1);
}

TEST_F(DbTest, GroupCommitAllowsSeveralFlushesAtOnce) {
  std::atomic<int> in_flight{0}, most{0};
  GroupCommit<int> commit(
      [&](std::span<const int>) {
        int now = ++in_flight;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        absl::SleepFor(absl::Milliseconds(20));
        --in_flight;
        return absl::OkStatus();
      },
      /*max_batch=*/1, /*max_flushes=*/3);
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] { EXPECT_TRUE(commit.Commit(1).ok()); });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(commit.batches(), 6);
  EXPECT_GE(most.load(), 2);
  EXPECT_LE(most.load(), 3);
}

TEST_F(DbTest, ListenerDeliversNotificationsAndSurvivesALostConnection) {
  absl::Mutex mu;
  std::vector<std::string> payloads;
  std::vector<bool> states;
  auto listener = Listener::Start(
      scratch_->url(), "cloudflux_test_channel",
      {.on_notify =
           [&](const std::string& p) {
             absl::MutexLock lock(&mu);
             payloads.push_back(p);
           },
       .on_state =
           [&](bool listening) {
             absl::MutexLock lock(&mu);
             states.push_back(listening);
           }});
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto wait_for = [&](auto&& done) {
    absl::MutexLock lock(&mu);
    return mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10));
  };
  ASSERT_TRUE(wait_for([&] { return !states.empty() && states.back(); }));
  EXPECT_TRUE((*listener)->connected());
  ASSERT_TRUE(pool_->Exec("SELECT pg_notify('cloudflux_test_channel', 'one')").ok());
  ASSERT_TRUE(wait_for([&] { return payloads.size() == 1; }));
  EXPECT_EQ(payloads[0], "one");

  // The server drops the listening connection: the listener reports it,
  // reconnects and hears later notifications.
  ASSERT_TRUE(pool_->Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query "
                          "LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
                  .ok());
  ASSERT_TRUE(wait_for([&] {
    return states.size() >= 3 && !states[states.size() - 2] && states.back();
  }));
  ASSERT_TRUE(pool_->Exec("SELECT pg_notify('cloudflux_test_channel', 'two')").ok());
  ASSERT_TRUE(wait_for([&] { return payloads.size() == 2; }));
  EXPECT_EQ(payloads[1], "two");

  EXPECT_EQ(Listener::Start(scratch_->url(), "bad channel", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cloudflux::db
