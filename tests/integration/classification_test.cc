// The classification service's access statistics end to end: objects put
// and read through the storage-adapter binary, their events through the dev
// broker, counted by the classification binary in PostgreSQL.
#include <gtest/gtest.h>
#include <signal.h>

#include "cloudflux/core/uuid.h"
#include "cloudflux/db/db.h"
#include "cloudflux/server/grpc_status.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "service_process.h"

namespace cloudflux {
namespace {

namespace v1 = cloudflux::storage::v1;

TEST(ClassificationStats, ReadsThroughStorageAreCountedOnceEach) {
  auto db = testing::ScratchDatabase::Create();
  ASSERT_TRUE(db.ok()) << db.status();
  std::string data_dir = ::testing::TempDir() + "/classification-" + core::NewId();
  Service storage = StartService("storage-adapter", (*db)->url(),
                                 {{"CLOUDFLUX_DATA_DIR", data_dir}, {"CLOUDFLUX_READ_EVENT_INTERVAL", "100ms"}});
  Service classification =
      StartService("classification", (*db)->url(), {{"CLOUDFLUX_STATS_GROUP", "test-" + core::NewId()}});
  ASSERT_TRUE(WaitForHealth(storage, HealthCheckResponse::SERVING)) << storage.process->Output();
  ASSERT_TRUE(WaitForHealth(classification, HealthCheckResponse::SERVING)) << classification.process->Output();
  auto stub = v1::StorageService::NewStub(server::MakeChannel(storage.target()));
  const std::string ns = "cls-" + core::NewId().substr(24);
  auto put = [&](const std::string& key, const std::string& bytes) {
    auto ctx = server::MakeClientContext(absl::Seconds(30));
    v1::ObjectInfo info;
    auto w = stub->PutObject(ctx.get(), &info);
    v1::PutObjectRequest h;
    h.mutable_header()->set_namespace_(ns);
    h.mutable_header()->set_key(key);
    w->Write(h);
    v1::PutObjectRequest c;
    c.set_chunk(bytes);
    w->Write(c);
    w->WritesDone();
    return w->Finish().ok();
  };
  auto get = [&](const std::string& key) {
    auto ctx = server::MakeClientContext(absl::Seconds(30));
    v1::GetObjectRequest r;
    r.set_namespace_(ns);
    r.set_key(key);
    auto reader = stub->GetObject(ctx.get(), r);
    v1::GetObjectResponse resp;
    while (reader->Read(&resp)) {
    }
    return reader->Finish().ok();
  };
  ASSERT_TRUE(put("hot", std::string(1000, 'h')));
  ASSERT_TRUE(put("cold", std::string(5000, 'c')));
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(get("hot"));

  auto pool = db::Pool::Create({.url = (*db)->url(), .max_connections = 1});
  ASSERT_TRUE(pool.ok());
  auto stats = [&](const std::string& key) -> std::pair<int64_t, int64_t> {
    auto r = (*pool)->Exec("SELECT reads_total, size FROM classification.object_stats WHERE namespace = $1 AND "
                           "key = $2",
                           {ns, key});
    if (!r.ok() || r->empty()) return {-1, -1};
    return {(*r)[0].Int(0), (*r)[0].Int(1)};
  };
  EXPECT_TRUE(WaitFor([&] { return stats("hot").first == 12 && stats("cold").second == 5000; },
                      absl::Seconds(30)))
      << "hot " << stats("hot").first << " cold " << stats("cold").second << "\n"
      << classification.process->Output();
  EXPECT_EQ(stats("hot").second, 1000);
  EXPECT_EQ(stats("cold").first, 0);

  // A restarted classification service re-reads from its committed offsets
  // (at least once); the counts must not move.
  classification.process->Signal(SIGKILL);
  classification.process->Wait(absl::Seconds(10));
  Service again = StartService("classification", (*db)->url(),
                               {{"CLOUDFLUX_STATS_GROUP", "test-" + core::NewId()}});  // a new group replays all
  ASSERT_TRUE(WaitForHealth(again, HealthCheckResponse::SERVING));
  auto processed = [&] {
    auto r = (*pool)->Exec("SELECT count(*) FROM classification.processed_events");
    return r.ok() ? (*r)[0].Int(0) : -1;
  };
  int64_t before = processed();
  ASSERT_TRUE(get("hot"));
  EXPECT_TRUE(WaitFor([&] { return stats("hot").first == 13; }, absl::Seconds(30)))
      << "replayed events are not counted again; the new read is";
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(stats("hot").first, 13);
  EXPECT_GT(processed(), before);
  again.process->Signal(SIGTERM);
  EXPECT_EQ(again.process->Wait(absl::Seconds(20)), 0);
  storage.process->Signal(SIGTERM);
  EXPECT_EQ(storage.process->Wait(absl::Seconds(20)), 0);
}

}  // namespace
}  // namespace cloudflux
