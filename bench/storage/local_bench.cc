// 1 GiB put and get through the storage adapter (local backend) against dd
// on the same disk, with the service's peak RSS: the put against
// `dd ... conv=fsync` of the same source file, the get against dd of the
// object's own file as the service stored it (out of the page cache, as the
// get finds it). Needs the test servers:
//   scripts/dev bench build/release/bench/storage/storage_local_bench [--mib=1024] [--repeat=4] [--cold_reads]
//   scripts/dev bench build/release/bench/storage/storage_local_bench --rss_sizes_mib=1024,10240
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <vector>

#include "absl/flags/flag.h"
#include "cloudflux/core/config.h"
#include "bench_util.h"

ABSL_FLAG(int32_t, mib, 1024, "Object size in MiB.");
ABSL_FLAG(int32_t, repeat, 4,
          "Rounds of put/get and their dd peers, which of each pair goes first alternating; medians reported.");
ABSL_FLAG(std::string, rss_sizes_mib, "",
          "Instead of the rounds: for each of these sizes (MiB, comma-separated, e.g. 1024,10240) a put of "
          "generated content and a get into a client that keeps nothing, with the service's peak RSS of each.");
ABSL_FLAG(bool, cold_reads, false,
          "Drop the page cache before the get and before dd's read (needs root), so both read from disk.");

// Writes dirty pages and drops the page cache; false if not allowed.
bool DropPageCache() {
  std::system("sync");
  FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");
  if (f == nullptr) return false;
  bool ok = std::fputs("3\n", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

using namespace cloudflux::bench;  // NOLINT

int main(int argc, char** argv) {
  cloudflux::core::ParseFlags(argc, argv, "storage adapter local put/get vs dd");
  const int64_t mib = absl::GetFlag(FLAGS_mib);
  const int64_t bytes = mib << 20;
  std::string dir = FreshDir("cloudflux-storage-bench");
  Adapter adapter = StartAdapter({{"CLOUDFLUX_DATA_DIR", dir + "/store"}});
  if (const std::string sizes = absl::GetFlag(FLAGS_rss_sizes_mib); !sizes.empty()) {
    PeakRssBySize(adapter, "local", ParseSizesMib(sizes));
    StopAdapter(adapter, dir);
    return 0;
  }
  std::string src = dir + "/source.bin";
  WriteRandomFile(src, bytes, 42);
  std::system("sync");
  auto& stub = adapter.stub;
  auto* child = &adapter.child;

  // --repeat rounds, each: dd copy of the same file with fsync (the put's
  // peer), the put (the file streamed in 1 MiB chunks), the get (streamed
  // back into a file on the same disk) and dd copy of the object's file (the
  // get's peer), both with that file out of the page cache: the service
  // dropped it past its first 8 MiB once it was on disk, so a get after a
  // put finds it there, and reads it past its head with O_DIRECT. Also timed: dd copy
  // of dd's own copy, which its write left in the page cache (a copy from
  // memory, not from disk; the get's peer before 2026-11-23). Medians
  // reported: this VM's speed drifts between consecutive runs.
  const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  const bool cold = absl::GetFlag(FLAGS_cold_reads);
  const int pid = child->process->pid();
  std::vector<double> put, dd_write, get, dd_read, dd_cached, stream;
  std::string object_file;  // the stored object's file, from the put's answer
  std::vector<double> put_service_cpu, put_client_cpu, get_service_cpu, get_client_cpu;
  std::vector<double> stream_service_cpu, stream_client_cpu;
  int64_t put_rss = 0, get_rss = 0;
  // Runs `fn`, adding its wall time and the service's and this process's CPU seconds.
  auto timed = [&](std::vector<double>& seconds, std::vector<double>& service_cpu,
                   std::vector<double>& client_cpu, const std::function<void()>& fn) {
    double service = CpuSeconds(pid), client = CpuSeconds(getpid());
    auto start = Clock::now();
    fn();
    seconds.push_back(Seconds(start));
    service_cpu.push_back(CpuSeconds(pid) - service);
    client_cpu.push_back(CpuSeconds(getpid()) - client);
  };
  // Before every timed step, untimed: write back what earlier steps left
  // dirty (the gets' and dd's copies are not fsynced), so that no step shares
  // the disk with another's writeback.
  auto settle = [] { sync(); };
  auto dd_copy = [&] {
    settle();
    dd_write.push_back(TimeCommand(absl::StrCat("dd if=", src, " of=", dir,
                                                "/dd-copy.bin bs=1M conv=fsync status=none")));
  };
  auto put_object = [&] {
    settle();
    ResetPeakRss(pid);
    timed(put, put_service_cpu, put_client_cpu, [&] {
      sv1::ObjectInfo stored;
      grpc::Status s = PutObject(*stub, "bench", "big.bin", "", nullptr, src, &stored);
      if (!s.ok()) Die("put: " + s.error_message());
      object_file = dir + "/store/" + stored.physical_key();
    });
    WaitForRemovals(adapter);  // the replaced version's, after the answer
    put_rss = std::max(put_rss, PeakRssKib(pid));
  };
  auto get_object = [&] {
    settle();
    ResetPeakRss(pid);
    if (cold && !DropPageCache()) Die("--cold_reads: cannot drop the page cache (needs root)");
    EvictFile(object_file);
    timed(get, get_service_cpu, get_client_cpu, [&] {
      int64_t n = 0;
      grpc::Status s = GetObject(*stub, "bench", "big.bin", &n, dir + "/got.bin");
      if (!s.ok() || n != bytes) Die("get failed: " + s.error_message());
    });
    get_rss = std::max(get_rss, PeakRssKib(pid));
  };
  // The get again into a client that keeps nothing: the stream alone,
  // without the client's page-cache writes.
  auto stream_object = [&] {
    settle();
    timed(stream, stream_service_cpu, stream_client_cpu, [&] {
      int64_t n = 0;
      grpc::Status s = GetObject(*stub, "bench", "big.bin", &n);
      if (!s.ok() || n != bytes) Die("get failed: " + s.error_message());
    });
  };
  auto dd_read_copy = [&] {
    settle();
    if (cold) DropPageCache();
    EvictFile(object_file);
    dd_read.push_back(TimeCommand(absl::StrCat("dd if=", object_file, " of=", dir,
                                               "/dd-read.bin bs=1M status=none")));
    settle();
    dd_cached.push_back(TimeCommand(absl::StrCat("dd if=", dir, "/dd-copy.bin of=", dir,
                                                 "/dd-cached.bin bs=1M status=none")));
  };
  for (int r = 0; r < repeat; ++r) {
    // Which of a pair goes first alternates: on this VM a write into the
    // page cache is several times faster in memory the guest freed moments
    // ago than in memory it freed seconds ago (returned to the host by free
    // page reporting), so the first of two copies can take the fast memory.
    const bool service_first = r % 2 == 1;
    if (service_first) {
      put_object();
      dd_copy();
      get_object();
      dd_read_copy();
    } else {
      dd_copy();
      put_object();
      dd_read_copy();
      get_object();
    }
    stream_object();
    std::printf("round %d (%s first): put %.2f s (dd %.2f, ratio %.2f), get %.2f s (dd %.2f, ratio %.2f), "
                "get into a discarding client %.2f s, dd of a cached copy %.2f s\n",
                r + 1, service_first ? "service" : "dd", put.back(), dd_write.back(),
                dd_write.back() / put.back(), get.back(), dd_read.back(), dd_read.back() / get.back(),
                stream.back(), dd_cached.back());
  }
  const double p = Median(put), dw = Median(dd_write), g = Median(get), dr = Median(dd_read);
  const int64_t rss = std::max(put_rss, get_rss);
  std::printf("object                  : %lld MiB%s, medians of %d rounds\n", static_cast<long long>(mib),
              cold ? " (reads from a dropped page cache)" : "", repeat);
  std::printf("put via storage adapter : %7.2f s  %7.1f MiB/s\n", p, mib / p);
  std::printf("dd conv=fsync (peer)    : %7.2f s  %7.1f MiB/s   ratio put/dd %.2f (target >= 0.8)\n", dw,
              mib / dw, dw / p);
  std::printf("get via storage adapter : %7.2f s  %7.1f MiB/s\n", g, mib / g);
  std::printf("dd copy of the object's file (peer): %7.2f s  %7.1f MiB/s   ratio get/dd %.2f (target >= 0.8)\n",
              dr, mib / dr, dr / g);
  std::printf("dd copy of a cached copy: %7.2f s  %7.1f MiB/s   ratio get/dd %.2f (from memory, not disk)\n",
              Median(dd_cached), mib / Median(dd_cached), Median(dd_cached) / g);
  std::printf("get, client discards    : %7.2f s  %7.1f MiB/s   CPU s/GiB service %.2f client %.2f\n",
              Median(stream), mib / Median(stream), Median(stream_service_cpu) * 1024 / mib,
              Median(stream_client_cpu) * 1024 / mib);
  std::printf("CPU seconds per GiB     : put service %.2f client %.2f, get service %.2f client %.2f\n",
              Median(put_service_cpu) * 1024 / mib, Median(put_client_cpu) * 1024 / mib,
              Median(get_service_cpu) * 1024 / mib, Median(get_client_cpu) * 1024 / mib);
  std::printf("service peak RSS        : %lld KiB (target < 65536; put %lld, get %lld)\n",
              static_cast<long long>(rss), static_cast<long long>(put_rss), static_cast<long long>(get_rss));
  StopAdapter(adapter, dir);
  return 0;
}
