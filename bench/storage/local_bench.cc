// 1 GiB put and get through the storage adapter (local backend) against
// `dd ... conv=fsync` of the same file on the same disk, with the service's
// peak RSS. Needs the test servers:
//   scripts/dev bench build/release/bench/storage/storage_local_bench [--mib=1024] [--cold_reads]
#include <signal.h>

#include <filesystem>

#include "absl/flags/flag.h"
#include "cloudflux/core/config.h"
#include "bench_util.h"

ABSL_FLAG(int32_t, mib, 1024, "Object size in MiB.");
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
  std::string base = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  std::string dir = base + "/cloudflux-storage-bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string src = dir + "/source.bin";
  WriteRandomFile(src, bytes, 42);
  std::system("sync");
  Adapter adapter = StartAdapter({{"CLOUDFLUX_DATA_DIR", dir + "/store"}});
  auto& stub = adapter.stub;
  auto* child = &adapter.child;

  // Peer: dd copy of the same file with fsync, on the same disk.
  double dd_write = TimeCommand(absl::StrCat("dd if=", src, " of=", dir,
                                             "/dd-copy.bin bs=1M conv=fsync status=none"));

  // Put: stream the file in 1 MiB chunks.
  const int pid = child->process->pid();
  double service_cpu = CpuSeconds(pid), client_cpu = CpuSeconds(getpid());
  auto start = Clock::now();
  grpc::Status put_status = PutObject(*stub, "bench", "big.bin", "", nullptr, src);
  if (!put_status.ok()) Die("put: " + put_status.error_message());
  double put = Seconds(start);
  double put_service_cpu = CpuSeconds(pid) - service_cpu, put_client_cpu = CpuSeconds(getpid()) - client_cpu;
  int64_t put_rss = PeakRssKib(child->process->pid());
  ResetPeakRss(child->process->pid());

  // Get: stream it back into a file on the same disk.
  const bool cold = absl::GetFlag(FLAGS_cold_reads);
  if (cold && !DropPageCache()) Die("--cold_reads: cannot drop the page cache (needs root)");
  service_cpu = CpuSeconds(pid);
  client_cpu = CpuSeconds(getpid());
  start = Clock::now();
  int64_t n = 0;
  grpc::Status get_status = GetObject(*stub, "bench", "big.bin", &n, dir + "/got.bin");
  if (!get_status.ok() || n != bytes) Die("get failed: " + get_status.error_message());
  double get = Seconds(start);
  double get_service_cpu = CpuSeconds(pid) - service_cpu, get_client_cpu = CpuSeconds(getpid()) - client_cpu;
  if (cold) DropPageCache();
  double dd_read = TimeCommand(absl::StrCat("dd if=", dir, "/dd-copy.bin of=", dir,
                                            "/dd-read.bin bs=1M status=none"));
  int64_t get_rss = PeakRssKib(child->process->pid());
  int64_t rss = std::max(put_rss, get_rss);

  std::printf("object                  : %lld MiB%s\n", static_cast<long long>(mib),
              cold ? " (reads from a dropped page cache)" : "");
  std::printf("put via storage adapter : %7.2f s  %7.1f MiB/s\n", put, mib / put);
  std::printf("dd conv=fsync (peer)    : %7.2f s  %7.1f MiB/s   ratio put/dd %.2f (target >= 0.8)\n",
              dd_write, mib / dd_write, dd_write / put);
  std::printf("get via storage adapter : %7.2f s  %7.1f MiB/s\n", get, mib / get);
  std::printf("dd copy (peer)          : %7.2f s  %7.1f MiB/s   ratio get/dd %.2f (target >= 0.8)\n",
              dd_read, mib / dd_read, dd_read / get);
  std::printf("CPU seconds per GiB     : put service %.2f client %.2f, get service %.2f client %.2f\n",
              put_service_cpu * 1024 / mib, put_client_cpu * 1024 / mib, get_service_cpu * 1024 / mib,
              get_client_cpu * 1024 / mib);
  std::printf("service peak RSS        : %lld KiB (target < 65536; put %lld, get %lld)\n",
              static_cast<long long>(rss), static_cast<long long>(put_rss), static_cast<long long>(get_rss));
  child->process->Signal(SIGTERM);
  child->process->Wait(absl::Seconds(30));
  std::filesystem::remove_all(dir);
  return 0;
}
