// The local backend's own disk path, without gRPC, hashing or a client: a
// 1 GiB object written through LocalStore (1 MiB writes from a cached source
// file, commit with fsync) against `dd ... conv=fsync` of the same file, and
// read back whole against dd of the object's file into /dev/null, both with
// that file out of the page cache. What the service's put and get would
// reach where its CPU is not the limit. No test servers needed:
//   build/release/bench/storage/storage_store_bench [--mib=1024] [--repeat=4]
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <vector>

#include "absl/flags/flag.h"
#include "bench_util.h"
#include "cloudflux/core/config.h"
#include "object_store.h"

ABSL_FLAG(int32_t, mib, 1024, "Object size in MiB.");
ABSL_FLAG(int32_t, repeat, 4, "Rounds; which of each pair goes first alternates; medians reported.");

using namespace cloudflux::bench;  // NOLINT
namespace storage = cloudflux::storage;

int main(int argc, char** argv) {
  cloudflux::core::ParseFlags(argc, argv, "local store write/read vs dd");
  const int64_t mib = absl::GetFlag(FLAGS_mib);
  const int64_t bytes = mib << 20;
  std::string dir = FreshDir("cloudflux-store-bench");
  std::string src = dir + "/source.bin";
  WriteRandomFile(src, bytes, 42);
  auto made = storage::MakeLocalStore("local", dir + "/store");
  if (!made.ok()) Die(std::string(made.status().message()));
  storage::ObjectStore& store = **made;

  std::vector<double> write, dd_write, read, dd_read, write_cpu, read_cpu;
  std::string key;  // the object written last
  int written = 0;
  // Each timed step starts with nothing left dirty by the one before.
  auto timed = [](std::vector<double>& seconds, std::vector<double>* cpu, const std::function<void()>& fn) {
    sync();
    double c = CpuSeconds(getpid());
    auto start = Clock::now();
    fn();
    seconds.push_back(Seconds(start));
    if (cpu != nullptr) cpu->push_back(CpuSeconds(getpid()) - c);
  };
  auto store_write = [&] {
    std::string next = "objects/be/o" + std::to_string(written++);
    timed(write, &write_cpu, [&] {
      auto writer = store.StartWrite(next, cloudflux::common::v1::STORAGE_TIER_HOT);
      if (!writer.ok()) Die(std::string(writer.status().message()));
      int fd = open(src.c_str(), O_RDONLY);
      std::string buf(1 << 20, '\0');
      ssize_t n;
      while ((n = ::read(fd, buf.data(), buf.size())) > 0) {
        absl::Status s = (*writer)->Write(std::string_view(buf.data(), static_cast<size_t>(n)));
        if (!s.ok()) Die(std::string(s.message()));
      }
      close(fd);
      absl::Status s = (*writer)->Commit();
      if (!s.ok()) Die(std::string(s.message()));
    });
    if (!key.empty()) (void)store.Delete(key);  // untimed, as the service removes replaced bytes
    key = next;
  };
  auto dd_copy = [&] {
    timed(dd_write, nullptr, [&] {
      TimeCommand(absl::StrCat("dd if=", src, " of=", dir, "/dd-copy.bin bs=1M conv=fsync status=none"));
    });
  };
  auto store_read = [&] {
    EvictFile(dir + "/store/" + key);
    timed(read, &read_cpu, [&] {
      auto reader = store.OpenRead(key, 0, 0);
      if (!reader.ok()) Die(std::string(reader.status().message()));
      int64_t total = 0;
      while (true) {
        auto chunk = (*reader)->ReadChunk(1 << 20);
        if (!chunk.ok()) Die(std::string(chunk.status().message()));
        if (chunk->size == 0) break;
        total += static_cast<int64_t>(chunk->size);
      }
      if (total != bytes) Die("short read");
    });
  };
  auto dd_read_object = [&] {
    EvictFile(dir + "/store/" + key);
    timed(dd_read, nullptr, [&] {
      TimeCommand(absl::StrCat("dd if=", dir, "/store/", key, " of=/dev/null bs=1M status=none"));
    });
  };
  const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  for (int r = 0; r < repeat; ++r) {
    const bool store_first = r % 2 == 1;
    if (store_first) {
      store_write();
      dd_copy();
      store_read();
      dd_read_object();
    } else {
      dd_copy();
      store_write();
      dd_read_object();
      store_read();
    }
    std::printf("round %d (%s first): write %.2f s (dd %.2f, ratio %.2f), read %.2f s (dd %.2f, ratio %.2f)\n",
                r + 1, store_first ? "store" : "dd", write.back(), dd_write.back(), dd_write.back() / write.back(),
                read.back(), dd_read.back(), dd_read.back() / read.back());
  }
  const double w = Median(write), dw = Median(dd_write), rd = Median(read), dr = Median(dd_read);
  std::printf("object                     : %lld MiB, medians of %d rounds\n", static_cast<long long>(mib), repeat);
  std::printf("LocalStore write + commit  : %6.2f s  %7.1f MiB/s  CPU %.2f s/GiB\n", w, mib / w,
              Median(write_cpu) * 1024 / mib);
  std::printf("dd conv=fsync (peer)       : %6.2f s  %7.1f MiB/s  ratio write/dd %.2f\n", dw, mib / dw, dw / w);
  std::printf("LocalStore read            : %6.2f s  %7.1f MiB/s  CPU %.2f s/GiB\n", rd, mib / rd,
              Median(read_cpu) * 1024 / mib);
  std::printf("dd of the object's file    : %6.2f s  %7.1f MiB/s  ratio read/dd %.2f\n", dr, mib / dr, dr / rd);
  std::filesystem::remove_all(dir);
  return 0;
}
