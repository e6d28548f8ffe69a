// kill -9 of the migration service and of the storage adapter at random
// moments during a job of 1,000 objects (ten of them multi-part) moved from
// local disk to S3 (s3rver, behind a relay that counts the bytes sent to
// it). Afterwards every object is at the target once, whole; no object was
// ever unreadable or wrong in between (a reader checks them throughout);
// and the bytes sent again stay within one part for each interrupted copy.
#include <filesystem>
#include <iostream>
#include <random>

#include "absl/strings/str_join.h"
#include "cloudflux/testing/http_relay.h"
#include "migration_fixture.h"

namespace cloudflux {
namespace {

constexpr int64_t kPart = 5 << 20;  // the fixture's S3 part size

// The bytes of object `i`: 990 of 1 B to 64 KiB, ten of 12 MiB (3 parts).
std::string Bytes(uint64_t seed, int i) {
  std::mt19937_64 rng(seed * 7919 + static_cast<uint64_t>(i));
  size_t size = i % 100 == 0 ? size_t{12} << 20 : 1 + rng() % (64 << 10);
  std::string out(size, '\0');
  for (size_t at = 0; at < size; at += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + at, &v, std::min<size_t>(8, size - at));
  }
  return out;
}

// GetObject's bytes, or its status.
grpc::Status ReadAll(sv1::StorageService::Stub& stub, const std::string& ns, const std::string& key,
                     absl::Duration timeout, std::string* out) {
  sv1::GetObjectRequest r;
  r.set_namespace_(ns);
  r.set_key(key);
  auto ctx = server::MakeClientContext(timeout);
  auto stream = stub.GetObject(ctx.get(), r);
  sv1::GetObjectResponse part;
  while (stream->Read(&part)) *out += part.chunk();
  return stream->Finish();
}

TEST_F(MigrationTest, RandomKillsOfBothServicesLoseNothingAndResendAtMostAPartPerInterruptedCopy) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  // One part in flight per copy.
  std::unique_ptr<testing::HttpRelay> relay = RestartStorageBehindRelay(/*parallel_parts=*/1);
  ASSERT_NE(relay, nullptr);

  // CLOUDFLUX_CHAOS_SEED replays a run's objects and kill times.
  uint64_t seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  if (const char* replay = std::getenv("CLOUDFLUX_CHAOS_SEED")) {
    ASSERT_TRUE(absl::SimpleAtoi(replay, &seed)) << replay;
  }
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  constexpr int kObjects = 1000;
  std::map<std::string, std::pair<int64_t, std::string>> objects;  // key -> size, SHA-256
  int64_t total = 0;
  for (int i = 0; i < kObjects; ++i) {
    std::string bytes = Bytes(seed, i);
    std::string key = absl::StrCat("x/", absl::Dec(i, absl::kZeroPad4));
    ASSERT_TRUE(Put(key, bytes)) << key;
    objects[key] = {static_cast<int64_t>(bytes.size()), core::Sha256Hex(bytes)};
    total += static_cast<int64_t>(bytes.size());
  }
  ASSERT_EQ(relay->body_bytes("PUT"), 0) << "nothing was on S3 before the job";

  mv1::CreateMigrationRequest create;
  *create.mutable_selection() = Prefix("x/");
  create.mutable_target()->set_backend("s3");
  create.set_parallelism(8);
  auto job = Create(create);
  ASSERT_TRUE(job.ok()) << job.status();

  // A reader throughout: an object may be unreachable while the storage
  // adapter is down, never missing or different.
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::vector<std::string> wrong;
  std::mutex wrong_mu;
  const std::string storage_target = storage_.target();  // restarts keep it
  std::thread reader([&] {
    std::mt19937 rng(static_cast<uint32_t>(seed));
    while (!done) {
      auto it = objects.begin();
      std::advance(it, rng() % objects.size());
      if (it->second.first > (1 << 20)) continue;  // the small ones: many reads
      auto stub = sv1::StorageService::NewStub(server::MakeChannel(storage_target));
      std::string got;
      grpc::Status s = ReadAll(*stub, ns_, it->first, absl::Seconds(5), &got);
      if (s.ok()) {
        ++reads;
        if (core::Sha256Hex(got) != it->second.second) {
          std::lock_guard lock(wrong_mu);
          wrong.push_back(absl::StrCat(it->first, ": wrong bytes"));
        }
      } else if (s.error_code() == grpc::StatusCode::NOT_FOUND || s.error_code() == grpc::StatusCode::DATA_LOSS) {
        std::lock_guard lock(wrong_mu);
        wrong.push_back(absl::StrCat(it->first, ": ", s.error_message()));
      }
    }
  });

  // The kills: 8, at random moments, each service at least twice.
  std::mt19937 rng(static_cast<uint32_t>(seed >> 7));
  int migration_kills = 0, storage_kills = 0;
  auto ended = [&] {
    auto got = Get(job->id());
    return got.ok() && got->state() != mv1::MIGRATION_STATE_RUNNING;
  };
  for (int kill = 0; kill < 8 && !ended(); ++kill) {
    absl::SleepFor(absl::Milliseconds(300 + rng() % 2200));
    bool storage = kill < 2 ? kill == 0 : kill < 4 ? kill == 2 : rng() % 2 == 0;
    Service& victim = storage ? storage_ : migration_;
    victim.process->Signal(SIGKILL);
    victim.process->Wait(absl::Seconds(10));
    if (storage) {
      ++storage_kills;
      StartStorage(/*with_s3=*/true);
    } else {
      ++migration_kills;
      StartMigration();
    }
  }
  mv1::Migration finished = WaitEnded(job->id(), absl::Seconds(240));
  done = true;
  reader.join();
  EXPECT_EQ(finished.state(), mv1::MIGRATION_STATE_COMPLETED) << finished.DebugString();
  EXPECT_GE(migration_kills + storage_kills, 4) << "the job ended before the kills";
  EXPECT_GT(reads, 100);
  EXPECT_TRUE(wrong.empty()) << absl::StrJoin(wrong, "\n");

  // Each object once, at the target, whole.
  auto report = Report(job->id(), 500);
  ASSERT_EQ(report.size(), objects.size());
  int64_t allowance = 0;  // one part (or the object) for each attempt after the first
  int interrupted = 0;
  std::map<std::string, int> attempts;
  for (const auto& o : report) {
    attempts[o.key()] = o.attempts();
    EXPECT_EQ(o.outcome(), mv1::OBJECT_OUTCOME_MOVED) << o.DebugString();
    const auto& [size, sha] = objects[o.key()];
    EXPECT_EQ(o.sha256(), sha) << o.key();
    allowance += (o.attempts() - 1) * std::min(size, kPart);
    interrupted += o.attempts() > 1;
  }
  db::PoolOptions pool_options;
  pool_options.url = db_->url();
  pool_options.max_connections = 1;
  auto pool = db::Pool::Create(pool_options);
  ASSERT_TRUE(pool.ok());
  auto rows = (*pool)->Exec(
      "SELECT key, backend, version, sha256 FROM storage.objects WHERE namespace = $1 ORDER BY key", {ns_});
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), objects.size()) << "one catalogued version per object";
  auto physical = (*pool)->Exec("SELECT key, physical_key FROM storage.objects WHERE namespace = $1", {ns_});
  ASSERT_TRUE(physical.ok()) << physical.status();
  for (const auto& row : *rows) {
    EXPECT_EQ(row.Text(1), "s3") << row.Text(0);
    EXPECT_EQ(row.Int(2), 1) << row.Text(0);
    EXPECT_EQ(row.Text(3), objects[row.Text(0)].second) << row.Text(0);
  }
  // The multi-part ones, and every 50th, read back from S3.
  for (const auto& [key, expected] : objects) {
    if (expected.first < kPart && std::stoi(key.substr(2)) % 50 != 1) continue;
    std::string got;
    ASSERT_TRUE(ReadAll(*storage_stub_, ns_, key, absl::Seconds(60), &got).ok()) << key;
    EXPECT_EQ(core::Sha256Hex(got), expected.second) << key;
  }

  // Bytes sent to S3 beyond the objects' own: within one part (or the
  // object) per interrupted attempt.
  const int64_t sent = relay->body_bytes("PUT");
  EXPECT_EQ(relay->unframed(), 0);
  std::cout << "objects " << objects.size() << ", bytes " << total << "; kills: migration " << migration_kills
            << ", storage " << storage_kills << "; interrupted objects " << interrupted << "; sent " << sent
            << ", again " << sent - total << ", allowed " << allowance << "\n";
  EXPECT_GE(sent, total);
  EXPECT_LE(sent - total, allowance);
  {
    // Which copies sent more than their share: the bytes per S3 path, to
    // the catalogued objects' paths (always) and to paths no object kept
    // (when the total is over).
    std::map<std::string, std::string> key_of;  // physical key -> key
    for (const auto& row : *physical) key_of[row.Text(1)] = row.Text(0);
    for (const auto& [path, bytes] : relay->body_bytes_by_path("PUT")) {
      std::string physical_key = path.substr(std::min(path.size(), path.find("objects/")));
      auto it = key_of.find(physical_key);
      if (it == key_of.end()) {
        if (sent - total > allowance) std::cout << "  to " << path << " (no object's): " << bytes << " B\n";
        continue;
      }
      const int64_t size = objects[it->second].first;
      const int64_t share = size + (attempts[it->second] - 1) * std::min(size, kPart);
      if (bytes > share) {
        std::cout << "  " << it->second << ": " << bytes << " B for " << size << " B in "
                  << attempts[it->second] << " attempts\n";
      }
    }
  }

  // Sources: each local file is either gone or queued for removal.
  auto pending = (*pool)->Exec("SELECT count(*) FROM storage.pending_bytes WHERE backend = 'local'");
  ASSERT_TRUE(pending.ok());
  int64_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(data_dir_ + "/objects")) {
    files += e.is_regular_file();
  }
  EXPECT_LE(files, (*pending)[0].Int(0)) << "source files left that nothing will remove";
}

}  // namespace
}  // namespace cloudflux
