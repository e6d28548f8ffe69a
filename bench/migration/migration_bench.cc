// Migration jobs against `rclone` (Debian package) moving the same bytes
// between two buckets of one S3 server (--server: s3rver, or radosgw), and
// the cost of resuming a large move after kill -9. Needs the test servers:
//   scripts/dev bench build/release/bench/migration/migration_bench
//       [--server=s3rver|radosgw] [--mib=1024] [--objects=2000] [--object_kib=64]
//       [--transfers=16] [--resume=true]
//
// The storage adapter has two backends on the server, "src" (bucket
// cloudflux-test) and "dst" (bucket cloudflux-gcs), both S3 with the
// default 8 MiB parts, 4 at a time. rclone has two remotes on the same
// server and copies with --disable Copy, so that both stream the bytes
// through this machine (a migration between backends streams them; rclone
// would otherwise ask the server to copy).
//
// Large: one --mib object, a migration job moving it from src to dst vs
// `rclone copyto` of its bytes between the buckets. Small: --objects
// objects of --object_kib, one job with parallelism --transfers vs `rclone
// copy --files-from` with --transfers. Resume: a new --mib object moved by a
// job, the storage adapter killed (SIGKILL) once half the object is
// recorded as stored at the target and started again: the bytes it had
// streamed before the kill, the bytes the resumed copy did not send again,
// and the time from the kill to the end; rclone killed at half of its own
// copy time and run again, which sends the object from its start.
//
// --tiny=N: the scheduling overhead of a job, against the storage
// adapter's own rate for the same tier changes called directly.
#include <signal.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "cloudflux/core/config.h"
#include "cloudflux/migration/v1/migration.grpc.pb.h"
#include "bench_util.h"

ABSL_FLAG(std::string, server, "s3rver", "The S3 server: s3rver or radosgw.");
ABSL_FLAG(int32_t, mib, 1024, "Size of the large object in MiB (0 = skip the large and resume runs).");
ABSL_FLAG(int32_t, objects, 2000, "Number of small objects (0 = skip).");
ABSL_FLAG(int32_t, object_kib, 64, "Size of each small object in KiB.");
ABSL_FLAG(int32_t, transfers, 16, "The job's parallelism and rclone's --transfers for small objects.");
ABSL_FLAG(bool, resume, true, "Measure resuming a large move after kill -9.");
ABSL_FLAG(std::string, caps_mb, "",
          "Instead of the comparisons: for each cap (MB/s, comma-separated) a job moving --cap_seconds of "
          "bytes at that cap in 64 MiB objects, 4 at a time; the storage adapter's bytes sent, sampled every "
          "second, give the rate over every 10 s window.");
ABSL_FLAG(int32_t, cap_seconds, 60, "How long each capped job runs at its cap.");
ABSL_FLAG(int32_t, replication, 0,
          "Instead of the comparisons: replication lag under load. A rule keeps replicas of repl/ on dst while "
          "--replication objects of --object_kib are written to src by --transfers writers at once; its "
          "status, sampled every 100 ms, gives the lag (the oldest object waiting for its replica) during the "
          "writes and the time to catch up after them; peer: rclone copy of the same objects afterwards.");
ABSL_FLAG(int32_t, replication_workers, 2, "The migration service's --replication_workers.");
ABSL_FLAG(int32_t, tiny, 0,
          "Instead of the comparisons: the scheduling overhead. --tiny objects of 16 bytes on the local backend "
          "go HOT -> COLD by direct CopyObject calls, --transfers at a time (the peer: the same work without "
          "a scheduler), then COLD -> WARM by one migration job of parallelism --transfers; objects/s of "
          "each, and the migration schema's rows and bytes per object.");

using namespace cloudflux::bench;  // NOLINT
namespace mv1 = cloudflux::migration::v1;

namespace {

constexpr char kNs[] = "bench";

struct Bench {
  std::string endpoint, dir, backends;
  Adapter adapter;
  cloudflux::testing::ServiceProcess migration;
  std::unique_ptr<mv1::MigrationService::Stub> stub;
  std::map<std::string, std::string> rclone_env;
  std::string rclone_prefix;
};

std::map<std::string, std::string> AdapterEnv(const Bench& b) {
  return {{"CLOUDFLUX_DATA_DIR", b.dir + "/store"}, {"CLOUDFLUX_BACKENDS_FILE", b.backends}};
}

sv1::ObjectInfo HeadOrDie(Bench& b, const std::string& key) {
  sv1::HeadObjectRequest r;
  r.set_namespace_(kNs);
  r.set_key(key);
  sv1::ObjectInfo info;
  grpc::Status s = b.adapter.stub->HeadObject(cloudflux::server::MakeClientContext(absl::Seconds(30)).get(), r, &info);
  if (!s.ok()) Die("head " + key + ": " + s.error_message());
  return info;
}

// Creates the job and waits for it to end; its id.
// Polls GetMigration every `poll` (each poll sums the job's task rows).
std::string RunJob(Bench& b, const mv1::CreateMigrationRequest& request, double* seconds,
                   const std::function<void(const mv1::Migration&)>& on_poll = nullptr,
                   double* create_seconds = nullptr, absl::Duration poll = absl::Milliseconds(20)) {
  auto start = Clock::now();
  mv1::Migration job;
  grpc::Status s = b.stub->CreateMigration(cloudflux::server::MakeClientContext(absl::Seconds(120)).get(), request, &job);
  if (!s.ok()) Die("create migration: " + s.error_message());
  if (create_seconds != nullptr) *create_seconds = Seconds(start);
  while (true) {
    mv1::GetMigrationRequest get;
    get.set_id(job.id());
    mv1::Migration now;
    if (b.stub->GetMigration(cloudflux::server::MakeClientContext(absl::Seconds(10)).get(), get, &now).ok()) {
      if (on_poll) on_poll(now);
      if (now.state() != mv1::MIGRATION_STATE_RUNNING && now.state() != mv1::MIGRATION_STATE_PAUSED) {
        if (now.state() != mv1::MIGRATION_STATE_COMPLETED) Die("the job ended " + mv1::MigrationState_Name(now.state()));
        break;
      }
    }
    absl::SleepFor(poll);
  }
  *seconds = Seconds(start);
  return job.id();
}

std::vector<mv1::MigrationObject> Report(Bench& b, const std::string& id) {
  std::vector<mv1::MigrationObject> out;
  mv1::ListMigrationObjectsRequest r;
  r.set_id(id);
  r.mutable_page()->set_page_size(1000);
  while (true) {
    mv1::ListMigrationObjectsResponse page;
    grpc::Status s = b.stub->ListMigrationObjects(cloudflux::server::MakeClientContext(absl::Seconds(30)).get(), r, &page);
    if (!s.ok()) Die("report: " + s.error_message());
    out.insert(out.end(), page.objects().begin(), page.objects().end());
    if (page.page().next_page_token().empty()) return out;
    r.mutable_page()->set_page_token(page.page().next_page_token());
  }
}

mv1::CreateMigrationRequest MoveToDst(const std::vector<std::string>& keys, const std::string& prefix, int parallelism) {
  mv1::CreateMigrationRequest r;
  if (!prefix.empty()) {
    r.mutable_selection()->set_namespace_(kNs);
    r.mutable_selection()->set_prefix(prefix);
  }
  for (const auto& key : keys) {
    auto* o = r.mutable_selection()->add_objects();
    o->set_namespace_(kNs);
    o->set_key(key);
  }
  r.mutable_target()->set_backend("dst");
  r.set_parallelism(parallelism);
  return r;
}

double Rclone(const Bench& b, const std::string& args) {
  return TimeCommand("rclone -q --disable Copy " + args);
}

// CPU seconds used so far by the running processes named `comm` (e.g.
// postgres, radosgw, node for s3rver).
double CpuOf(const std::string& comm) {
  double total = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = entry.path().filename().string();
    if (pid.empty() || !std::isdigit(static_cast<unsigned char>(pid[0]))) continue;
    std::ifstream in(entry.path() / "comm");
    std::string name;
    if (!std::getline(in, name) || name != comm) continue;
    const double cpu = CpuSeconds(std::stoi(pid));
    if (cpu > 0) total += cpu;
  }
  return total;
}

// CPU seconds used so far by the machine and by each process a run
// involves; differences of two give a run's share.
struct CpuUse {
  double machine = 0, adapter = 0, migration = 0, server = 0, postgres = 0;
  // The S3 server's process name: radosgw, or node for s3rver.
  static std::string ServerName() { return absl::GetFlag(FLAGS_server) == "radosgw" ? "radosgw" : "node"; }
  static CpuUse Now(const Bench& b) {
    return {MachineCpuSeconds(), CpuSeconds(b.adapter.child.process->pid()), CpuSeconds(b.migration.process->pid()),
            CpuOf(ServerName()), CpuOf("postgres")};
  }
  CpuUse operator-(const CpuUse& o) const {
    return {machine - o.machine, adapter - o.adapter, migration - o.migration, server - o.server,
            postgres - o.postgres};
  }
};

// The adapter's counter `name` from its metrics endpoint (0 if absent).
double Metric(const Bench& b, const std::string& name) {
  auto page = cloudflux::testing::HttpGet(absl::StrCat("http://127.0.0.1:", b.adapter.child.metrics_port, "/metrics"));
  if (!page.ok()) return 0;
  for (absl::string_view line : absl::StrSplit(*page, '\n')) {
    if (absl::StartsWith(line, name + " ") || absl::StartsWith(line, name + "{")) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) return v;
    }
  }
  return 0;
}

int64_t Recorded(const Bench& b) {
  auto rows = b.adapter.catalog->Exec(
      "SELECT coalesce(max(part_size * cardinality(string_to_array(etags, E'\\n'))), 0) FROM storage.copy_uploads");
  return rows.ok() ? (*rows)[0].Int(0) : 0;
}


// --replication: a rule's lag while objects are being written under it.
void ReplicationLag(Bench& b, int n, int64_t object_bytes, int transfers) {
  mv1::ReplicationRule rule;
  rule.set_namespace_(kNs);
  rule.set_prefix("repl/");
  rule.set_backend("dst");
  mv1::ReplicationRule created;
  grpc::Status s =
      b.stub->CreateReplicationRule(cloudflux::server::MakeClientContext(absl::Seconds(30)).get(), rule, &created);
  if (!s.ok()) Die("create rule: " + s.error_message());
  auto status = [&] {
    mv1::ReplicationRuleRef ref;
    ref.set_id(created.id());
    mv1::ReplicationRule now;
    grpc::Status got = b.stub->GetReplicationRule(cloudflux::server::MakeClientContext(absl::Seconds(10)).get(), ref, &now);
    if (!got.ok()) Die("get rule: " + got.error_message());
    return now.status();
  };
  while (status().full_sync_running() || !status().has_last_full_sync()) absl::SleepFor(absl::Milliseconds(100));
  std::string base(object_bytes, 'r');
  std::mt19937_64 gen(13);
  FillRandom(base, gen);
  std::atomic<int> next{0}, failed{0};
  std::atomic<bool> writing{true};
  struct Sample {
    double at, lag;
    int64_t pending, copied;
  };
  std::vector<Sample> samples;
  const auto start = Clock::now();
  std::thread sampler([&] {
    while (true) {
      auto st = status();
      const double at = Seconds(start);
      const double lag = st.pending() > 0 ? absl::ToDoubleSeconds(absl::Now() - absl::FromUnixSeconds(st.oldest_pending().seconds()) - absl::Nanoseconds(st.oldest_pending().nanos())) : 0;
      samples.push_back({at, lag, st.pending(), st.objects_copied()});
      if (!writing && st.pending() == 0 && st.objects_copied() >= n) return;
      if (at > 3600) Die("replication did not catch up in an hour");
      absl::SleepFor(absl::Milliseconds(100));
    }
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < transfers; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < n; i = next++) {
        std::string data = base;
        std::memcpy(data.data(), &i, sizeof(i));
        if (!PutObject(*b.adapter.stub, kNs, absl::StrCat("repl/", absl::Dec(i, absl::kZeroPad6)), "src", &data).ok()) {
          ++failed;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  const double written = Seconds(start);
  writing = false;
  sampler.join();
  if (failed > 0) Die("puts failed");
  const double caught_up = samples.back().at;
  double max_lag = 0, sum_lag = 0;
  int during = 0;
  for (const auto& x : samples) {
    if (x.at > written) continue;
    max_lag = std::max(max_lag, x.lag);
    sum_lag += x.lag;
    ++during;
  }
  double max_after = 0;
  for (const auto& x : samples) {
    if (x.at > written) max_after = std::max(max_after, x.lag);
  }
  // Every replica is on dst with its object's bytes.
  int64_t replicas = 0;
  for (int i = 0; i < n; ++i) {
    replicas += HeadOrDie(b, absl::StrCat("repl/", absl::Dec(i, absl::kZeroPad6))).replicas_size() > 0;
  }
  if (replicas != n) Die(absl::StrCat(replicas, " of ", n, " objects have a replica"));
  std::ofstream list(b.dir + "/repl.txt");
  for (int i = 0; i < n; ++i) list << HeadOrDie(b, absl::StrCat("repl/", absl::Dec(i, absl::kZeroPad6))).physical_key() << "\n";
  list.close();
  const double peer = Rclone(b, absl::StrCat("copy --no-traverse --transfers ", transfers, " --checkers ", transfers,
                                             " --files-from ", b.dir, "/repl.txt src:cloudflux-test ", b.rclone_prefix,
                                             "/repl"));
  std::printf("replication of %d x %lld KiB written by %d writers: written in %.2f s (%.1f obj/s); replicas all made "
              "%.2f s after the first put (%.1f obj/s), %.2f s after the last\n",
              n, static_cast<long long>(object_bytes >> 10), transfers, written, n / written, caught_up,
              n / caught_up, caught_up - written);
  std::printf("lag while writing (%d samples): mean %.2f s, max %.2f s; after the writes: max %.2f s | rclone copy of "
              "the same objects afterwards: %.2f s (%.1f obj/s)\n",
              during, during > 0 ? sum_lag / during : 0, max_lag, max_after, peer, n / peer);
  std::fflush(stdout);
}

// --tiny: N tiny objects changing tier on the local backend, by direct calls
// (HOT -> COLD) and by one job (COLD -> WARM).
void Tiny(Bench& b, int n, int transfers) {
  auto parallel = [&](const std::function<bool(int)>& each) {
    std::atomic<int> next{0}, failed{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < transfers; ++t) {
      pool.emplace_back([&] {
        for (int i = next++; i < n; i = next++) failed += each(i) ? 0 : 1;
      });
    }
    for (auto& th : pool) th.join();
    if (failed > 0) Die(absl::StrCat(failed.load(), " calls failed"));
  };
  auto start = Clock::now();
  parallel([&](int i) {
    std::string data = absl::StrCat("tiny object ", absl::Dec(i, absl::kZeroPad6));
    return PutObject(*b.adapter.stub, kNs, absl::StrCat("tiny/", absl::Dec(i, absl::kZeroPad6)), "local", &data).ok();
  });
  std::printf("put %d tiny objects: %.1f s\n", n, Seconds(start));
  std::fflush(stdout);
  CpuUse before = CpuUse::Now(b);
  start = Clock::now();
  parallel([&](int i) {
    sv1::CopyObjectRequest r;
    r.set_source_namespace(kNs);
    r.set_source_key(absl::StrCat("tiny/", absl::Dec(i, absl::kZeroPad6)));
    r.set_tier(cloudflux::common::v1::STORAGE_TIER_COLD);
    auto ctx = cloudflux::server::MakeClientContext(absl::Seconds(30));
    auto reader = b.adapter.stub->CopyObject(ctx.get(), r);
    sv1::CopyObjectProgress p;
    while (reader->Read(&p)) {
    }
    return reader->Finish().ok();
  });
  const double direct = Seconds(start);
  const CpuUse direct_cpu = CpuUse::Now(b) - before;
  before = CpuUse::Now(b);
  mv1::CreateMigrationRequest job;
  job.mutable_selection()->set_namespace_(kNs);
  job.mutable_selection()->set_prefix("tiny/");
  job.mutable_target()->set_tier(cloudflux::common::v1::STORAGE_TIER_WARM);
  job.set_parallelism(transfers);
  double ours = 0, create = 0;
  // Polled once a second, as a dashboard would: a poll of a 100,000-task
  // job sums 100,000 rows.
  std::string id = RunJob(b, job, &ours, nullptr, &create, absl::Seconds(1));
  const CpuUse job_cpu = CpuUse::Now(b) - before;
  auto rows = b.adapter.catalog->Exec(
      "SELECT (SELECT count(*) FROM migration.tasks), (SELECT count(*) FROM migration.jobs), "
      "(SELECT count(*) FROM migration.outbox), (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
      "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'migration' AND c.relkind IN ('r', 'm'))");
  if (!rows.ok()) Die("rows: " + std::string(rows.status().message()));
  int64_t warm = 0;
  for (const auto& o : Report(b, id)) warm += o.outcome() == mv1::OBJECT_OUTCOME_MOVED;
  if (warm != n) Die(absl::StrCat("the job moved ", warm, " of ", n));
  std::printf("%d tiny objects, %d at a time: job %.2f s %.0f obj/s (its creation included: %.2f s) | direct "
              "CopyObject calls %.2f s %.0f obj/s | ratio %.2f\n",
              n, transfers, ours, n / ours, create, direct, n / direct, direct / ours);
  std::printf("CPU ms per object: job: machine %.2f, storage adapter %.2f, migration %.2f | direct: machine %.2f, "
              "storage adapter %.2f\n",
              1e3 * job_cpu.machine / n, 1e3 * job_cpu.adapter / n, 1e3 * job_cpu.migration / n,
              1e3 * direct_cpu.machine / n, 1e3 * direct_cpu.adapter / n);
  const auto& r = (*rows)[0];
  std::printf("migration schema after the job: %lld task rows (%.2f per object), %lld job rows, %lld outbox rows "
              "left; %.0f bytes per object (tables and indexes)\n",
              static_cast<long long>(r.Int(0)), static_cast<double>(r.Int(0)) / n, static_cast<long long>(r.Int(1)),
              static_cast<long long>(r.Int(2)), static_cast<double>(r.Int(3)) / n);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  cloudflux::core::ParseFlags(argc, argv, "migration jobs vs rclone between two S3 buckets; resume after kill -9");
  Bench b;
  const std::string server = absl::GetFlag(FLAGS_server);
  if (server != "s3rver" && server != "radosgw") Die("--server is s3rver or radosgw");
  auto endpoint = server == "radosgw" ? cloudflux::testing::TestRadosgwEndpoint() : cloudflux::testing::TestS3Endpoint();
  if (!endpoint.ok()) Die("run through scripts/dev bench (needs " + server + ")");
  b.endpoint = *endpoint;
  const int64_t mib = absl::GetFlag(FLAGS_mib);
  const int objects = absl::GetFlag(FLAGS_objects);
  const int64_t object_bytes = int64_t{absl::GetFlag(FLAGS_object_kib)} << 10;
  const int transfers = absl::GetFlag(FLAGS_transfers);
  b.dir = FreshDir("cloudflux-migration-bench");

  unsetenv("AWS_CA_BUNDLE");
  for (const char* remote : {"SRC", "DST"}) {
    std::string p = absl::StrCat("RCLONE_CONFIG_", remote, "_");
    for (const auto& [k, v] : std::map<std::string, std::string>{{"TYPE", "s3"},
                                                                {"PROVIDER", "Other"},
                                                                {"ENDPOINT", b.endpoint},
                                                                {"ACCESS_KEY_ID", "S3RVER"},
                                                                {"SECRET_ACCESS_KEY", "S3RVER"},
                                                                {"REGION", "us-east-1"},
                                                                {"FORCE_PATH_STYLE", "true"}}) {
      setenv((p + k).c_str(), v.c_str(), 1);
      b.rclone_env[p + k] = v;
    }
  }
  b.rclone_prefix = "dst:cloudflux-gcs/rclone-" + std::to_string(getpid());

  b.backends = b.dir + "/backends.json";
  std::ofstream(b.backends) << absl::StrCat(
      R"({"backends": [{"name": "src", "kind": "s3", "endpoint": ")", b.endpoint,
      R"(", "bucket": "cloudflux-test", "accessKeyId": "S3RVER", "secretAccessKey": "S3RVER"},
         {"name": "dst", "kind": "s3", "endpoint": ")", b.endpoint,
      R"(", "bucket": "cloudflux-gcs", "accessKeyId": "S3RVER", "secretAccessKey": "S3RVER"}]})");
  b.adapter = StartAdapter(AdapterEnv(b));
  auto migration = cloudflux::testing::StartServiceBinary(
      "migration", b.adapter.db->url(),
      {{"CLOUDFLUX_STORAGE_ADDRESS", b.adapter.child.target()},
       {"CLOUDFLUX_BACKEND_CLOUDS", "src=aws,dst=aws"},
       {"CLOUDFLUX_WORKERS", std::to_string(std::max(transfers, 4))},
       {"CLOUDFLUX_REPLICATION_WORKERS", std::to_string(absl::GetFlag(FLAGS_replication_workers))}});
  if (!migration.ok()) Die("cannot start migration: " + std::string(migration.status().message()));
  b.migration = std::move(*migration);
  b.stub = mv1::MigrationService::NewStub(cloudflux::server::MakeChannel(b.migration.target()));
  std::printf("%s at %s; peer: ", server.c_str(), b.endpoint.c_str());
  std::fflush(stdout);
  std::system("rclone version | head -1");

  if (const int replication = absl::GetFlag(FLAGS_replication); replication > 0) {
    ReplicationLag(b, replication, object_bytes, transfers);
    b.migration.process->Signal(SIGTERM);
    b.migration.process->Wait(absl::Seconds(30));
    StopAdapter(b.adapter, b.dir);
    return 0;
  }

  if (const int tiny = absl::GetFlag(FLAGS_tiny); tiny > 0) {
    Tiny(b, tiny, transfers);
    b.migration.process->Signal(SIGTERM);
    b.migration.process->Wait(absl::Seconds(30));
    StopAdapter(b.adapter, b.dir);
    return 0;
  }

  if (const std::string caps = absl::GetFlag(FLAGS_caps_mb); !caps.empty()) {
    const int seconds = absl::GetFlag(FLAGS_cap_seconds);
    for (absl::string_view cap_text : absl::StrSplit(caps, ',')) {
      int64_t cap_mb = 0;
      if (!absl::SimpleAtoi(cap_text, &cap_mb) || cap_mb <= 0) Die("bad --caps_mb");
      const int64_t cap = cap_mb * 1000000;
      const int64_t object = 64 << 20;
      const int count = static_cast<int>((cap * seconds + object - 1) / object);
      const std::string prefix = absl::StrCat("cap", cap_mb, "/");
      for (int i = 0; i < count; ++i) {
        if (!PutGenerated(*b.adapter.stub, kNs, absl::StrCat(prefix, i), "src", object).ok()) Die("put");
      }
      mv1::CreateMigrationRequest r = MoveToDst({}, prefix, 4);
      r.set_bandwidth_bytes_per_second(cap);
      std::vector<double> sent;  // cumulative, one sample a second
      std::atomic<bool> done{false};
      std::thread sampler([&] {
        auto next = Clock::now();
        while (!done) {
          sent.push_back(Metric(b, "cloudflux_storage_copy_sent_bytes_total"));
          next += std::chrono::seconds(1);
          std::this_thread::sleep_until(next);
        }
      });
      double total = 0;
      RunJob(b, r, &total);
      done = true;
      sampler.join();
      // Windows of 10 s, from the first second bytes moved to the last whole
      // window before the job's last objects (fewer copies than its
      // parallelism) ran.
      size_t first = 0;
      while (first + 1 < sent.size() && sent[first + 1] == sent[first]) ++first;
      double lowest = 1e18, highest = 0;
      int windows = 0;
      const double moved = static_cast<double>(count) * object;
      for (size_t i = first; i + 10 < sent.size(); ++i) {
        if (sent[i + 10] - sent[first] > moved - 4.0 * object) break;  // the tail
        double rate = (sent[i + 10] - sent[i]) / 10;
        lowest = std::min(lowest, rate);
        highest = std::max(highest, rate);
        ++windows;
      }
      std::printf("cap %lld MB/s: %d x 64 MiB in %.1f s (%.2f MB/s overall); %d windows of 10 s: %.2f to %.2f MB/s "
                  "(%.1f%% to %.1f%% of the cap)\n",
                  static_cast<long long>(cap_mb), count, total, moved / total / 1e6, windows, lowest / 1e6,
                  highest / 1e6, 100 * lowest / cap, 100 * highest / cap);
      std::fflush(stdout);
    }
    b.migration.process->Signal(SIGTERM);
    b.migration.process->Wait(absl::Seconds(30));
    StopAdapter(b.adapter, b.dir);
    return 0;
  }

  if (mib > 0) {
    if (!PutGenerated(*b.adapter.stub, kNs, "big.bin", "src", mib << 20).ok()) Die("put big.bin");
    sv1::ObjectInfo big = HeadOrDie(b, "big.bin");
    CpuUse before = CpuUse::Now(b);
    double peer = Rclone(b, absl::StrCat("copyto src:cloudflux-test/", big.physical_key(), " ", b.rclone_prefix, "/big.bin"));
    const CpuUse peer_cpu = CpuUse::Now(b) - before;
    before = CpuUse::Now(b);
    double ours = 0;
    RunJob(b, MoveToDst({"big.bin"}, "", 1), &ours, nullptr, nullptr, absl::Milliseconds(200));
    const CpuUse job_cpu = CpuUse::Now(b) - before;
    if (HeadOrDie(b, "big.bin").backend() != "dst") Die("big.bin did not move");
    std::printf("%-30s: %8.2f s %8.1f MiB/s | rclone copyto %8.2f s %8.1f MiB/s | ratio %.2f\n",
                absl::StrCat("move ", mib, " MiB src -> dst").c_str(), ours, mib / ours, peer, mib / peer, peer / ours);
    std::printf("%-30s: machine CPU %.2f s (storage adapter %.2f, %s %.2f) | rclone copyto %.2f s (%s %.2f)\n",
                "  (CPU)", job_cpu.machine, job_cpu.adapter, CpuUse::ServerName().c_str(), job_cpu.server,
                peer_cpu.machine, CpuUse::ServerName().c_str(), peer_cpu.server);
  }

  if (objects > 0) {
    std::string base(object_bytes, 'x');
    std::mt19937_64 gen(11);
    FillRandom(base, gen);
    std::atomic<int> next{0}, failed{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 16; ++t) {
      pool.emplace_back([&] {
        for (int i = next++; i < objects; i = next++) {
          std::string data = base;
          std::memcpy(data.data(), &i, sizeof(i));
          if (!PutObject(*b.adapter.stub, kNs, absl::StrCat("small/", i), "src", &data).ok()) ++failed;
        }
      });
    }
    for (auto& th : pool) th.join();
    if (failed > 0) Die("small puts failed");
    std::ofstream list(b.dir + "/files.txt");
    for (int i = 0; i < objects; ++i) list << HeadOrDie(b, absl::StrCat("small/", i)).physical_key() << "\n";
    list.close();
    // --no-traverse: rclone's listing of the source misses s3rver's keys
    // under --files-from; each file is looked up instead.
    CpuUse before = CpuUse::Now(b);
    double peer = Rclone(b, absl::StrCat("copy --no-traverse --transfers ", transfers, " --checkers ", transfers, " --files-from ",
                                         b.dir, "/files.txt src:cloudflux-test ", b.rclone_prefix, "/small"));
    const CpuUse peer_cpu = CpuUse::Now(b) - before;
    // rclone copied them all (it is quiet about what it skipped).
    FILE* count = popen(absl::StrCat("rclone size --json ", b.rclone_prefix, "/small").c_str(), "r");
    char buf[256] = {};
    size_t n = count != nullptr ? fread(buf, 1, sizeof(buf) - 1, count) : 0;
    if (count != nullptr) pclose(count);
    if (!absl::StrContains(std::string(buf, n), absl::StrCat("\"count\":", objects, ","))) {
      Die("rclone did not copy every object: " + std::string(buf, n));
    }
    // A move also deletes each source: rclone move of its own copies (the
    // same files, streamed, each deleted after it is copied) is that work.
    double peer_move = TimeCommand(absl::StrCat(
        "rclone -q --disable Copy,Move move --no-traverse --transfers ", transfers, " --checkers ", transfers,
        " --files-from ", b.dir, "/files.txt ", b.rclone_prefix, "/small ", b.rclone_prefix, "/small-moved"));
    // A copy job (the sources stay) is rclone copy's work: the same objects
    // into another namespace on dst.
    mv1::CreateMigrationRequest copy = MoveToDst({}, "small/", transfers);
    copy.set_mode(mv1::MIGRATION_MODE_COPY);
    copy.mutable_target()->set_namespace_("bench-copy");
    double copied = 0;
    before = CpuUse::Now(b);
    RunJob(b, copy, &copied, nullptr, nullptr, absl::Milliseconds(200));
    const CpuUse job_cpu = CpuUse::Now(b) - before;
    double ours = 0;
    RunJob(b, MoveToDst({}, "small/", transfers), &ours);
    std::printf("%-30s: %8.2f s %8.1f obj/s | rclone copy    %8.2f s %8.1f obj/s | ratio %.2f\n",
                absl::StrCat("copy ", objects, " x ", object_bytes >> 10, " KiB").c_str(), copied, objects / copied,
                peer, objects / peer, peer / copied);
    std::printf("%-30s: machine CPU per object: copy job %.2f ms (storage adapter %.2f, migration %.2f, %s %.2f, "
                "postgres %.2f) | rclone copy %.2f ms (%s %.2f)\n",
                "  (the copy)", 1e3 * job_cpu.machine / objects, 1e3 * job_cpu.adapter / objects,
                1e3 * job_cpu.migration / objects, CpuUse::ServerName().c_str(), 1e3 * job_cpu.server / objects,
                1e3 * job_cpu.postgres / objects, 1e3 * peer_cpu.machine / objects, CpuUse::ServerName().c_str(),
                1e3 * peer_cpu.server / objects);
    std::printf("%-30s: %8.2f s %8.1f obj/s | rclone copy    %8.2f s %8.1f obj/s | ratio %.2f\n",
                absl::StrCat("move ", objects, " x ", object_bytes >> 10, " KiB").c_str(), ours, objects / ours, peer,
                objects / peer, peer / ours);
    std::printf("%-30s: %8.2f s %8.1f obj/s | rclone move    %8.2f s %8.1f obj/s | ratio %.2f\n", "  (same, vs a move)",
                ours, objects / ours, peer_move, objects / peer_move, peer_move / ours);
  }

  if (mib > 0 && absl::GetFlag(FLAGS_resume)) {
    const int64_t size = mib << 20;
    if (!PutGenerated(*b.adapter.stub, kNs, "resume.bin", "src", size).ok()) Die("put resume.bin");
    sv1::ObjectInfo src = HeadOrDie(b, "resume.bin");
    // rclone, killed at half its own copy time, then run again.
    const std::string copy = absl::StrCat("copyto src:cloudflux-test/", src.physical_key(), " ", b.rclone_prefix,
                                          "/resume.bin");
    double whole = Rclone(b, copy);
    TimeCommand("rclone -q deletefile " + b.rclone_prefix + "/resume.bin");
    std::vector<std::string> argv = {"/usr/bin/rclone", "-q", "--disable", "Copy"};
    for (absl::string_view part : absl::StrSplit(copy, ' ')) argv.emplace_back(part);
    auto child = cloudflux::testing::ChildProcess::Start(argv, b.rclone_env, b.dir + "/rclone.log");
    if (!child.ok()) Die("rclone: " + std::string(child.status().message()));
    std::this_thread::sleep_for(std::chrono::duration<double>(whole / 2));
    (*child)->Signal(SIGKILL);
    (*child)->Wait(absl::Seconds(10));
    double again = Rclone(b, copy);
    std::printf("rclone copyto killed at %.2f s (half of %.2f s) and run again: %.2f s, sending all %lld MiB again\n",
                whole / 2, whole, again, static_cast<long long>(mib));
    const std::string port = b.adapter.child.target().substr(b.adapter.child.target().rfind(':') + 1);
    const double sent_before = Metric(b, "cloudflux_storage_copy_sent_bytes_total");
    double sent_at_kill = 0, total = 0;
    int64_t stored_at_kill = 0;
    Clock::time_point killed_at;
    bool killed = false;
    std::string id = RunJob(b, MoveToDst({"resume.bin"}, "", 1), &total, [&](const mv1::Migration&) {
      if (killed) return;
      while (Recorded(b) < size / 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      sent_at_kill = Metric(b, "cloudflux_storage_copy_sent_bytes_total") - sent_before;
      b.adapter.child.process->Signal(SIGKILL);
      b.adapter.child.process->Wait(absl::Seconds(10));
      killed_at = Clock::now();
      killed = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      stored_at_kill = Recorded(b);
      auto env = AdapterEnv(b);
      env["CLOUDFLUX_LISTEN_ADDRESS"] = "127.0.0.1:" + port;
      auto restarted = cloudflux::testing::StartServiceBinary("storage-adapter", b.adapter.db->url(), env);
      if (!restarted.ok()) Die("restart: " + std::string(restarted.status().message()));
      b.adapter.child = std::move(*restarted);
    });
    double finish = Seconds(killed_at);
    int64_t resumed = 0;
    for (const auto& o : Report(b, id)) resumed += o.bytes_resumed();
    double sent_after = Metric(b, "cloudflux_storage_copy_sent_bytes_total");
    if (HeadOrDie(b, "resume.bin").sha256() != src.sha256()) Die("resume.bin changed");
    std::printf("resume after kill -9 at %.0f%% of %lld MiB: streamed before the kill %.1f MiB, stored %.1f MiB, "
                "resumed %.1f MiB, sent again %.1f MiB, sent after the restart %.1f MiB; kill -> done %.2f s\n",
                100.0 * stored_at_kill / size, static_cast<long long>(mib), sent_at_kill / (1 << 20),
                stored_at_kill / double(1 << 20), resumed / double(1 << 20), (sent_at_kill - resumed) / (1 << 20),
                sent_after / (1 << 20), finish);
  }
  b.migration.process->Signal(SIGTERM);
  b.migration.process->Wait(absl::Seconds(30));
  StopAdapter(b.adapter, b.dir);
  return 0;
}
