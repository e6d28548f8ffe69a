// The storage adapter's S3 backend against `rclone` (Debian package) on the
// same S3 server (--server: s3rver, or radosgw, Ceph's S3 gateway on a
// one-OSD memstore cluster), and many small objects per second on the S3
// and local backends. Needs the test servers:
//   scripts/dev bench build/release/bench/storage/storage_cloud_bench
//       [--server=s3rver|radosgw] [--mib=256] [--repeat=3] [--objects=10000]
//       [--object_kib=64] [--threads=16]
//   scripts/dev bench build/release/bench/storage/storage_cloud_bench --rss_sizes_mib=1024,10240
//
// Large: one --mib object put (rclone copyto -I vs PutObject to backend s3) and
// got back into a file (rclone copyto -I vs GetObject), --repeat rounds with
// the two alternating, medians reported. Small: --objects
// objects of --object_kib put and got by --threads clients (rclone copy of a
// directory with --transfers=--threads vs that many gRPC clients). Local
// small objects are compared with the POSIX floor: write + fsync + rename of
// each file for the put, a read of each file for the get, as many threads,
// on the same disk.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "cloudflux/core/config.h"
#include "bench_util.h"

ABSL_FLAG(std::string, server, "s3rver", "The S3 server: s3rver or radosgw.");
ABSL_FLAG(int32_t, mib, 256, "Size of the large object in MiB (0 = skip).");
ABSL_FLAG(int32_t, objects, 10000, "Number of small objects (0 = skip).");
ABSL_FLAG(int32_t, object_kib, 64, "Size of each small object in KiB.");
ABSL_FLAG(int32_t, repeat, 3, "Rounds of the large put/get (rclone and the service alternating); medians reported.");
ABSL_FLAG(std::string, rss_sizes_mib, "",
          "Instead of the comparisons: for each of these sizes (MiB, comma-separated) a put of generated "
          "content and a get into a client that keeps nothing on the s3 backend, with the service's peak "
          "RSS of each.");
ABSL_FLAG(int32_t, threads, 16, "Concurrent clients / rclone transfers for small objects.");

using namespace cloudflux::bench;  // NOLINT
namespace fs = std::filesystem;

namespace {

// Runs fn(i) for i in [0, n) on `threads` threads; wall seconds.
template <class Fn>
double Parallel(int n, int threads, Fn fn) {
  std::atomic<int> next{0};
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < n; i = next++) fn(i);
    });
  }
  for (auto& th : pool) th.join();
  return Seconds(start);
}

std::string SmallObject(const std::string& base, int i) {
  std::string data = base;
  std::memcpy(data.data(), &i, sizeof(i));  // distinct content per object
  return data;
}

void Report(const char* what, double ours, double peer, const char* peer_name, double units,
            const char* unit) {
  std::printf("%-34s: %8.2f s %9.1f %s/s | %-22s %8.2f s %9.1f %s/s | ratio %.2f\n", what, ours,
              units / ours, unit, peer_name, peer, units / peer, unit, peer / ours);
}

}  // namespace

int main(int argc, char** argv) {
  cloudflux::core::ParseFlags(argc, argv, "storage adapter S3 backend vs rclone; small objects");
  const std::string server = absl::GetFlag(FLAGS_server);
  if (server != "s3rver" && server != "radosgw") Die("--server is s3rver or radosgw");
  auto endpoint = server == "radosgw" ? cloudflux::testing::TestRadosgwEndpoint()
                                      : cloudflux::testing::TestS3Endpoint();
  if (!endpoint.ok()) Die("run through scripts/dev bench (needs " + server + ")");
  const int64_t mib = absl::GetFlag(FLAGS_mib);
  const int objects = absl::GetFlag(FLAGS_objects);
  const int64_t object_bytes = int64_t{absl::GetFlag(FLAGS_object_kib)} << 10;
  const int threads = absl::GetFlag(FLAGS_threads);
  std::string dir = FreshDir("cloudflux-cloud-bench");

  // rclone's remote "bench" = the same bucket, from the environment.
  // rclone's AWS SDK cannot combine AWS_CA_BUNDLE with its own transport;
  // the endpoint is plain HTTP on loopback anyway.
  unsetenv("AWS_CA_BUNDLE");
  setenv("RCLONE_CONFIG_BENCH_TYPE", "s3", 1);
  setenv("RCLONE_CONFIG_BENCH_PROVIDER", "Other", 1);
  setenv("RCLONE_CONFIG_BENCH_ENDPOINT", endpoint->c_str(), 1);
  setenv("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", "S3RVER", 1);
  setenv("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", "S3RVER", 1);
  setenv("RCLONE_CONFIG_BENCH_REGION", "us-east-1", 1);
  setenv("RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE", "true", 1);
  const std::string remote = "bench:cloudflux-test/rclone-" + std::to_string(getpid());

  std::string backends = dir + "/backends.json";
  std::ofstream(backends) << R"({"backends": [{"name": "s3", "kind": "s3", "endpoint": ")" << *endpoint
                          << R"(", "bucket": "cloudflux-test", "accessKeyId": "S3RVER",
                                "secretAccessKey": "S3RVER"}]})";
  Adapter adapter = StartAdapter({{"CLOUDFLUX_DATA_DIR", dir + "/store"},
                                  {"CLOUDFLUX_BACKENDS_FILE", backends}});
  auto& stub = *adapter.stub;
  std::printf("%s at %s; peer: ", server.c_str(), endpoint->c_str());
  std::fflush(stdout);
  std::system("rclone version | head -1");
  if (const std::string sizes = absl::GetFlag(FLAGS_rss_sizes_mib); !sizes.empty()) {
    PeakRssBySize(adapter, "s3", ParseSizesMib(sizes));
    StopAdapter(adapter, dir);
    return 0;
  }

  // The server's own CPU time per phase: how much of it each client's
  // requests cost (s3rver is single-threaded; radosgw's is the gateway's
  // and the OSD's).
  std::vector<int> server_pids;
  for (const char* pattern : server == "radosgw" ? std::vector<const char*>{"^radosgw ", "^ceph-osd "}
                                                 : std::vector<const char*>{"node_modules/.bin/s3rver"}) {
    if (int pid = FindPid(pattern); pid > 0) server_pids.push_back(pid);
  }
  auto server_cpu = [&] {
    double total = 0;
    for (int pid : server_pids) total += CpuSeconds(pid);
    return total;
  };
  const int service = adapter.child.process->pid();
  if (mib > 0) {
    std::string src = dir + "/big.bin";
    WriteRandomFile(src, mib << 20, 7);
    // --repeat rounds, rclone and the service alternating; medians reported
    // (this VM's speed drifts between consecutive runs).
    const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
    std::vector<double> put, rclone_put, get, rclone_get;
    std::vector<double> put_cpu, rclone_put_cpu, get_cpu, rclone_get_cpu, service_cpu, client_cpu;
    auto timed = [&](std::vector<double>& seconds, std::vector<double>& cpu, const std::function<void()>& run) {
      double before = server_cpu();
      auto start = Clock::now();
      run();
      seconds.push_back(Seconds(start));
      cpu.push_back(server_cpu() - before);
    };
    for (int r = 0; r < repeat; ++r) {
      timed(rclone_put, rclone_put_cpu, [&] {
        TimeCommand(absl::StrCat("rclone copyto -q -I ", src, " ", remote, "/big.bin"));
      });
      timed(put, put_cpu, [&] {
        grpc::Status s = PutObject(stub, "bench", "big.bin", "s3", nullptr, src);
        if (!s.ok()) Die("put: " + s.error_message());
      });
      WaitForRemovals(adapter);  // the replaced version's, after the answer
      timed(rclone_get, rclone_get_cpu, [&] {
        TimeCommand(absl::StrCat("rclone copyto -q -I ", remote, "/big.bin ", dir, "/rclone-got.bin"));
      });
      double service_before = CpuSeconds(service), client_before = CpuSeconds(getpid());
      timed(get, get_cpu, [&] {
        int64_t n = 0;
        grpc::Status s = GetObject(stub, "bench", "big.bin", &n, dir + "/got.bin");
        if (!s.ok() || n != (mib << 20)) Die("get: " + s.error_message());
      });
      service_cpu.push_back(CpuSeconds(service) - service_before);
      client_cpu.push_back(CpuSeconds(getpid()) - client_before);
      std::printf("round %d: put %.2f s (rclone %.2f, ratio %.2f), get %.2f s (rclone %.2f, ratio %.2f)\n", r + 1,
                  put.back(), rclone_put.back(), rclone_put.back() / put.back(), get.back(), rclone_get.back(),
                  rclone_get.back() / get.back());
    }
    std::printf("large object: %lld MiB, medians of %d rounds\n", static_cast<long long>(mib), repeat);
    Report("put to s3 backend", Median(put), Median(rclone_put), "rclone copyto", mib, "MiB");
    Report("get from s3 backend", Median(get), Median(rclone_get), "rclone copyto", mib, "MiB");
    if (!server_pids.empty()) {
      std::printf("%-24s: put %.2f (rclone %.2f), get %.2f (rclone %.2f)\n",
                  (server + " CPU seconds").c_str(), Median(put_cpu),
                  Median(rclone_put_cpu), Median(get_cpu), Median(rclone_get_cpu));
    }
    std::printf("get CPU seconds         : service %.2f, client %.2f\n", Median(service_cpu), Median(client_cpu));
  }

  if (objects > 0) {
    std::string base_object(object_bytes, '\0');
    {
      std::mt19937_64 gen(11);
      for (size_t j = 0; j + 8 <= base_object.size(); j += 8) {
        uint64_t r = gen();
        std::memcpy(base_object.data() + j, &r, 8);
      }
    }
    std::string small_dir = dir + "/small";
    fs::create_directories(small_dir);
    for (int i = 0; i < objects; ++i) {
      std::ofstream(absl::StrCat(small_dir, "/", i), std::ios::binary) << SmallObject(base_object, i);
    }
    std::printf("small objects: %d x %lld KiB, %d clients / transfers\n", objects,
                static_cast<long long>(object_bytes >> 10), threads);
    std::atomic<int> failures{0};
    // Where a phase's CPU went, in ms per object: the service, this client,
    // the S3 server, and the rest of the machine (PostgreSQL, the kernel's
    // own threads, rclone when it is the one running).
    auto cpu_split = [&](const char* what, const std::function<double()>& run) {
      double machine = MachineCpuSeconds(), ours = CpuSeconds(service), client = CpuSeconds(getpid()),
             s3 = server_cpu();
      double seconds = run();
      machine = MachineCpuSeconds() - machine;
      ours = CpuSeconds(service) - ours;
      client = CpuSeconds(getpid()) - client;
      s3 = server_cpu() - s3;
      double ms = 1000.0 / objects;
      std::printf("%-34s: CPU ms/object: service %.2f, client %.2f, %s %.2f, rest %.2f\n", what, ours * ms,
                  client * ms, server.c_str(), s3 * ms, (machine - ours - client - s3) * ms);
      std::fflush(stdout);
      return seconds;
    };
    for (const char* backend : {"s3", "local"}) {
      double put = cpu_split(absl::StrCat("small put, ", backend).c_str(), [&] {
        return Parallel(objects, threads, [&](int i) {
          std::string data = SmallObject(base_object, i);
          if (!PutObject(stub, "small", absl::StrCat(backend, "/", i), backend, &data).ok()) ++failures;
        });
      });
      double get = cpu_split(absl::StrCat("small get, ", backend).c_str(), [&] {
        return Parallel(objects, threads, [&](int i) {
          int64_t n = 0;
          if (!GetObject(stub, "small", absl::StrCat(backend, "/", i), &n).ok() || n != object_bytes) {
            ++failures;
          }
        });
      });
      if (failures > 0) Die(absl::StrCat(failures.load(), " small-object calls failed"));
      double peer_put, peer_get;
      const char* peer_put_name = "rclone copy";
      const char* peer_get_name = "rclone copy";
      if (std::string(backend) == "s3") {
        std::string flags = absl::StrCat(" --transfers=", threads, " --checkers=", threads, " -q");
        peer_put = cpu_split("small put, rclone", [&] {
          return TimeCommand(absl::StrCat("rclone copy", flags, " ", small_dir, " ", remote, "/small"));
        });
        peer_get = cpu_split("small get, rclone", [&] {
          return TimeCommand(absl::StrCat("rclone copy", flags, " ", remote, "/small ", dir, "/small-back"));
        });
      } else {
        peer_put_name = "write+fsync+rename";
        peer_get_name = "read of each file";
        std::string floor_dir = dir + "/floor";
        fs::create_directories(floor_dir);
        peer_put = Parallel(objects, threads, [&](int i) {
          std::string data = SmallObject(base_object, i);
          std::string tmp = absl::StrCat(floor_dir, "/", i, ".tmp");
          int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0640);
          if (fd < 0 || write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()) ||
              fsync(fd) != 0) {
            ++failures;
          }
          close(fd);
          if (rename(tmp.c_str(), absl::StrCat(floor_dir, "/", i).c_str()) != 0) ++failures;
        });
        peer_get = Parallel(objects, threads, [&](int i) {
          std::ifstream in(absl::StrCat(floor_dir, "/", i), std::ios::binary);
          std::string data(object_bytes, '\0');
          if (!in.read(data.data(), object_bytes)) ++failures;
        });
      }
      Report(absl::StrCat("small put, ", backend, " backend").c_str(), put, peer_put, peer_put_name, objects,
             "obj");
      Report(absl::StrCat("small get, ", backend, " backend").c_str(), get, peer_get, peer_get_name, objects,
             "obj");
    }
  }
  std::printf("service peak RSS: %lld KiB\n",
              static_cast<long long>(PeakRssKib(adapter.child.process->pid())));
  std::system(absl::StrCat("rclone purge -q ", remote, " 2>/dev/null").c_str());
  StopAdapter(adapter, dir);
  return 0;
}
