// 1 GiB put and get through the storage adapter (local backend) against
// `dd ... conv=fsync` of the same file on the same disk, with the service's
// peak RSS. Needs the test servers:
//   scripts/dev bench build/release/bench/storage/storage_local_bench [--mib=1024]
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <cstring>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/config.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "cloudflux/testing/testing.h"

ABSL_FLAG(int32_t, mib, 1024, "Object size in MiB.");

namespace {

namespace v1 = cloudflux::storage::v1;
using Clock = std::chrono::steady_clock;

void Die(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::exit(1);
}

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double TimeCommand(const std::string& cmd) {
  auto start = Clock::now();
  if (std::system(cmd.c_str()) != 0) Die("failed: " + cmd);
  return Seconds(start);
}

int64_t PeakRssKib(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  cloudflux::core::ParseFlags(argc, argv, "storage adapter local put/get vs dd");
  const int64_t mib = absl::GetFlag(FLAGS_mib);
  const int64_t bytes = mib << 20;
  std::string base = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  std::string dir = base + "/cloudflux-storage-bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string src = dir + "/source.bin";
  {
    // Incompressible content, written once.
    std::ofstream out(src, std::ios::binary);
    std::mt19937_64 gen(42);
    std::string block(1 << 20, '\0');
    for (int64_t i = 0; i < mib; ++i) {
      for (size_t j = 0; j < block.size(); j += 8) {
        uint64_t r = gen();
        std::memcpy(block.data() + j, &r, 8);
      }
      out.write(block.data(), block.size());
    }
  }
  std::system("sync");

  auto db = cloudflux::testing::ScratchDatabase::Create();
  if (!db.ok()) Die(std::string(db.status().message()));
  auto child = cloudflux::testing::StartServiceBinary("storage-adapter", (*db)->url(),
                                                      {{"CLOUDFLUX_DATA_DIR", dir + "/store"}});
  if (!child.ok()) Die("cannot start the storage adapter");
  cloudflux::server::ChannelOptions options;
  options.max_receive_message_bytes = 64 << 20;
  auto channel = cloudflux::server::MakeChannel(child->target(), options);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30))) {
    Die("storage adapter did not come up:\n" + child->process->Output());
  }
  auto stub = v1::StorageService::NewStub(channel);

  // Peer: dd copy of the same file with fsync, on the same disk.
  double dd_write = TimeCommand(absl::StrCat("dd if=", src, " of=", dir,
                                             "/dd-copy.bin bs=1M conv=fsync status=none"));

  // Put: stream the file in 1 MiB chunks.
  auto start = Clock::now();
  {
    auto ctx = cloudflux::server::MakeClientContext(absl::Minutes(10));
    v1::ObjectInfo info;
    auto writer = stub->PutObject(ctx.get(), &info);
    v1::PutObjectRequest header;
    header.mutable_header()->set_namespace_("bench");
    header.mutable_header()->set_key("big.bin");
    writer->Write(header);
    std::ifstream in(src, std::ios::binary);
    v1::PutObjectRequest part;
    std::string buf(1 << 20, '\0');
    while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
      part.set_chunk(buf.data(), in.gcount());
      if (!writer->Write(part)) break;
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    if (!s.ok()) Die("put: " + s.error_message());
    if (info.size() != bytes) Die("put: wrong size");
  }
  double put = Seconds(start);

  // Get: stream it back into a file on the same disk.
  std::string got = dir + "/got.bin";
  start = Clock::now();
  {
    auto ctx = cloudflux::server::MakeClientContext(absl::Minutes(10));
    v1::GetObjectRequest req;
    req.set_namespace_("bench");
    req.set_key("big.bin");
    auto reader = stub->GetObject(ctx.get(), req);
    std::ofstream out(got, std::ios::binary);
    v1::GetObjectResponse resp;
    int64_t n = 0;
    while (reader->Read(&resp)) {
      out.write(resp.chunk().data(), resp.chunk().size());
      n += resp.chunk().size();
    }
    grpc::Status s = reader->Finish();
    if (!s.ok() || n != bytes) Die("get failed: " + s.error_message());
  }
  double get = Seconds(start);
  double dd_read = TimeCommand(absl::StrCat("dd if=", dir, "/dd-copy.bin of=", dir,
                                            "/dd-read.bin bs=1M status=none"));
  int64_t rss = PeakRssKib(child->process->pid());

  std::printf("object                  : %lld MiB\n", static_cast<long long>(mib));
  std::printf("put via storage adapter : %7.2f s  %7.1f MiB/s\n", put, mib / put);
  std::printf("dd conv=fsync (peer)    : %7.2f s  %7.1f MiB/s   ratio put/dd %.2f (target >= 0.8)\n",
              dd_write, mib / dd_write, dd_write / put);
  std::printf("get via storage adapter : %7.2f s  %7.1f MiB/s\n", get, mib / get);
  std::printf("dd copy (peer)          : %7.2f s  %7.1f MiB/s   ratio get/dd %.2f (target >= 0.8)\n",
              dd_read, mib / dd_read, dd_read / get);
  std::printf("service peak RSS        : %lld KiB (target < 65536)\n", static_cast<long long>(rss));
  child->process->Signal(SIGTERM);
  child->process->Wait(absl::Seconds(30));
  std::filesystem::remove_all(dir);
  return 0;
}
