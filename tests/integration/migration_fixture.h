#pragma once
// The migration tests' fixture: a scratch database, a storage-adapter
// binary (local backend, optionally an S3 backend on s3rver) and a
// migration binary, with helpers to write objects and drive jobs.
#include <optional>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "cloudflux/testing/http_relay.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/db/db.h"
#include "cloudflux/migration/v1/migration.grpc.pb.h"
#include "cloudflux/server/grpc_status.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "service_process.h"

namespace cloudflux {

namespace sv1 = cloudflux::storage::v1;
namespace mv1 = cloudflux::migration::v1;
constexpr auto HOT = cloudflux::common::v1::STORAGE_TIER_HOT;
constexpr auto WARM = cloudflux::common::v1::STORAGE_TIER_WARM;
constexpr auto COLD = cloudflux::common::v1::STORAGE_TIER_COLD;

class MigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = testing::ScratchDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    data_dir_ = ::testing::TempDir() + "/migration-" + core::NewId();
    StartStorage();
    StartMigration();
    ns_ = "mig-" + core::NewId().substr(24);
  }

  // The storage adapter restarted with its "s3" backend behind a relay to
  // s3rver (which counts, throttles or slows what is sent); nullptr, with
  // the test failed, where that cannot be set up.
  std::unique_ptr<testing::HttpRelay> RestartStorageBehindRelay(int parallel_parts = 2) {
    auto s3 = testing::TestS3Endpoint();
    int s3_port = 0;
    if (!s3.ok() || !absl::SimpleAtoi(s3->substr(s3->rfind(':') + 1), &s3_port)) {
      ADD_FAILURE() << "no s3rver port";
      return nullptr;
    }
    auto relay = testing::HttpRelay::Start("127.0.0.1", s3_port);
    if (!relay.ok()) {
      ADD_FAILURE() << relay.status();
      return nullptr;
    }
    storage_.process->Signal(SIGTERM);
    storage_.process->Wait(absl::Seconds(20));
    s3_endpoint_ = (*relay)->endpoint();
    parallel_parts_ = parallel_parts;
    StartStorage(/*with_s3=*/true);
    return std::move(*relay);
  }

  // A restart keeps the address and the local backend's files. With
  // `with_s3`, a backend "s3" on s3rver (or `s3_endpoint_`) takes 5 MiB
  // parts, `parallel_parts_` at a time.
  void StartStorage(bool with_s3 = false) {
    int port = storage_.port != 0 ? storage_.port : testing::PickFreePort();
    std::map<std::string, std::string> env = {{"CLOUDFLUX_LISTEN_ADDRESS", absl::StrCat("127.0.0.1:", port)},
                                              {"CLOUDFLUX_DATA_DIR", data_dir_},
                                              {"CLOUDFLUX_READ_EVENT_INTERVAL", "100ms"}};
    if (with_s3) {
      std::string file = data_dir_ + "-backends.json";
      std::ofstream(file) << R"({"backends": [{"name": "s3", "kind": "s3", "endpoint": ")"
                          << (s3_endpoint_.empty() ? *testing::TestS3Endpoint() : s3_endpoint_)
                          << R"(", "bucket": "cloudflux-test", "accessKeyId": "S3RVER", "secretAccessKey": "S3RVER",
                                 "partSize": 5242880, "multipartThreshold": 5242880, "parallelParts": )"
                          << parallel_parts_ << "}]}";
      env["CLOUDFLUX_BACKENDS_FILE"] = file;
    }
    storage_ = StartService("storage-adapter", db_->url(), env);
    ASSERT_TRUE(WaitForHealth(storage_, HealthCheckResponse::SERVING)) << storage_.process->Output();
    storage_stub_ = sv1::StorageService::NewStub(server::MakeChannel(storage_.target()));
  }

  // A restart keeps the address.
  void StartMigration() {
    int port = migration_.port != 0 ? migration_.port : testing::PickFreePort();
    migration_ = StartService("migration", db_->url(),
                              {{"CLOUDFLUX_LISTEN_ADDRESS", absl::StrCat("127.0.0.1:", port)},
                               {"CLOUDFLUX_STORAGE_ADDRESS", storage_.target()},
                               {"CLOUDFLUX_BACKEND_CLOUDS", "local=aws"},
                               // Short, so that a killed worker's tasks are taken over soon,
                               // but not so short that a copy renewing it between 8 MiB
                               // progress reports loses it on a loaded machine.
                               {"CLOUDFLUX_TASK_LEASE", "5s"},
                               {"CLOUDFLUX_PLACEMENT_INTERVAL", "1s"},
                               {"CLOUDFLUX_REPLICATION_INTERVAL", "300ms"},
                               {"CLOUDFLUX_SYNC_CHECK_INTERVAL", "300ms"}});
    ASSERT_TRUE(WaitForHealth(migration_, HealthCheckResponse::SERVING)) << migration_.process->Output();
    server::ChannelOptions o;
    o.max_attempts = 1;
    o.max_reconnect_backoff = absl::Milliseconds(300);
    stub_ = mv1::MigrationService::NewStub(server::MakeChannel(migration_.target(), o));
  }

  bool Put(const std::string& key, const std::string& bytes) {
    return PutThroughStorage(*storage_stub_, ns_, key, bytes);
  }
  // The object's bytes through the storage adapter (a read, counted as
  // one); nullopt when the read fails.
  std::optional<std::string> Content(const std::string& key) { return GetThroughStorage(*storage_stub_, ns_, key); }
  bool Read(const std::string& key) { return Content(key).has_value(); }
  absl::StatusOr<sv1::ObjectInfo> Head(const std::string& key) {
    sv1::HeadObjectRequest r;
    r.set_namespace_(ns_);
    r.set_key(key);
    return CallUnary(*storage_stub_, &sv1::StorageService::Stub::HeadObject, r);
  }
  mv1::Selection Prefix(const std::string& prefix) {
    mv1::Selection s;
    s.set_namespace_(ns_);
    s.set_prefix(prefix);
    return s;
  }
  absl::StatusOr<mv1::MigrationEstimate> Estimate(const mv1::EstimateMigrationRequest& r) {
    return CallUnary(*stub_, &mv1::MigrationService::Stub::EstimateMigration, r, absl::Seconds(30));
  }
  absl::StatusOr<mv1::Migration> Create(const mv1::CreateMigrationRequest& r) {
    return CallUnary(*stub_, &mv1::MigrationService::Stub::CreateMigration, r, absl::Seconds(30));
  }
  // `n` objects of 100 KB under `prefix`, and a running job taking them to
  // WARM at `rate` bytes/s.
  absl::StatusOr<mv1::Migration> CappedJob(const std::string& prefix, int n, int parallelism, int64_t rate) {
    for (int i = 0; i < n; ++i) {
      if (!Put(absl::StrCat(prefix, i), std::string(100000, prefix[0]))) {
        return absl::InternalError(absl::StrCat("put ", prefix, i));
      }
    }
    mv1::CreateMigrationRequest create;
    *create.mutable_selection() = Prefix(prefix);
    create.mutable_target()->set_tier(WARM);
    create.set_parallelism(parallelism);
    create.set_bandwidth_bytes_per_second(rate);
    return Create(create);
  }
  absl::StatusOr<mv1::Migration> Get(const std::string& id) {
    mv1::GetMigrationRequest r;
    r.set_id(id);
    return CallUnary(*stub_, &mv1::MigrationService::Stub::GetMigration, r);
  }
  using Control = grpc::Status (mv1::MigrationService::Stub::*)(grpc::ClientContext*, const mv1::MigrationRef&,
                                                               mv1::Migration*);
  absl::StatusOr<mv1::Migration> Call(Control method, const std::string& id) {
    mv1::MigrationRef r;
    r.set_id(id);
    return CallUnary(*stub_, method, r);
  }
  // Waits for the job to end; returns it.
  mv1::Migration WaitEnded(const std::string& id, absl::Duration timeout = absl::Seconds(60)) {
    mv1::Migration m;
    EXPECT_TRUE(WaitFor(
        [&] {
          auto got = Get(id);
          if (got.ok()) m = *got;
          return got.ok() && got->state() != mv1::MIGRATION_STATE_RUNNING &&
                 got->state() != mv1::MIGRATION_STATE_PAUSED;
        },
        timeout, absl::Milliseconds(100)))
        << migration_.process->Output();
    return m;
  }
  // WatchMigration until its stream ends: the updates and the status.
  struct Watched {
    std::vector<mv1::MigrationUpdate> updates;
    grpc::Status status;
  };
  Watched Watch(const std::string& id, absl::Duration interval, absl::Duration timeout = absl::Seconds(120)) {
    mv1::WatchMigrationRequest r;
    r.set_id(id);
    r.mutable_interval()->set_seconds(absl::ToInt64Seconds(interval));
    r.mutable_interval()->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(interval) % 1000000000));
    auto ctx = server::MakeClientContext(timeout);
    auto reader = stub_->WatchMigration(ctx.get(), r);
    Watched out;
    mv1::MigrationUpdate u;
    while (reader->Read(&u)) out.updates.push_back(u);
    out.status = reader->Finish();
    return out;
  }
  std::vector<mv1::MigrationObject> Report(const std::string& id, int page_size = 7) {
    std::vector<mv1::MigrationObject> out;
    mv1::ListMigrationObjectsRequest r;
    r.set_id(id);
    r.mutable_page()->set_page_size(page_size);
    for (int pages = 0; pages < 100; ++pages) {
      mv1::ListMigrationObjectsResponse resp;
      grpc::Status s = stub_->ListMigrationObjects(server::MakeClientContext(absl::Seconds(10)).get(), r, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      out.insert(out.end(), resp.objects().begin(), resp.objects().end());
      if (!s.ok() || resp.page().next_page_token().empty()) break;
      r.mutable_page()->set_page_token(resp.page().next_page_token());
    }
    return out;
  }

  std::string data_dir_;
  std::string s3_endpoint_;
  int parallel_parts_ = 2;
  std::unique_ptr<testing::ScratchDatabase> db_;
  Service storage_, migration_;
  std::unique_ptr<sv1::StorageService::Stub> storage_stub_;
  std::unique_ptr<mv1::MigrationService::Stub> stub_;
  std::string ns_;
};

}  // namespace cloudflux
