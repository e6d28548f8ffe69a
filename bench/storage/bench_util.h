#pragma once
// What the storage benchmarks share: a storage adapter started on the test
// servers, whole files streamed in and out through it, and timing helpers.

#include <fcntl.h>
#include <signal.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cloudflux/db/db.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "cloudflux/testing/testing.h"

namespace cloudflux::bench {

namespace sv1 = cloudflux::storage::v1;
using Clock = std::chrono::steady_clock;

[[noreturn]] inline void Die(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::exit(1);
}

inline double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Runs a shell command; its wall time in seconds (exits on failure).
inline double TimeCommand(const std::string& cmd) {
  auto start = Clock::now();
  if (std::system(cmd.c_str()) != 0) Die("failed: " + cmd);
  return Seconds(start);
}

inline int64_t PeakRssKib(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// The median of `v` (0 when empty).
inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// The oldest process whose command line contains `pattern`; 0 if none.
inline int FindPid(const std::string& pattern) {
  FILE* p = popen(absl::StrCat("pgrep -o -f '", pattern, "'").c_str(), "r");
  if (p == nullptr) return 0;
  int pid = 0;
  if (std::fscanf(p, "%d", &pid) != 1) pid = 0;
  pclose(p);
  return pid;
}

// CPU seconds (user + system) a process has used so far.
inline double CpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name; utime and stime are the
  // 14th and 15th fields of the line.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds every process on the machine has used so far (the busy
// fields of /proc/stat's "cpu" line: user, nice, system, irq, softirq).
inline double MachineCpuSeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
  return (user + nice + system + irq + softirq) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Starts a new peak: VmHWM becomes the current resident size.
inline void ResetPeakRss(int pid) {
  std::ofstream out(absl::StrCat("/proc/", pid, "/clear_refs"));
  out << "5";
}

// An empty scratch directory $TMPDIR/<name> (/tmp without TMPDIR).
inline std::string FreshDir(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Drops the (clean) page-cache pages of the file at `path`.
inline void EvictFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) Die("cannot evict " + path);
  close(fd);
}

// Fills `block` (a multiple of 8 bytes) with the next bytes of `gen`.
inline void FillRandom(std::string& block, std::mt19937_64& gen) {
  for (size_t j = 0; j < block.size(); j += 8) {
    uint64_t r = gen();
    std::memcpy(block.data() + j, &r, 8);
  }
}

// `bytes` of incompressible content in `path`.
inline void WriteRandomFile(const std::string& path, int64_t bytes, uint64_t seed) {
  std::ofstream out(path, std::ios::binary);
  std::mt19937_64 gen(seed);
  std::string block(1 << 20, '\0');
  for (int64_t done = 0; done < bytes; done += static_cast<int64_t>(block.size())) {
    FillRandom(block, gen);
    out.write(block.data(), std::min<int64_t>(block.size(), bytes - done));
  }
}

// A storage adapter on the test servers (scripts/dev bench), on a scratch
// database, with a stub that takes large messages.
struct Adapter {
  std::unique_ptr<testing::ScratchDatabase> db;
  testing::ServiceProcess child;
  std::unique_ptr<sv1::StorageService::Stub> stub;
  std::unique_ptr<db::Pool> catalog;  // the adapter's database, for WaitForRemovals
};
inline Adapter StartAdapter(const std::map<std::string, std::string>& env) {
  Adapter a;
  auto db = testing::ScratchDatabase::Create();
  if (!db.ok()) Die(std::string(db.status().message()));
  a.db = std::move(*db);
  db::PoolOptions catalog;
  catalog.url = a.db->url();
  catalog.max_connections = 1;
  auto pool = db::Pool::Create(catalog);
  if (!pool.ok()) Die(std::string(pool.status().message()));
  a.catalog = std::move(*pool);
  auto child = testing::StartServiceBinary("storage-adapter", a.db->url(), env);
  if (!child.ok()) Die("cannot start the storage adapter: " + std::string(child.status().message()));
  a.child = std::move(*child);
  server::ChannelOptions options;
  options.max_receive_message_bytes = 64 << 20;
  auto channel = server::MakeChannel(a.child.target(), options);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30))) {
    Die("storage adapter did not come up:\n" + a.child.process->Output());
  }
  a.stub = sv1::StorageService::NewStub(channel);
  return a;
}

// Stops the adapter (SIGTERM, up to 30 s) and removes the bench's scratch
// directory `dir`.
inline void StopAdapter(Adapter& a, const std::string& dir) {
  a.child.process->Signal(SIGTERM);
  a.child.process->Wait(absl::Seconds(30));
  std::filesystem::remove_all(dir);
}

// Waits until the adapter has removed the bytes of every replaced or deleted
// version (it does so after answering the call; each removal's row in
// storage.pending_bytes goes with it), so that the next timed step does not
// share the machine with them.
inline void WaitForRemovals(const Adapter& a) {
  for (auto start = Clock::now(); Seconds(start) < 120;) {
    auto rows = a.catalog->Exec("SELECT count(*) FROM storage.pending_bytes");
    if (!rows.ok()) Die(std::string(rows.status().message()));
    if ((*rows)[0].Int(0) == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Die("the adapter did not remove replaced bytes within 120 s");
}

// Streams ns/key: the header, then the chunks `next` fills in (it returns
// false when there are no more), then a trailer with their size; the stored object's description in
// `*stored` when given.
inline grpc::Status PutChunks(sv1::StorageService::Stub& stub, const std::string& ns,
                              const std::string& key, const std::string& backend,
                              sv1::ObjectInfo* stored,
                              const std::function<bool(sv1::PutObjectRequest&)>& next) {
  auto ctx = server::MakeClientContext(absl::Minutes(30));
  sv1::ObjectInfo info;
  auto writer = stub.PutObject(ctx.get(), stored != nullptr ? stored : &info);
  sv1::PutObjectRequest header;
  header.mutable_header()->set_namespace_(ns);
  header.mutable_header()->set_key(key);
  header.mutable_header()->set_backend(backend);
  writer->Write(header);
  sv1::PutObjectRequest part;
  int64_t sent = 0;
  while (next(part)) {
    sent += static_cast<int64_t>(part.chunk().size());
    if (!writer->Write(part)) break;
  }
  sv1::PutObjectRequest trailer;  // the upload is whole: this many bytes
  trailer.mutable_trailer()->set_size(sent);
  writer->Write(trailer);
  writer->WritesDone();
  return writer->Finish();
}

// Streams `data` (or the file at `path` when data is null) into ns/key; the
// stored object's description in `*stored` when given.
inline grpc::Status PutObject(sv1::StorageService::Stub& stub, const std::string& ns,
                              const std::string& key, const std::string& backend,
                              const std::string* data, const std::string& path = "",
                              sv1::ObjectInfo* stored = nullptr) {
  if (data != nullptr) {
    bool sent = false;
    return PutChunks(stub, ns, key, backend, stored, [&](sv1::PutObjectRequest& part) {
      if (sent) return false;
      part.set_chunk(*data);
      return sent = true;
    });
  }
  std::ifstream in(path, std::ios::binary);
  std::string buf(1 << 20, '\0');
  return PutChunks(stub, ns, key, backend, stored, [&](sv1::PutObjectRequest& part) {
    if (!in.read(buf.data(), buf.size()) && in.gcount() == 0) return false;
    part.set_chunk(buf.data(), in.gcount());
    return true;
  });
}

// Streams `bytes` of generated content into ns/key, with no file behind it:
// 1 MiB chunks of pseudo-random bytes, each made distinct by its index.
inline grpc::Status PutGenerated(sv1::StorageService::Stub& stub, const std::string& ns,
                                 const std::string& key, const std::string& backend, int64_t bytes) {
  std::string block(1 << 20, '\0');
  std::mt19937_64 gen(7);
  FillRandom(block, gen);
  int64_t sent = 0;
  return PutChunks(stub, ns, key, backend, nullptr, [&](sv1::PutObjectRequest& part) {
    if (sent >= bytes) return false;
    int64_t index = sent >> 20;
    std::memcpy(block.data(), &index, sizeof(index));
    part.set_chunk(block.data(), std::min<int64_t>(block.size(), bytes - sent));
    sent += static_cast<int64_t>(part.chunk().size());
    return true;
  });
}

// Reads ns/key; into the file at `path` when given. Its size in `*bytes`.
inline grpc::Status GetObject(sv1::StorageService::Stub& stub, const std::string& ns,
                              const std::string& key, int64_t* bytes, const std::string& path = "") {
  auto ctx = server::MakeClientContext(absl::Minutes(30));
  sv1::GetObjectRequest req;
  req.set_namespace_(ns);
  req.set_key(key);
  auto reader = stub.GetObject(ctx.get(), req);
  std::ofstream out;
  if (!path.empty()) out.open(path, std::ios::binary);
  sv1::GetObjectResponse resp;
  *bytes = 0;
  while (reader->Read(&resp)) {
    if (out.is_open()) out.write(resp.chunk().data(), resp.chunk().size());
    *bytes += static_cast<int64_t>(resp.chunk().size());
  }
  return reader->Finish();
}

// Whether the service's memory depends on the size of the object: for each
// size in `sizes_mib`, one after the other, a put of generated content and a
// get into a client that keeps nothing on `backend`, each with its own peak
// RSS and CPU of the service; then the object is deleted. Prints a line per size.
inline void PeakRssBySize(Adapter& a, const std::string& backend, const std::vector<int64_t>& sizes_mib) {
  const int pid = a.child.process->pid();
  for (int64_t mib : sizes_mib) {
    const std::string key = absl::StrCat("rss-", mib, ".bin");
    ResetPeakRss(pid);
    auto start = Clock::now();
    double cpu = CpuSeconds(pid);
    grpc::Status s = PutGenerated(*a.stub, "bench", key, backend, mib << 20);
    if (!s.ok()) Die("put: " + s.error_message());
    const double put_s = Seconds(start), put_cpu = CpuSeconds(pid) - cpu;
    const int64_t put_rss = PeakRssKib(pid);
    ResetPeakRss(pid);
    start = Clock::now();
    cpu = CpuSeconds(pid);
    int64_t n = 0;
    s = GetObject(*a.stub, "bench", key, &n);
    if (!s.ok() || n != mib << 20) Die("get failed: " + s.error_message());
    const double get_s = Seconds(start), get_cpu = CpuSeconds(pid) - cpu;
    const int64_t get_rss = PeakRssKib(pid);
    auto ctx = server::MakeClientContext(absl::Minutes(5));
    sv1::DeleteObjectRequest del;
    del.set_namespace_("bench");
    del.set_key(key);
    sv1::DeleteObjectResponse deleted;
    s = a.stub->DeleteObject(ctx.get(), del, &deleted);
    if (!s.ok()) Die("delete: " + s.error_message());
    WaitForRemovals(a);
    std::printf("%s backend, %6lld MiB: put %7.2f s (%7.1f MiB/s, service CPU %.2f s/GiB), peak RSS %lld KiB; "
                "get %7.2f s (%7.1f MiB/s, service CPU %.2f s/GiB), peak RSS %lld KiB\n",
                backend.c_str(), static_cast<long long>(mib), put_s, mib / put_s, put_cpu * 1024 / mib,
                static_cast<long long>(put_rss), get_s, mib / get_s, get_cpu * 1024 / mib,
                static_cast<long long>(get_rss));
    std::fflush(stdout);
  }
}

// The sizes in a comma-separated list of MiB ("1024,10240"); exits on a bad one.
inline std::vector<int64_t> ParseSizesMib(const std::string& list) {
  std::vector<int64_t> sizes;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int64_t mib = 0;
    if (!absl::SimpleAtoi(part, &mib) || mib <= 0) Die(absl::StrCat("not a size in MiB: ", part));
    sizes.push_back(mib);
  }
  return sizes;
}

}  // namespace cloudflux::bench
