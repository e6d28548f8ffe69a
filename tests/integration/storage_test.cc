// The storage adapter through its gRPC API with the local backend, against
// real PostgreSQL and the dev broker.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <random>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/server/grpc_status.h"
#include "cloudflux/storage/v1/events.pb.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "service_process.h"

namespace cloudflux {
namespace {

namespace v1 = cloudflux::storage::v1;
namespace fs = std::filesystem;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen());
  return s;
}

size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator();
       ++it) {
    if (it->is_regular_file()) ++n;
  }
  return n;
}

// The size of the largest file under `dir` (0 if none).
uintmax_t LargestFile(const std::string& dir) {
  uintmax_t largest = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator();
       ++it) {
    if (it->is_regular_file()) largest = std::max(largest, it->file_size(ec));
  }
  return largest;
}

bool ConsumeObjectEvents(const std::string& key,
                         const std::function<void(const events::v1::EventEnvelope&)>& fn,
                         const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(30));

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = testing::ScratchDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    data_dir_ = ::testing::TempDir() + "/storage-" + core::NewId();
    Start();
  }
  void TearDown() override {
    if (svc_.process != nullptr && svc_.process->Running()) {
      svc_.process->Signal(SIGTERM);
      EXPECT_EQ(svc_.process->Wait(absl::Seconds(20)), 0) << svc_.process->Output();
    }
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }
  void Start(std::map<std::string, std::string> env = {}) {
    env["CLOUDFLUX_DATA_DIR"] = data_dir_;
    // Cloud backends on the test servers (small parts, so that multipart
    // uploads and block lists are exercised): s3 and gcs on s3rver, azure on
    // azurite.
    std::vector<std::string> backends;
    if (auto s3 = testing::TestS3Endpoint(); s3.ok()) {
      for (const auto& [name, kind, bucket] :
           {std::tuple{"s3", "s3", "cloudflux-test"}, std::tuple{"gcs", "gcs", "cloudflux-gcs"}}) {
        backends.push_back(absl::StrCat(R"({"name": ")", name, R"(", "kind": ")", kind,
                                        R"(", "endpoint": ")", *s3, R"(", "bucket": ")", bucket,
                                        R"(", "accessKeyId": "S3RVER", "secretAccessKey": "S3RVER",
                                        "partSize": 5242880, "multipartThreshold": 5242880,
                                        "parallelParts": 2})"));
      }
      // The same bucket with copies over 1 MiB in UploadPartCopy parts.
      backends.push_back(absl::StrCat(R"({"name": "s3parts", "kind": "s3", "endpoint": ")", *s3,
                                      R"(", "bucket": "cloudflux-test", "accessKeyId": "S3RVER",
                                      "secretAccessKey": "S3RVER", "partSize": 5242880,
                                      "multipartThreshold": 5242880, "maxSingleCopy": 1048576})"));
    }
    // Ceph's S3 gateway, which has UploadPartCopy: copies over 1 MiB in parts.
    if (auto rgw = testing::TestRadosgwEndpoint(); rgw.ok()) {
      backends.push_back(absl::StrCat(R"({"name": "rgw", "kind": "s3", "endpoint": ")", *rgw,
                                      R"(", "bucket": "cloudflux-test", "accessKeyId": "S3RVER",
                                      "secretAccessKey": "S3RVER", "partSize": 5242880,
                                      "multipartThreshold": 5242880, "parallelParts": 2,
                                      "maxSingleCopy": 1048576})"));
    }
    if (auto azure = testing::TestAzureEndpoint(); azure.ok()) {
      backends.push_back(absl::StrCat(R"({"name": "azure", "kind": "azure", "endpoint": ")",
                                      azure->substr(0, azure->rfind('/')),
                                      R"(", "bucket": "cloudflux-test", "accessKeyId": ")",
                                      testing::kAzuriteAccount, R"(", "secretAccessKey": ")",
                                      testing::kAzuriteKey, R"(", "partSize": 1048576,
                                      "multipartThreshold": 1048576, "parallelParts": 2})"));
    }
    if (!backends.empty()) {
      fs::create_directories(data_dir_);
      std::string file = data_dir_ + "/backends.json";
      std::ofstream(file) << R"({"backends": [)" << absl::StrJoin(backends, ",") << "]}";
      env.try_emplace("CLOUDFLUX_BACKENDS_FILE", file);  // a test may give its own
    }
    svc_ = StartService("storage-adapter", db_->url(), env);
    ASSERT_TRUE(WaitForHealth(svc_, HealthCheckResponse::SERVING)) << svc_.process->Output();
    stub_ = v1::StorageService::NewStub(server::MakeChannel(svc_.target()));
  }

  absl::StatusOr<v1::ObjectInfo> Put(const std::string& key, const std::string& data,
                                     const std::string& expected_sha = "",
                                     size_t chunk = 64 * 1024, const std::string& ns = "photos") {
    auto ctx = server::MakeClientContext(absl::Seconds(60));
    v1::ObjectInfo info;
    auto writer = stub_->PutObject(ctx.get(), &info);
    v1::PutObjectRequest header;
    header.mutable_header()->set_namespace_(ns);
    header.mutable_header()->set_key(key);
    header.mutable_header()->set_content_type("application/octet-stream");
    (*header.mutable_header()->mutable_metadata())["owner"] = "tests";
    header.mutable_header()->set_expected_sha256(expected_sha);
    header.mutable_header()->set_backend(backend_);
    header.mutable_header()->set_tier(tier_);
    header.mutable_header()->set_size(static_cast<int64_t>(data.size()));
    if (if_version_.has_value()) header.mutable_header()->set_if_version(*if_version_);
    writer->Write(header);
    for (size_t off = 0; off < data.size(); off += chunk) {
      v1::PutObjectRequest part;
      part.set_chunk(data.substr(off, chunk));
      if (!writer->Write(part)) break;
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    if (!s.ok()) return server::FromGrpcStatus(s);
    return info;
  }

  absl::StatusOr<std::string> Get(const std::string& key, int64_t offset = 0, int64_t length = 0,
                                  v1::ObjectInfo* info = nullptr) {
    auto ctx = server::MakeClientContext(absl::Seconds(60));
    v1::GetObjectRequest req;
    req.set_namespace_("photos");
    req.set_key(key);
    req.set_offset(offset);
    req.set_length(length);
    auto reader = stub_->GetObject(ctx.get(), req);
    v1::GetObjectResponse resp;
    std::string data;
    while (reader->Read(&resp)) {
      if (resp.has_info() && info != nullptr) *info = resp.info();
      data += resp.chunk();
    }
    grpc::Status s = reader->Finish();
    if (!s.ok()) return server::FromGrpcStatus(s);
    return data;
  }

  absl::StatusCode Head(const std::string& key, v1::ObjectInfo* info = nullptr) {
    v1::HeadObjectRequest req;
    req.set_namespace_("photos");
    req.set_key(key);
    v1::ObjectInfo out;
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    grpc::Status s = stub_->HeadObject(ctx.get(), req, &out);
    if (info != nullptr) *info = out;
    return static_cast<absl::StatusCode>(s.error_code());
  }

  // A CopyObject call: its progress messages and status.
  struct CopyResult {
    std::vector<v1::CopyObjectProgress> messages;
    absl::Status status;
    const v1::ObjectInfo& object() const { return messages.back().object(); }
  };
  CopyResult Copy(const v1::CopyObjectRequest& request) {
    auto ctx = server::MakeClientContext(absl::Seconds(60));
    auto reader = stub_->CopyObject(ctx.get(), request);
    CopyResult out;
    v1::CopyObjectProgress p;
    while (reader->Read(&p)) out.messages.push_back(p);
    out.status = server::FromGrpcStatus(reader->Finish());
    return out;
  }
  static v1::CopyObjectRequest CopyRequest(const std::string& from, const std::string& to,
                                           const std::string& backend,
                                           cloudflux::common::v1::StorageTier tier) {
    v1::CopyObjectRequest r;
    r.set_source_namespace("photos");
    r.set_source_key(from);
    r.set_key(to);
    r.set_backend(backend);
    r.set_tier(tier);
    return r;
  }
  absl::StatusOr<v1::ObjectInfo> SetTier(const std::string& key,
                                         cloudflux::common::v1::StorageTier tier) {
    v1::SetTierRequest r;
    r.set_namespace_("photos");
    r.set_key(key);
    r.set_tier(tier);
    v1::ObjectInfo info;
    grpc::Status s = stub_->SetTier(server::MakeClientContext(absl::Seconds(60)).get(), r, &info);
    if (!s.ok()) return server::FromGrpcStatus(s);
    return info;
  }
  absl::StatusOr<v1::RestoreObjectResponse> Restore(const std::string& key,
                                                    v1::RestorePriority priority = v1::RESTORE_PRIORITY_UNSPECIFIED,
                                                    int days = 0,
                                                    cloudflux::common::v1::StorageTier online_tier = {}) {
    v1::RestoreObjectRequest r;
    r.set_namespace_("photos");
    r.set_key(key);
    r.set_priority(priority);
    r.set_days(days);
    r.set_online_tier(online_tier);
    v1::RestoreObjectResponse out;
    grpc::Status s = stub_->RestoreObject(server::MakeClientContext(absl::Seconds(60)).get(), r, &out);
    if (!s.ok()) return server::FromGrpcStatus(s);
    return out;
  }
  std::unique_ptr<db::Pool> Db() {
    auto pool = db::Pool::Create({.url = db_->url(), .max_connections = 2});
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? std::move(*pool) : nullptr;
  }

  std::string backend_;  // for Put; "" = the default (local)
  std::optional<int64_t> if_version_;  // for Put: a conditional write
  cloudflux::common::v1::StorageTier tier_ = cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED;
  std::unique_ptr<testing::ScratchDatabase> db_;
  std::string data_dir_;
  Service svc_;
  std::unique_ptr<v1::StorageService::Stub> stub_;
};

TEST_F(StorageTest, PutGetRangesOverwriteAndDelete) {
  std::string data = RandomBytes(3 * 1024 * 1024 + 17, 1);
  auto info = Put("2026/cat.jpg", data, core::Sha256Hex(data));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(info->sha256(), core::Sha256Hex(data));
  EXPECT_EQ(info->backend(), "local");
  EXPECT_EQ(info->tier(), cloudflux::common::v1::STORAGE_TIER_HOT);
  EXPECT_EQ(info->version(), 1);
  EXPECT_EQ(info->metadata().at("owner"), "tests");

  v1::ObjectInfo streamed_info;
  auto whole = Get("2026/cat.jpg", 0, 0, &streamed_info);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(*whole == data) << "bytes differ";
  EXPECT_EQ(streamed_info.sha256(), info->sha256());
  auto range = Get("2026/cat.jpg", 1000, 2 * 1024 * 1024);
  ASSERT_TRUE(range.ok());
  EXPECT_TRUE(*range == data.substr(1000, 2 * 1024 * 1024));
  auto tail = Get("2026/cat.jpg", static_cast<int64_t>(data.size()) - 5);
  EXPECT_EQ(*tail, data.substr(data.size() - 5));

  // Overwrite: new version, the old bytes are gone from disk.
  std::string v2 = RandomBytes(1000, 2);
  auto second = Put("2026/cat.jpg", v2);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->version(), 2);
  EXPECT_NE(second->physical_key(), info->physical_key());
  EXPECT_EQ(*Get("2026/cat.jpg"), v2);
  // The replaced version's bytes go once the call has answered.
  EXPECT_TRUE(WaitFor([&] { return CountFiles(data_dir_ + "/objects") == 1u; }, absl::Seconds(10)))
      << CountFiles(data_dir_ + "/objects") << " files";

  // Empty objects are objects too.
  ASSERT_TRUE(Put("empty", "").ok());
  EXPECT_EQ(*Get("empty"), "");

  v1::DeleteObjectRequest del;
  del.set_namespace_("photos");
  del.set_key("2026/cat.jpg");
  v1::DeleteObjectResponse deleted;
  // A delete of a version the object is no longer at deletes nothing.
  del.set_version(1);
  EXPECT_EQ(stub_->DeleteObject(server::MakeClientContext(absl::Seconds(10)).get(), del, &deleted).error_code(),
            grpc::StatusCode::ABORTED);
  EXPECT_EQ(*Get("2026/cat.jpg"), v2);
  del.set_version(-1);
  EXPECT_EQ(stub_->DeleteObject(server::MakeClientContext(absl::Seconds(10)).get(), del, &deleted).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  del.set_version(2);
  ASSERT_TRUE(stub_->DeleteObject(server::MakeClientContext(absl::Seconds(10)).get(), del, &deleted).ok());
  del.set_version(0);
  EXPECT_EQ(Head("2026/cat.jpg"), absl::StatusCode::kNotFound);
  EXPECT_EQ(stub_->DeleteObject(server::MakeClientContext(absl::Seconds(10)).get(), del, &deleted)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(WaitFor([&] { return CountFiles(data_dir_ + "/objects") == 1u; }, absl::Seconds(10)))
      << "only the empty object remains: " << CountFiles(data_dir_ + "/objects") << " files";
}

// GetObject is served raw, its chunks sent from the reader's own buffers:
// bytes that are no GetObjectRequest are refused. A client on
// server::MakeChannel that stops reading lets the service send only its
// stream window ahead: when it then goes away, the service has sent (and
// its ObjectRead event counts) little more than the client took.
TEST_F(StorageTest, GetObjectRefusesMalformedRequestsAndAPausedClientHoldsOnlyItsWindow) {
  auto channel = server::MakeChannel(svc_.target());
  {
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    grpc::internal::RpcMethod method("/cloudflux.storage.v1.StorageService/GetObject",
                                     grpc::internal::RpcMethod::SERVER_STREAMING);
    grpc::Slice truncated("\x12\xff", 2);  // field 2 (key), 255 bytes announced, none sent
    grpc::ByteBuffer request(&truncated, 1);
    std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
        grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(channel.get(), method, ctx.get(), request));
    grpc::ByteBuffer response;
    EXPECT_FALSE(reader->Read(&response));
    grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  }

  const std::string key = "paused-" + core::NewId();
  const std::string data = RandomBytes(96 << 20, 21);
  ASSERT_TRUE(Put(key, data, "", 1 << 20).ok());
  auto ctx = server::MakeClientContext(absl::Seconds(60));
  v1::GetObjectRequest req;
  req.set_namespace_("photos");
  req.set_key(key);
  auto reader = v1::StorageService::NewStub(channel)->GetObject(ctx.get(), req);
  v1::GetObjectResponse resp;
  std::string got;
  while (got.size() < (24u << 20) && reader->Read(&resp)) got += resp.chunk();  // at full speed first
  ASSERT_TRUE(data.compare(0, got.size(), got) == 0) << "bytes differ";
  absl::SleepFor(absl::Seconds(2));  // the service sends on as far as the window lets it
  ctx->TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  int64_t sent = -1;
  ConsumeObjectEvents(
      key,
      [&](const events::v1::EventEnvelope& e) {
        v1::ObjectRead r;
        if (e.payload().UnpackTo(&r)) sent = r.bytes_read();
      },
      [&] { return sent >= 0; });
  // At most the 4 MiB window and the chunk being sent (1 MiB measured; with
  // gRPC's adaptive windows 8 MiB after these 24 MiB, and growing).
  EXPECT_GE(sent, static_cast<int64_t>(got.size()));
  EXPECT_LE(sent, static_cast<int64_t>(got.size()) + (5 << 20)) << "sent to a client that did not read";
}

TEST_F(StorageTest, ChecksumMismatchStoresNothing) {
  std::string data = RandomBytes(500000, 3);
  auto bad = Put("x.bin", data, std::string(64, '0'));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "SHA-256 mismatch"));
  EXPECT_EQ(Head("x.bin"), absl::StatusCode::kNotFound);
  EXPECT_EQ(CountFiles(data_dir_ + "/objects"), 0u);
  EXPECT_EQ(CountFiles(data_dir_ + "/.tmp"), 0u);
}

// PutObject on the wire: chunks in encodings other than the usual one (an
// unknown field after the chunk, the chunk field twice, an empty message,
// one chunk sent as several slices) store exactly the bytes protobuf would
// decode; bytes that are no PutObjectRequest are refused and store nothing.
TEST_F(StorageTest, PutObjectTakesEveryEncodingOfAChunkAndRefusesMalformedOnes) {
  auto channel = server::MakeChannel(svc_.target());
  grpc::internal::RpcMethod method("/cloudflux.storage.v1.StorageService/PutObject",
                                   grpc::internal::RpcMethod::CLIENT_STREAMING);
  // Sends `messages` (each the slices of one message) and answers the status
  // and, when it is OK, the ObjectInfo.
  auto put = [&](const std::vector<std::vector<std::string>>& messages, v1::ObjectInfo* info) {
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    grpc::ByteBuffer response;
    std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
        grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(channel.get(), method, ctx.get(), &response));
    for (const auto& message : messages) {
      std::vector<grpc::Slice> slices;
      for (const std::string& piece : message) slices.emplace_back(piece);
      if (!writer->Write(grpc::ByteBuffer(slices.data(), slices.size()))) break;
    }
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (status.ok()) {
      EXPECT_TRUE(grpc::SerializationTraits<v1::ObjectInfo>::Deserialize(&response, info).ok());
    }
    return status;
  };
  auto header = [](const std::string& key) {
    v1::PutObjectRequest request;
    request.mutable_header()->set_namespace_("photos");
    request.mutable_header()->set_key(key);
    return std::vector<std::string>{request.SerializeAsString()};
  };
  auto chunk = [](const std::string& bytes) {
    v1::PutObjectRequest request;
    request.set_chunk(bytes);
    return request.SerializeAsString();
  };
  auto trailer = [](size_t size) {
    v1::PutObjectRequest request;
    request.mutable_trailer()->set_size(static_cast<int64_t>(size));
    return std::vector<std::string>{request.SerializeAsString()};
  };
  const std::string a = RandomBytes(300000, 31), b = RandomBytes(70000, 32), c = RandomBytes(5000, 33);
  const std::string wire_b = chunk(b);
  const std::string key = "encodings-" + core::NewId();
  v1::ObjectInfo info;
  grpc::Status status = put(
      {header(key),
       {chunk(a) + std::string("\x78\x01", 2)},                   // field 15 = 1 after the chunk
       {chunk("dropped") + chunk(b.substr(0, 10))},               // the chunk field twice: the last wins
       {std::string()},                                          // no field at all: no bytes
       {wire_b.substr(0, 1), wire_b.substr(1, 2), wire_b.substr(3, 4000), wire_b.substr(4003)},  // in slices
       {chunk(c)},
       {trailer(a.size() + 10 + b.size() + c.size())}},
      &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string expected = a + b.substr(0, 10) + b + c;
  EXPECT_EQ(info.size(), static_cast<int64_t>(expected.size()));
  EXPECT_EQ(info.sha256(), core::Sha256Hex(expected));
  auto got = Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == expected) << "stored bytes differ";

  for (const std::string& bad : {std::string("\x12\xff", 2),         // 255 bytes announced, none sent
                                 std::string("\x12\x05" "ab", 4),    // 5 announced, 2 sent
                                 std::string("\x0a\x03" "\xff\xff\xff", 5)}) {  // a header that does not parse
    const std::string refused = "malformed-" + core::NewId();
    grpc::Status s = put({header(refused), {chunk(a)}, {bad}, {chunk(c)}}, &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_EQ(Head(refused), absl::StatusCode::kNotFound);
  }
  EXPECT_TRUE(WaitFor([&] { return CountFiles(data_dir_ + "/.tmp") == 0; }, absl::Seconds(10)));
}

// A stream's end alone never completes an upload: the header's declared
// size or a trailer must say the client sent everything, and the bytes must
// match. Clients that cancel or die mid-upload (with or without a declared
// size) leave nothing visible and nothing held.
TEST_F(StorageTest, AnUploadIsStoredOnlyWhenKnownToBeWhole) {
  // Sends a header (with `size` when >= 0), `data` in 10-byte chunks, then
  // `trailer` messages, and half-closes.
  auto put = [&](const std::string& key, int64_t size, const std::string& data,
                 const std::vector<v1::PutObjectTrailer>& trailers, bool chunk_after = false) {
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    v1::ObjectInfo info;
    auto writer = stub_->PutObject(ctx.get(), &info);
    v1::PutObjectRequest header;
    header.mutable_header()->set_namespace_("photos");
    header.mutable_header()->set_key(key);
    if (size >= 0) header.mutable_header()->set_size(size);
    writer->Write(header);
    for (size_t off = 0; off < data.size(); off += 10) {
      v1::PutObjectRequest part;
      part.set_chunk(data.substr(off, 10));
      writer->Write(part);
    }
    for (const auto& t : trailers) {
      v1::PutObjectRequest part;
      *part.mutable_trailer() = t;
      writer->Write(part);
    }
    if (chunk_after) {
      v1::PutObjectRequest part;
      part.set_chunk("late");
      writer->Write(part);
    }
    writer->WritesDone();
    return writer->Finish();
  };
  auto trailer = [](int64_t size, const std::string& sha = "") {
    v1::PutObjectTrailer t;
    t.set_size(size);
    t.set_sha256(sha);
    return t;
  };
  const std::string data = RandomBytes(95, 41);
  const std::string sha = core::Sha256Hex(data);
  struct Case {
    std::string name;
    grpc::StatusCode code;
    grpc::Status status;
  };
  std::vector<Case> refused = {
      {"neither-size-nor-trailer", grpc::StatusCode::INVALID_ARGUMENT, put("c1", -1, data, {})},
      {"fewer-than-declared", grpc::StatusCode::DATA_LOSS, put("c2", 96, data, {})},
      {"more-than-declared", grpc::StatusCode::OUT_OF_RANGE, put("c3", 94, data, {})},
      {"trailer-size-differs", grpc::StatusCode::DATA_LOSS, put("c4", -1, data, {trailer(94)})},
      {"trailer-and-size-differ", grpc::StatusCode::DATA_LOSS, put("c5", 95, data, {trailer(96)})},
      {"trailer-hash-differs", grpc::StatusCode::DATA_LOSS,
       put("c6", -1, data, {trailer(95, core::Sha256Hex("other"))})},
      {"two-trailers", grpc::StatusCode::INVALID_ARGUMENT, put("c7", -1, data, {trailer(95), trailer(95)})},
      {"chunk-after-trailer", grpc::StatusCode::INVALID_ARGUMENT, put("c8", -1, data, {trailer(95)}, true)},
      {"negative-size", grpc::StatusCode::INVALID_ARGUMENT, grpc::Status()},
  };
  {  // a negative size on the wire (the helper sends none for negatives)
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    v1::ObjectInfo info;
    auto writer = stub_->PutObject(ctx.get(), &info);
    v1::PutObjectRequest header;
    header.mutable_header()->set_namespace_("photos");
    header.mutable_header()->set_key("c9");
    header.mutable_header()->set_size(-1);
    writer->Write(header);
    writer->WritesDone();
    refused.back().status = writer->Finish();
  }
  for (const Case& c : refused) {
    EXPECT_EQ(c.status.error_code(), c.code) << c.name << ": " << c.status.error_message();
  }
  for (const char* key : {"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"}) {
    EXPECT_EQ(Head(key), absl::StatusCode::kNotFound) << key;
  }
  // What does complete an upload: a size, a trailer (with or without its
  // hash), or both; an empty object declared as such.
  EXPECT_TRUE(put("ok-size", 95, data, {}).ok());
  EXPECT_TRUE(put("ok-trailer", -1, data, {trailer(95)}).ok());
  EXPECT_TRUE(put("ok-both", 95, data, {trailer(95, sha)}).ok());
  EXPECT_TRUE(put("ok-empty", 0, "", {}).ok());
  for (const char* key : {"ok-size", "ok-trailer", "ok-both"}) {
    auto got = Get(key);
    ASSERT_TRUE(got.ok()) << key << ": " << got.status();
    EXPECT_TRUE(*got == data) << key;
  }

  // Clients that go away mid-stream without half-closing: cancelled calls
  // (RST_STREAM) and processes killed with SIGKILL, with and without a
  // declared size. None of them may leave an object.
  const std::string client = std::string(CLOUDFLUX_SOURCE_DIR) + "/tests/integration/abandon_put.py";
  std::vector<std::string> abandoned;
  for (int i = 0; i < 8; ++i) {
    for (const char* mode : {"cancel", "kill"}) {
      std::string key = absl::StrCat("abandoned-", mode, "-", i);
      std::vector<std::string> argv = {"/usr/bin/python3", client, svc_.target(), "photos", key, mode};
      if (i % 2 == 1) argv.push_back(std::to_string(4 << 20));  // declared, never reached
      auto proc = ChildProcess::Start(argv);
      ASSERT_TRUE(proc.ok()) << proc.status();
      int code = (*proc)->Wait(absl::Seconds(30));
      EXPECT_TRUE(absl::StrContains((*proc)->Output(), "sent")) << (*proc)->Output();
      EXPECT_EQ(code, std::string(mode) == "kill" ? 128 + SIGKILL : 0) << (*proc)->Output();
      abandoned.push_back(key);
    }
  }
  for (const std::string& key : abandoned) {
    // The server may still be finishing the dropped call: wait for it to let go.
    EXPECT_TRUE(WaitFor([&] { return CountFiles(data_dir_ + "/.tmp") == 0; }, absl::Seconds(10)));
    EXPECT_EQ(Head(key), absl::StatusCode::kNotFound) << key << " was stored from a dropped stream";
  }
}

// Server-streaming calls whose client cancels or stops reading: the service
// lets go of what it held (the object's open files), and a copy cancelled
// mid-way leaves no partial object (none, or the whole one).
TEST_F(StorageTest, StreamsWhoseClientGoesAwayHoldNothingAndLeaveNothingPartial) {
  // The service's open files (sockets and pipes aside: connections to the
  // stores and to clients are pooled).
  auto open_files = [&] {
    std::vector<std::string> files;
    std::error_code ec;
    for (auto it = fs::directory_iterator("/proc/" + std::to_string(svc_.process->pid()) + "/fd", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::string target = fs::read_symlink(it->path(), ec).string();
      if (!absl::StartsWith(target, "socket:") && !absl::StartsWith(target, "pipe:") &&
          !absl::StartsWith(target, "anon_inode:")) {
        files.push_back(target);
      }
    }
    return files;
  };
  auto open_fds = [&] { return open_files().size(); };
  const std::string key = "streamed-" + core::NewId();
  const std::string data = RandomBytes(16 << 20, 51);
  ASSERT_TRUE(Put(key, data, "", 1 << 20).ok());
  ASSERT_TRUE(Get(key, 0, 10).ok());  // the channel is up
  const size_t baseline = open_fds();

  // Readers that cancel after one chunk, and readers that stop reading until
  // their deadline passes.
  for (bool cancel : {true, false}) {
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<grpc::ClientReader<v1::GetObjectResponse>>> readers;
    for (int i = 0; i < 6; ++i) {
      contexts.push_back(server::MakeClientContext(cancel ? absl::Seconds(30) : absl::Seconds(2)));
      v1::GetObjectRequest req;
      req.set_namespace_("photos");
      req.set_key(key);
      readers.push_back(stub_->GetObject(contexts.back().get(), req));
      v1::GetObjectResponse first;
      ASSERT_TRUE(readers.back()->Read(&first));
    }
    EXPECT_GT(open_fds(), baseline) << "the readers hold the object open";
    for (size_t i = 0; i < readers.size(); ++i) {
      if (cancel) contexts[i]->TryCancel();
      grpc::Status status = readers[i]->Finish();
      EXPECT_EQ(status.error_code(),
                cancel ? grpc::StatusCode::CANCELLED : grpc::StatusCode::DEADLINE_EXCEEDED);
    }
    EXPECT_TRUE(WaitFor([&] { return open_fds() <= baseline; }, absl::Seconds(10)))
        << absl::StrJoin(open_files(), " ") << ": " << baseline << " before "
        << (cancel ? "cancelled" : "stalled") << " reads";
  }

  // A streamed copy to another backend, cancelled after its first progress.
  if (testing::TestS3Endpoint().ok()) {
    for (int i = 0; i < 3; ++i) {
      const std::string to = key + ".cancelled-" + std::to_string(i);
      auto ctx = server::MakeClientContext(absl::Seconds(60));
      auto reader = stub_->CopyObject(ctx.get(), CopyRequest(key, to, "s3", {}));
      v1::CopyObjectProgress progress;
      ASSERT_TRUE(reader->Read(&progress));
      ctx->TryCancel();
      (void)reader->Finish();
      v1::ObjectInfo info;
      // The copy either never lands or lands whole.
      absl::StatusCode code = Head(to, &info);
      if (code == absl::StatusCode::kOk) {
        EXPECT_EQ(info.size(), static_cast<int64_t>(data.size()));
        EXPECT_EQ(info.sha256(), core::Sha256Hex(data));
      } else {
        EXPECT_EQ(code, absl::StatusCode::kNotFound);
      }
    }
    EXPECT_TRUE(WaitFor([&] { return open_fds() <= baseline; }, absl::Seconds(10)))
        << absl::StrJoin(open_files(), " ") << " after cancelled copies, " << baseline << " before";
  }
}

TEST_F(StorageTest, BadInputIsRefusedAndWritesNothing) {
  for (const std::string& key : std::vector<std::string>{"../etc/passwd", "/abs", "a/../b", "a/./b", std::string("nul\0x", 5),
                                std::string(2000, 'k'), std::string("tab\tkey"), ""}) {
    EXPECT_EQ(Put(key, "data").status().code(), absl::StatusCode::kInvalidArgument) << key;
  }
  EXPECT_EQ(Put("ok", "data", "", 4, "Bad Namespace").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Put("ok", "data", "not-hex").status().code(), absl::StatusCode::kInvalidArgument);
  {
    // A stream that ends before its header.
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    v1::ObjectInfo info;
    auto writer = stub_->PutObject(ctx.get(), &info);
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "the stream ended before its header");
  }
  {
    // Data before the header.
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    v1::ObjectInfo info;
    auto writer = stub_->PutObject(ctx.get(), &info);
    v1::PutObjectRequest chunk;
    chunk.set_chunk("data");
    writer->Write(chunk);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    // A second header in the middle of the data.
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    v1::ObjectInfo info;
    auto writer = stub_->PutObject(ctx.get(), &info);
    v1::PutObjectRequest header;
    header.mutable_header()->set_namespace_("photos");
    header.mutable_header()->set_key("twice");
    writer->Write(header);
    v1::PutObjectRequest chunk;
    chunk.set_chunk(std::string(1 << 20, 'x'));
    for (int i = 0; i < 3; ++i) writer->Write(chunk);
    writer->Write(header);
    writer->Write(chunk);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(Head("twice"), absl::StatusCode::kNotFound);
  }
  {
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    v1::ObjectInfo info;
    auto writer = stub_->PutObject(ctx.get(), &info);
    v1::PutObjectRequest header;
    header.mutable_header()->set_namespace_("photos");
    header.mutable_header()->set_key("k");
    header.mutable_header()->set_backend("s3-nowhere");
    writer->Write(header);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(CountFiles(data_dir_ + "/objects"), 0u);
  EXPECT_EQ(CountFiles(data_dir_ + "/.tmp"), 0u);

  ASSERT_TRUE(Put("small", "0123456789").ok());
  EXPECT_EQ(Get("small", -1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Get("small", 0, -5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Get("small", 11).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Get("small", 5, 6).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*Get("small", 5, 5), "56789");
  EXPECT_EQ(Get("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StorageTest, ListingWithPrefixDelimiterAndPages) {
  for (const char* key : {"a/1", "a/2", "a/sub/3", "b/1", "c", "d"}) ASSERT_TRUE(Put(key, key).ok());
  auto list = [&](const std::string& prefix, const std::string& delimiter, int size,
                  const std::string& token) {
    v1::ListObjectsRequest req;
    req.set_namespace_("photos");
    req.set_prefix(prefix);
    req.set_delimiter(delimiter);
    req.mutable_page()->set_page_size(size);
    req.mutable_page()->set_page_token(token);
    v1::ListObjectsResponse resp;
    EXPECT_TRUE(stub_->ListObjects(server::MakeClientContext(absl::Seconds(10)).get(), req, &resp).ok());
    return resp;
  };
  {
    // A page token that decodes to bytes that are no UTF-8: INVALID_ARGUMENT,
    // not PostgreSQL's error text.
    v1::ListObjectsRequest req;
    req.set_namespace_("photos");
    req.mutable_page()->set_page_token("__4");
    v1::ListObjectsResponse resp;
    grpc::Status s = stub_->ListObjects(server::MakeClientContext(absl::Seconds(10)).get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    req.mutable_page()->set_page_token("");
    req.set_prefix(std::string("a/\0zzz", 6));
    EXPECT_EQ(stub_->ListObjects(server::MakeClientContext(absl::Seconds(10)).get(), req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  auto top = list("", "/", 100, "");
  ASSERT_EQ(top.common_prefixes_size(), 2);
  EXPECT_EQ(top.common_prefixes(0), "a/");
  EXPECT_EQ(top.common_prefixes(1), "b/");
  ASSERT_EQ(top.objects_size(), 2);
  EXPECT_EQ(top.objects(0).key(), "c");
  EXPECT_TRUE(top.page().next_page_token().empty());

  auto in_a = list("a/", "/", 100, "");
  EXPECT_EQ(in_a.objects_size(), 2);
  ASSERT_EQ(in_a.common_prefixes_size(), 1);
  EXPECT_EQ(in_a.common_prefixes(0), "a/sub/");

  // Every entry of a listing, page by page (rolled-up prefixes count as
  // entries and come first in each page); `pages` says how many it took.
  auto list_all = [&](const std::string& prefix, const std::string& delimiter, int size,
                      int* pages) {
    std::vector<std::string> seen;
    std::string token;
    *pages = 0;
    do {
      auto page = list(prefix, delimiter, size, token);
      for (const auto& p : page.common_prefixes()) seen.push_back(p);
      for (const auto& o : page.objects()) seen.push_back(o.key());
      token = page.page().next_page_token();
      ++*pages;
    } while (!token.empty() && *pages < 10);
    return seen;
  };
  int pages = 0;
  std::vector<std::string> seen = list_all("", "/", 2, &pages);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::string>{"a/", "b/", "c", "d"}));
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(list_all("", "", 4, &pages).size(), 6u);

  // Listings are in byte order (like S3), whatever the database's locale,
  // and pages of one resume exactly after the last key.
  for (const char* key : {"order/a", "order/\xc3\xa9", "order/Zz", "order/B"}) {
    ASSERT_TRUE(Put(key, key).ok());
  }
  EXPECT_EQ(list_all("order/", "", 1, &pages),
            (std::vector<std::string>{"order/B", "order/Zz", "order/a", "order/\xc3\xa9"}));
  EXPECT_EQ(pages, 4);

  v1::ListBackendsResponse backends;
  ASSERT_TRUE(stub_->ListBackends(server::MakeClientContext(absl::Seconds(10)).get(), {}, &backends).ok());
  ASSERT_GE(backends.backends_size(), 1);
  int defaults = 0;
  for (const auto& b : backends.backends()) {
    EXPECT_TRUE(b.healthy()) << b.name() << ": " << b.error();
    if (b.is_default()) {
      ++defaults;
      EXPECT_EQ(b.name(), "local");
    }
  }
  EXPECT_EQ(defaults, 1);
}

TEST_F(StorageTest, EventsReachKafka) {
  std::string key = "evt-" + core::NewId();
  ASSERT_TRUE(Put(key, "hello").ok());
  v1::DeleteObjectRequest del;
  del.set_namespace_("photos");
  del.set_key(key);
  v1::DeleteObjectResponse deleted;
  ASSERT_TRUE(stub_->DeleteObject(server::MakeClientContext(absl::Seconds(10)).get(), del, &deleted).ok());
  events::ConsumerOptions co;
  co.kafka.brokers = *testing::TestKafkaBootstrap();
  co.group_id = "storage-test-" + core::NewId();
  co.topics = {"cloudflux.storage.objects"};
  co.session_timeout = absl::Seconds(3);  // the dev broker's rebalances wait ~this long
  bool created = false, removed = false;
  auto consumer = events::Consumer::Create(co, [&](const events::ConsumedMessage& m) {
    auto e = events::ParseEnvelope(m);
    if (!e.ok()) return e.status();
    if (m.key != "photos/" + key) return absl::OkStatus();
    v1::ObjectCreated c;
    v1::ObjectDeleted d;
    if (e->payload().UnpackTo(&c)) created = c.object().key() == key && c.object().size() == 5;
    if (e->payload().UnpackTo(&d)) removed = d.key() == key;
    return absl::OkStatus();
  });
  ASSERT_TRUE(consumer.ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        (void)(*consumer)->Drain(absl::Milliseconds(100));
        return created && removed;
      },
      absl::Seconds(30), absl::ZeroDuration()));
}

TEST_F(StorageTest, KillDuringUploadLeavesNoObjectAndNoPartialFile) {
  // Writes completed just before the crash: their events must all arrive.
  std::string batch = core::NewId();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put(absl::StrCat("done-", batch, "-", i), "x").ok());
  auto ctx = server::MakeClientContext(absl::Seconds(60));
  v1::ObjectInfo info;
  auto writer = stub_->PutObject(ctx.get(), &info);
  v1::PutObjectRequest header;
  header.mutable_header()->set_namespace_("photos");
  header.mutable_header()->set_key("big.bin");
  ASSERT_TRUE(writer->Write(header));
  std::string chunk = RandomBytes(1 << 20, 4);
  v1::PutObjectRequest part;
  part.set_chunk(chunk);
  // Past the first 8 MiB, whose window is on its way to disk while the
  // next fills: killed there.
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(writer->Write(part));
  ASSERT_TRUE(WaitFor([&] { return LargestFile(data_dir_ + "/.tmp") >= (10u << 20); }, absl::Seconds(10)));
  ASSERT_EQ(CountFiles(data_dir_ + "/.tmp"), 1u);
  svc_.process->Signal(SIGKILL);
  EXPECT_EQ(svc_.process->Wait(absl::Seconds(10)), 128 + SIGKILL);
  writer->WritesDone();
  EXPECT_FALSE(writer->Finish().ok());

  Start();  // the restarted service cleans up the interrupted write
  EXPECT_EQ(Head("big.bin"), absl::StatusCode::kNotFound);
  EXPECT_EQ(CountFiles(data_dir_ + "/.tmp"), 0u);
  EXPECT_EQ(CountFiles(data_dir_ + "/objects"), 5u) << "only the completed writes";
  ASSERT_TRUE(Put("after-restart", "ok").ok());
  std::set<std::string> created;
  ConsumeObjectEvents(
      absl::StrCat("done-", batch, "-"),
      [&](const events::v1::EventEnvelope& e) {
        v1::ObjectCreated c;
        if (e.payload().UnpackTo(&c)) created.insert(c.object().key());
      },
      [&] { return created.size() == 5; });
  EXPECT_EQ(created.size(), 5u) << "every completed write's ObjectCreated is delivered";
}

// Consumes the objects topic from the start and hands every envelope keyed
// photos/<key>... (a prefix) to `fn` until `done` or the timeout.
bool ConsumeObjectEvents(const std::string& key,
                         const std::function<void(const events::v1::EventEnvelope&)>& fn,
                         const std::function<bool()>& done, absl::Duration timeout) {
  events::ConsumerOptions co;
  co.kafka.brokers = *testing::TestKafkaBootstrap();
  co.group_id = "storage-test-" + core::NewId();
  co.topics = {"cloudflux.storage.objects"};
  co.session_timeout = absl::Seconds(3);  // the dev broker's rebalances wait ~this long
  auto consumer = events::Consumer::Create(co, [&](const events::ConsumedMessage& m) {
    auto e = events::ParseEnvelope(m);
    if (!e.ok()) return e.status();
    if (absl::StartsWith(m.key, "photos/" + key)) fn(*e);
    return absl::OkStatus();
  });
  if (!consumer.ok()) return false;
  return WaitFor(
      [&] {
        (void)(*consumer)->Drain(absl::Milliseconds(100));
        return done();
      },
      timeout, absl::ZeroDuration());
}

TEST_F(StorageTest, ReadsBecomeBatchedObjectReadEventsAndNoneIsLostAtShutdown) {
  // Reads are summed for an hour: only the shutdown flush can write them.
  svc_.process->Signal(SIGTERM);
  ASSERT_EQ(svc_.process->Wait(absl::Seconds(20)), 0);
  Start({{"CLOUDFLUX_READ_EVENT_INTERVAL", "1h"}});
  std::string key = "hot-" + core::NewId();
  std::string data = RandomBytes(100000, 9);
  ASSERT_TRUE(Put(key, data).ok());
  constexpr int kReads = 40;
  for (int i = 0; i < kReads; ++i) ASSERT_TRUE(Get(key).ok());
  ASSERT_TRUE(Get(key, 10, 5).ok());  // a ranged read counts its bytes only
  svc_.process->Signal(SIGTERM);
  ASSERT_EQ(svc_.process->Wait(absl::Seconds(30)), 0) << svc_.process->Output();

  int64_t reads = 0, bytes = 0;
  int read_events = 0;
  ConsumeObjectEvents(
      key,
      [&](const events::v1::EventEnvelope& e) {
        v1::ObjectRead r;
        if (!e.payload().UnpackTo(&r)) return;
        ++read_events;
        reads += r.reads();
        bytes += r.bytes_read();
        EXPECT_EQ(r.version(), 1);
        EXPECT_EQ(r.size(), static_cast<int64_t>(data.size()));
        EXPECT_LE(r.first_read().seconds(), r.last_read().seconds());
      },
      [&] { return reads >= kReads + 1; });
  EXPECT_EQ(reads, kReads + 1);
  EXPECT_EQ(bytes, kReads * static_cast<int64_t>(data.size()) + 5);
  EXPECT_EQ(read_events, 1) << "the reads of one object in one window are one event";
  Start();
}

TEST_F(StorageTest, ConditionalWritesAndCopiesStoreNothingWhenTheObjectMoved) {
  const std::string key = "cond-" + core::NewId();
  size_t files = CountFiles(data_dir_ + "/objects");
  if_version_ = 1;  // no such object yet
  EXPECT_EQ(Put(key, "first").status().code(), absl::StatusCode::kAborted);
  if_version_ = -1;
  EXPECT_EQ(Put(key, "first").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Head(key), absl::StatusCode::kNotFound);
  EXPECT_EQ(CountFiles(data_dir_ + "/objects"), files) << "refused writes leave no bytes";
  if_version_ = 0;  // create only
  auto v1 = Put(key, "first");
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->version(), 1);
  auto again = Put(key, "second");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAborted) << again.status();
  EXPECT_TRUE(absl::StrContains(again.status().message(), "is at version 1")) << again.status();
  if_version_ = 2;
  EXPECT_EQ(Put(key, "second").status().code(), absl::StatusCode::kAborted);
  if_version_ = 1;
  auto v2 = Put(key, "second");
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->version(), 2);
  if_version_.reset();
  EXPECT_EQ(*Get(key), "second");
  // The replaced version's bytes go once the call has answered.
  EXPECT_TRUE(WaitFor([&] { return CountFiles(data_dir_ + "/objects") == files + 1; }, absl::Seconds(10)))
      << "one version's bytes: " << CountFiles(data_dir_ + "/objects") - files;

  // A copy onto another key, if that key is where the caller saw it.
  auto copy = CopyRequest(key, key + ".c", "", {});
  copy.set_if_destination_version(3);
  EXPECT_EQ(Copy(copy).status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Head(key + ".c"), absl::StatusCode::kNotFound);
  copy.set_if_destination_version(0);
  auto made = Copy(copy);
  ASSERT_TRUE(made.status.ok()) << made.status;
  EXPECT_EQ(made.object().version(), 1);
  EXPECT_EQ(Copy(copy).status.code(), absl::StatusCode::kAborted) << "it exists now";
  ASSERT_TRUE(Put(key, "third").ok());
  copy.set_if_destination_version(1);
  made = Copy(copy);
  ASSERT_TRUE(made.status.ok()) << made.status;
  EXPECT_EQ(made.object().version(), 2);
  EXPECT_EQ(*Get(key + ".c"), "third");
  copy.set_if_destination_version(-1);
  EXPECT_EQ(Copy(copy).status.code(), absl::StatusCode::kInvalidArgument);
  auto onto_itself = CopyRequest(key, key, "", cloudflux::common::v1::STORAGE_TIER_WARM);
  onto_itself.set_if_destination_version(3);
  EXPECT_EQ(Copy(onto_itself).status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*Get(key + ".c"), "third");
}

TEST_F(StorageTest, CopyLocallyIsServerSideAndSetTierIsAnEvent) {
  std::string key = "copy-" + core::NewId();
  std::string data = RandomBytes(3 << 20, 11);
  auto src = Put(key, data);
  ASSERT_TRUE(src.ok()) << src.status();

  auto copy = Copy(CopyRequest(key, key + ".copy", "", cloudflux::common::v1::STORAGE_TIER_WARM));
  ASSERT_TRUE(copy.status.ok()) << copy.status;
  ASSERT_GE(copy.messages.size(), 1u);
  EXPECT_TRUE(copy.messages.back().server_side()) << "a hard link on the same disk";
  EXPECT_EQ(copy.object().tier(), cloudflux::common::v1::STORAGE_TIER_WARM);
  EXPECT_EQ(copy.object().sha256(), src->sha256());
  EXPECT_EQ(copy.object().metadata().at("owner"), "tests");
  EXPECT_NE(copy.object().physical_key(), src->physical_key());
  EXPECT_TRUE(*Get(key + ".copy") == data);

  // Deleting the source leaves the copy intact.
  v1::DeleteObjectRequest del;
  del.set_namespace_("photos");
  del.set_key(key);
  v1::DeleteObjectResponse deleted;
  ASSERT_TRUE(stub_->DeleteObject(server::MakeClientContext(absl::Seconds(10)).get(), del, &deleted).ok());
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(data_dir_ + "/" + src->physical_key()); }, absl::Seconds(10)))
      << "the deleted source's bytes are removed once the call has answered";
  EXPECT_TRUE(*Get(key + ".copy") == data);

  auto cold = SetTier(key + ".copy", cloudflux::common::v1::STORAGE_TIER_COLD);
  ASSERT_TRUE(cold.ok()) << cold.status();
  EXPECT_EQ(cold->tier(), cloudflux::common::v1::STORAGE_TIER_COLD);
  EXPECT_EQ(cold->version(), copy.object().version());
  v1::ObjectInfo head;
  ASSERT_EQ(Head(key + ".copy", &head), absl::StatusCode::kOk);
  EXPECT_EQ(head.tier(), cloudflux::common::v1::STORAGE_TIER_COLD);

  // Bad input changes nothing.
  EXPECT_EQ(SetTier(key + ".copy", cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SetTier(key + ".copy", static_cast<cloudflux::common::v1::StorageTier>(42)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SetTier("missing", cloudflux::common::v1::STORAGE_TIER_COLD).status().code(),
            absl::StatusCode::kNotFound);
  size_t files = CountFiles(data_dir_ + "/objects");
  EXPECT_EQ(Copy(CopyRequest("missing", "x", "", {})).status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Copy(CopyRequest(key + ".copy", "x", "nowhere", {})).status.code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Copy(CopyRequest(key + ".copy", "../x", "", {})).status.code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Copy(CopyRequest(key + ".copy", "x", "", static_cast<cloudflux::common::v1::StorageTier>(9)))
                .status.code(),
            absl::StatusCode::kInvalidArgument);
  auto stale = CopyRequest(key + ".copy", "x", "", {});
  stale.set_source_version(7);
  EXPECT_EQ(Copy(stale).status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Head("x"), absl::StatusCode::kNotFound);
  EXPECT_EQ(CountFiles(data_dir_ + "/objects"), files) << "failed copies leave no bytes";

  bool tier_changed = false;
  ConsumeObjectEvents(
      key + ".copy",
      [&](const events::v1::EventEnvelope& e) {
        v1::ObjectTierChanged t;
        if (e.payload().UnpackTo(&t)) {
          tier_changed = t.from_tier() == cloudflux::common::v1::STORAGE_TIER_WARM &&
                         t.to_tier() == cloudflux::common::v1::STORAGE_TIER_COLD &&
                         t.size() == static_cast<int64_t>(data.size());
        }
      },
      [&] { return tier_changed; });
  EXPECT_TRUE(tier_changed);
}

TEST_F(StorageTest, OrphanedBytesOfDeadWritersAreSwept) {
  svc_.process->Signal(SIGTERM);
  ASSERT_EQ(svc_.process->Wait(absl::Seconds(20)), 0);
  // Bytes a crashed writer stored but never catalogued, and an old version
  // whose removal failed: both only known from storage.pending_bytes.
  auto pool = Db();
  ASSERT_NE(pool, nullptr);
  std::string dead_file = "objects/zz/dead-" + core::NewId();
  std::string old_file = "objects/zz/old-" + core::NewId();
  fs::create_directories(data_dir_ + "/objects/zz");
  std::ofstream(data_dir_ + "/" + dead_file) << "orphan";
  std::ofstream(data_dir_ + "/" + old_file) << "old version";
  ASSERT_TRUE(pool->Exec("INSERT INTO storage.pending_bytes (backend, physical_key, instance_id) "
                         "VALUES ('local', $1, $2)",
                         {dead_file, core::NewId()})
                  .ok());
  ASSERT_TRUE(pool->Exec("INSERT INTO storage.pending_bytes (backend, physical_key, created_at) "
                         "VALUES ('local', $1, now() - interval '1 hour')",
                         {old_file})
                  .ok());
  // A writer that died mid-upload to S3: s3rver cannot list incomplete
  // multipart uploads (UNIMPLEMENTED, logged), so only the row goes.
  if (testing::TestS3Endpoint().ok()) {
    ASSERT_TRUE(pool->Exec("INSERT INTO storage.pending_bytes (backend, physical_key, instance_id) "
                           "VALUES ('s3', $1, $2)",
                           {"objects/zz/dead-" + core::NewId(), core::NewId()})
                    .ok());
  }
  // One that died mid-upload to radosgw, which lists incomplete uploads:
  // its upload (one 5 MiB part) is aborted before the row goes.
  std::string rgw_dead = "objects/zz/dead-" + core::NewId();
  auto rgw = testing::TestRadosgwEndpoint();
  auto rgw_has_uploads = [&] {  // true also when the SDK cannot tell
    auto out = testing::RunNodeScript("s3.mjs", {"uploads", *rgw, "cloudflux-test", rgw_dead});
    return !out.ok() || !absl::StrContains(*out, "{\"uploads\":[]}");
  };
  if (rgw.ok()) {
    ASSERT_TRUE(testing::RunNodeScript("s3.mjs", {"start-upload", *rgw, "cloudflux-test", rgw_dead}).ok());
    ASSERT_TRUE(rgw_has_uploads());
    ASSERT_TRUE(pool->Exec("INSERT INTO storage.pending_bytes (backend, physical_key, instance_id) "
                           "VALUES ('rgw', $1, $2)",
                           {rgw_dead, core::NewId()})
                    .ok());
  }
  Start({{"CLOUDFLUX_SWEEP_INTERVAL", "200ms"}, {"CLOUDFLUX_ORPHAN_GRACE", "1s"}});
  // A write in progress on the live instance is not touched.
  std::string live = "live-" + core::NewId();
  ASSERT_TRUE(Put(live, "still here").ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        return !fs::exists(data_dir_ + "/" + dead_file) && !fs::exists(data_dir_ + "/" + old_file);
      },
      absl::Seconds(15)));
  EXPECT_TRUE(WaitFor(
      [&] {
        auto rows = pool->Exec("SELECT count(*) FROM storage.pending_bytes");
        return rows.ok() && (*rows)[0].Int(0) == 0;
      },
      absl::Seconds(10)));
  EXPECT_EQ(*Get(live), "still here");
  if (rgw.ok()) {
    EXPECT_FALSE(rgw_has_uploads()) << "the dead writer's upload to radosgw was not aborted";
  }
}

// Whether the S3 SDK (tests/node/s3.mjs) finds `key` in the test bucket.
bool S3HasObject(const std::string& key) {
  return testing::RunNodeScript("s3.mjs", {"get", *testing::TestS3Endpoint(), "cloudflux-test", key})
      .ok();
}

TEST_F(StorageTest, S3BackendKeepsTheTierAndOverwritesAcrossBackendsLeaveNoOrphan) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  v1::ListBackendsResponse backends;
  auto ctx = server::MakeClientContext(absl::Seconds(10));
  ASSERT_TRUE(stub_->ListBackends(ctx.get(), {}, &backends).ok());
  bool s3_healthy = false;
  for (const auto& b : backends.backends()) {
    if (b.name() == "s3") s3_healthy = b.healthy() && b.provider() == cloudflux::common::v1::CLOUD_PROVIDER_AWS;
  }
  EXPECT_TRUE(s3_healthy) << backends.DebugString();

  backend_ = "s3";
  tier_ = cloudflux::common::v1::STORAGE_TIER_WARM;
  std::string data(6 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 12));
  auto info = Put("cloud/six-mib.bin", data, core::Sha256Hex(data), 1 << 20);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->backend(), "s3");
  EXPECT_EQ(info->tier(), cloudflux::common::v1::STORAGE_TIER_WARM);
  EXPECT_EQ(info->size(), static_cast<int64_t>(data.size()));
  auto back = Get("cloud/six-mib.bin");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == data);
  auto range = Get("cloud/six-mib.bin", (5 << 20) - 3, 6);
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(*range, data.substr((5 << 20) - 3, 6));
  EXPECT_TRUE(S3HasObject(info->physical_key()));

  // A checksum mismatch on S3 stores nothing there either.
  auto bad = Put("cloud/bad.bin", data, std::string(64, '0'), 1 << 20);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Head("cloud/bad.bin"), absl::StatusCode::kNotFound);

  // Overwriting on the local backend removes the S3 copy.
  backend_ = "";
  auto local = Put("cloud/six-mib.bin", "now local");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->backend(), "local");
  EXPECT_EQ(local->version(), info->version() + 1);
  EXPECT_TRUE(WaitFor([&] { return !S3HasObject(info->physical_key()); }, absl::Seconds(10)))
      << "no orphan left on S3";
  EXPECT_EQ(*Get("cloud/six-mib.bin"), "now local");

  backend_ = "no-such-backend";
  EXPECT_EQ(Put("cloud/x", "x").status().code(), absl::StatusCode::kNotFound);

  // The current tier_ is refused on the GCS and Azure backends, where
  // configured, and nothing is stored.
  auto refused_on_gcs_and_azure = [&](const std::string& prefix) {
    for (const std::string other : {"gcs", "azure"}) {
      bool configured = false;
      for (const auto& b : backends.backends()) configured |= b.name() == other && b.healthy();
      if (!configured) continue;
      backend_ = other;
      auto refused = Put(prefix + other, "x");
      EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << other << ": " << refused.status();
      EXPECT_EQ(Head(prefix + other), absl::StatusCode::kNotFound);
    }
  };

  // AUTO: S3 Intelligent-Tiering on S3; refused where the cloud has no such
  // class per object (nothing stored).
  backend_ = "s3";
  tier_ = cloudflux::common::v1::STORAGE_TIER_AUTO;
  auto automatic = Put("cloud/auto.bin", "left to the cloud");
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_EQ(automatic->tier(), cloudflux::common::v1::STORAGE_TIER_AUTO);
  EXPECT_TRUE(S3HasObject(automatic->physical_key()));
  EXPECT_EQ(*Get("cloud/auto.bin"), "left to the cloud");
  refused_on_gcs_and_azure("cloud/auto-");

  // ARCHIVE_FLEXIBLE: S3's GLACIER class; the object then needs a restore
  // (s3rver keeps the class but restores at once); refused on GCS and Azure.
  backend_ = "s3";
  tier_ = cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE;
  auto flexible = Put("cloud/glacier.bin", "in glacier");
  ASSERT_TRUE(flexible.ok()) << flexible.status();
  EXPECT_EQ(flexible->tier(), cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE);
  auto glacier = testing::RunNodeScript("s3.mjs", {"get", *testing::TestS3Endpoint(), "cloudflux-test",
                                                   flexible->physical_key()});
  ASSERT_TRUE(glacier.ok()) << glacier.status();
  EXPECT_TRUE(absl::StrContains(*glacier, "\"storageClass\":\"GLACIER\"")) << *glacier;
  refused_on_gcs_and_azure("cloud/glacier-");
}

TEST_F(StorageTest, CopyAcrossBackendsWithTierChangesAndRelocation) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  std::string key = "x-" + core::NewId();
  std::string data = RandomBytes((6 << 20) + 12345, 21);  // multipart on S3
  auto src = Put(key, data);
  ASSERT_TRUE(src.ok()) << src.status();

  // local -> s3: streamed, checksummed, multipart; the SDK reads it back.
  // (s3rver predates GLACIER_IR, the COLD class, so COLD is not used here.)
  auto to_s3 = Copy(CopyRequest(key, key + ".s3", "s3", cloudflux::common::v1::STORAGE_TIER_ARCHIVE));
  ASSERT_TRUE(to_s3.status.ok()) << to_s3.status;
  EXPECT_FALSE(to_s3.messages.back().server_side());
  EXPECT_EQ(to_s3.messages.back().bytes_copied(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(to_s3.object().backend(), "s3");
  EXPECT_EQ(to_s3.object().tier(), cloudflux::common::v1::STORAGE_TIER_ARCHIVE);
  auto sdk = testing::RunNodeScript(
      "s3.mjs", {"get", *testing::TestS3Endpoint(), "cloudflux-test", to_s3.object().physical_key()});
  ASSERT_TRUE(sdk.ok()) << sdk.status();
  EXPECT_TRUE(absl::StrContains(*sdk, core::Sha256Hex(data))) << *sdk;
  EXPECT_TRUE(absl::StrContains(*sdk, "\"storageClass\":\"DEEP_ARCHIVE\"")) << *sdk;

  // s3 -> s3: the store copies.
  auto within = Copy(CopyRequest(key + ".s3", key + ".s3b", "", cloudflux::common::v1::STORAGE_TIER_WARM));
  ASSERT_TRUE(within.status.ok()) << within.status;
  EXPECT_TRUE(within.messages.back().server_side());
  EXPECT_EQ(within.object().backend(), "s3");
  EXPECT_TRUE(*Get(key + ".s3b") == data);

  // s3 -> local.
  auto back = Copy(CopyRequest(key + ".s3b", key + ".back", "local", cloudflux::common::v1::STORAGE_TIER_HOT));
  ASSERT_TRUE(back.status.ok()) << back.status;
  EXPECT_EQ(back.object().backend(), "local");
  EXPECT_TRUE(*Get(key + ".back") == data);

  sdk = testing::RunNodeScript(
      "s3.mjs", {"get", *testing::TestS3Endpoint(), "cloudflux-test", within.object().physical_key()});
  ASSERT_TRUE(sdk.ok()) << sdk.status();
  EXPECT_TRUE(absl::StrContains(*sdk, "\"storageClass\":\"STANDARD_IA\"")) << *sdk;

  // SetTier on S3 rewrites the object in place with the new class.
  auto archived = SetTier(key + ".s3b", cloudflux::common::v1::STORAGE_TIER_ARCHIVE);
  ASSERT_TRUE(archived.ok()) << archived.status();
  EXPECT_EQ(archived->physical_key(), within.object().physical_key());
  EXPECT_TRUE(*Get(key + ".s3b") == data);
  sdk = testing::RunNodeScript(
      "s3.mjs", {"get", *testing::TestS3Endpoint(), "cloudflux-test", within.object().physical_key()});
  ASSERT_TRUE(sdk.ok()) << sdk.status();
  EXPECT_TRUE(absl::StrContains(*sdk, "\"storageClass\":\"DEEP_ARCHIVE\"")) << *sdk;

  // Relocation: the same key moves to S3; version kept, old bytes removed.
  auto moved = Copy(CopyRequest(key, "", "s3", cloudflux::common::v1::STORAGE_TIER_WARM));
  ASSERT_TRUE(moved.status.ok()) << moved.status;
  EXPECT_EQ(moved.object().key(), key);
  EXPECT_EQ(moved.object().backend(), "s3");
  EXPECT_EQ(moved.object().version(), src->version());
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(data_dir_ + "/" + src->physical_key()); }, absl::Seconds(10)));
  EXPECT_TRUE(S3HasObject(moved.object().physical_key()));
  EXPECT_TRUE(*Get(key) == data);

  bool relocated = false;
  ConsumeObjectEvents(
      key,
      [&](const events::v1::EventEnvelope& e) {
        v1::ObjectRelocated r;
        if (e.payload().UnpackTo(&r)) {
          relocated = r.from_backend() == "local" && r.to_backend() == "s3" &&
                      r.to_tier() == cloudflux::common::v1::STORAGE_TIER_WARM && r.version() == src->version();
        }
      },
      [&] { return relocated; });
  EXPECT_TRUE(relocated);
}

// Copies and tier changes of objects over the single-copy limit try
// UploadPartCopy; s3rver has none, so the service streams them instead and
// the result is the same.
// A copy into a store that takes parts, stopped midway twice (its client
// gone, then the storage adapter killed): each next copy goes on from the
// parts stored, sends only the rest, and the object lands whole. s3rver has
// no ListParts (the record is taken at its word, CompleteMultipartUpload
// checks the ETags); radosgw's ListParts checks the parts before resuming;
// on azurite the uncommitted block list does.
// Two relocations of one object to S3 at once (a migration worker taken for
// dead and its task retried while its copy still runs): the second waits
// for the first, which moves the object; the second then finds it moved and
// answers with it where it is, instead of reading the removed source.
TEST_F(StorageTest, ARelocationThatWaitedForAnotherOfTheSameObjectFindsItMoved) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  const std::string key = "twice-" + core::NewId();
  const std::string data = RandomBytes(12 << 20, 67);
  auto local = Put(key, data, "", 1 << 20);
  ASSERT_TRUE(local.ok()) << local.status();
  auto first_request = CopyRequest(key, "", "s3", {});
  first_request.set_max_bytes_per_second(4 << 20);  // about 3 s
  CopyResult first;
  std::thread slow([&] { first = Copy(first_request); });
  absl::SleepFor(absl::Milliseconds(500));
  CopyResult second = Copy(CopyRequest(key, "", "s3", {}));
  slow.join();
  ASSERT_TRUE(first.status.ok()) << first.status;
  ASSERT_TRUE(second.status.ok()) << second.status.ToString() << " after " << second.messages.size() << " messages";
  EXPECT_EQ(second.object().backend(), "s3");
  EXPECT_EQ(second.object().physical_key(), first.object().physical_key()) << "moved once";
  EXPECT_EQ(second.object().version(), local->version());
  EXPECT_TRUE(*Get(key) == data);
}

TEST_F(StorageTest, InterruptedCopiesResumeFromThePartsAlreadyStored) {
  std::vector<std::string> targets;
  if (testing::TestS3Endpoint().ok()) targets.push_back("s3");
  if (testing::TestRadosgwEndpoint().ok()) targets.push_back("rgw");
  if (testing::TestAzureEndpoint().ok()) targets.push_back("azure");
  if (targets.empty()) GTEST_SKIP() << "no S3 or Azure server";
  if (targets[0] == "s3") targets.push_back("local");  // from S3 into local disk
  auto pool = Db();
  ASSERT_NE(pool, nullptr);
  for (const std::string& backend : targets) {
    SCOPED_TRACE(backend);
    // The test backends' part sizes; local disk's is 8 MiB.
    const int64_t part = backend == "azure" ? 1 << 20 : backend == "local" ? 8 << 20 : 5 << 20;
    const std::string key = "resume-" + core::NewId();
    const std::string data = RandomBytes(backend == "local" ? 64 << 20 : 40 << 20, 61);
    backend_ = backend == "local" ? "s3" : "";  // the source
    ASSERT_TRUE(Put(key, data, "", 1 << 20).ok());
    backend_.clear();
    const auto request = CopyRequest(key, key + ".copy", backend, cloudflux::common::v1::STORAGE_TIER_WARM);
    // Bytes recorded as stored at the target, and whether a writer holds them.
    auto recorded = [&](bool* writing = nullptr) -> int64_t {
      auto rows = pool->Exec("SELECT part_size * cardinality(string_to_array(etags, E'\\n')), writer IS NOT NULL "
                             "FROM storage.copy_uploads WHERE target_backend = $1",
                             {backend});
      if (!rows.ok() || rows->empty()) return 0;
      if (writing != nullptr) *writing = (*rows)[0].Bool(1);
      return (*rows)[0].Int(0);
    };
    // 1. The client goes away once two parts are recorded.
    {
      auto ctx = server::MakeClientContext(absl::Seconds(60));
      auto reader = stub_->CopyObject(ctx.get(), request);
      ASSERT_TRUE(WaitFor([&] { return recorded() >= 2 * part; }, absl::Seconds(30), absl::Milliseconds(5)));
      ctx->TryCancel();
      (void)reader->Finish();
    }
    bool writing = true;
    ASSERT_TRUE(WaitFor([&] { return recorded(&writing) > 0 && !writing; }, absl::Seconds(20)))
        << "the stopped copy keeps its parts for the next one";
    const int64_t first_stop = recorded();
    EXPECT_EQ(Head(key + ".copy"), absl::StatusCode::kNotFound);
    // 2. The next copy goes on from there; the service is killed midway.
    {
      auto ctx = server::MakeClientContext(absl::Seconds(60));
      auto reader = stub_->CopyObject(ctx.get(), request);
      v1::CopyObjectProgress first;
      ASSERT_TRUE(reader->Read(&first));
      EXPECT_EQ(first.resumed_bytes(), first_stop);
      EXPECT_GE(first.bytes_copied(), first_stop);
      ASSERT_TRUE(WaitFor([&] { return recorded() >= first_stop + 2 * part; }, absl::Seconds(30),
                          absl::Milliseconds(5)));
      svc_.process->Signal(SIGKILL);
      svc_.process->Wait(absl::Seconds(10));
      (void)reader->Finish();
    }
    const int64_t second_stop = recorded();
    ASSERT_GE(second_stop, first_stop + 2 * part);
    Start();  // the same host: its predecessor's copies are known to have stopped
    // 3. The last copy sends only what is not stored yet.
    auto done = Copy(request);
    ASSERT_TRUE(done.status.ok()) << done.status;
    EXPECT_EQ(done.messages.back().resumed_bytes(), second_stop);
    EXPECT_EQ(done.object().sha256(), core::Sha256Hex(data));
    EXPECT_EQ(done.object().backend(), backend);
    EXPECT_EQ(*Get(key + ".copy"), data);
    auto left = pool->Exec("SELECT count(*) FROM storage.copy_uploads");
    ASSERT_TRUE(left.ok());
    EXPECT_EQ((*left)[0].Int(0), 0);
  }
}

// A resumable copy's record that does not match what the source's bytes
// hash to (altered, or of other bytes) never lands: the copy fails with
// DATA_LOSS, nothing is catalogued, and the next copy starts afresh.
TEST_F(StorageTest, AResumedCopyWhoseRecordIsWrongLandsNothing) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "no s3rver";
  auto pool = Db();
  ASSERT_NE(pool, nullptr);
  const std::string key = "tampered-" + core::NewId();
  const std::string data = RandomBytes(24 << 20, 62);
  ASSERT_TRUE(Put(key, data, "", 1 << 20).ok());
  const auto request = CopyRequest(key, key + ".copy", "s3", cloudflux::common::v1::STORAGE_TIER_HOT);
  {
    auto ctx = server::MakeClientContext(absl::Seconds(60));
    auto reader = stub_->CopyObject(ctx.get(), request);
    ASSERT_TRUE(WaitFor(
        [&] {
          auto rows = pool->Exec("SELECT 1 FROM storage.copy_uploads WHERE etags <> ''");
          return rows.ok() && !rows->empty();
        },
        absl::Seconds(30), absl::Milliseconds(5)));
    ctx->TryCancel();
    (void)reader->Finish();
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        auto rows = pool->Exec("SELECT 1 FROM storage.copy_uploads WHERE writer IS NULL");
        return rows.ok() && !rows->empty();
      },
      absl::Seconds(20)));
  // The hash of the first 5 MiB of other bytes, in place of the record's.
  core::Sha256 other;
  other.Update(RandomBytes(5 << 20, 63));
  ASSERT_TRUE(pool->Exec("UPDATE storage.copy_uploads SET sha256_state = $1, etags = split_part(etags, E'\\n', 1)",
                         {core::HexEncode(other.SaveState())})
                  .ok());
  auto tampered = Copy(request);
  EXPECT_EQ(tampered.status.code(), absl::StatusCode::kDataLoss) << tampered.status;
  EXPECT_EQ(Head(key + ".copy"), absl::StatusCode::kNotFound);
  auto again = Copy(request);
  ASSERT_TRUE(again.status.ok()) << again.status;
  EXPECT_EQ(again.messages.back().resumed_bytes(), 0);
  EXPECT_EQ(*Get(key + ".copy"), data);
}

TEST_F(StorageTest, LargeCopiesInsideOneBucketFallBackToStreamingWhenTheServerCannotCopyParts) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "needs s3rver";
  backend_ = "s3parts";
  std::string data = RandomBytes((3 << 20) + 7, 51);
  std::string key = "parts-" + core::NewId();
  auto src = Put(key, data);
  ASSERT_TRUE(src.ok()) << src.status();
  auto copy = Copy(CopyRequest(key, key + ".copy", "s3parts", cloudflux::common::v1::STORAGE_TIER_WARM));
  ASSERT_TRUE(copy.status.ok()) << copy.status;
  EXPECT_FALSE(copy.messages.back().server_side()) << "streamed after UploadPartCopy was refused";
  EXPECT_EQ(copy.object().sha256(), src->sha256());
  EXPECT_TRUE(*Get(key + ".copy") == data);
  auto warm = SetTier(key, cloudflux::common::v1::STORAGE_TIER_WARM);
  ASSERT_TRUE(warm.ok()) << warm.status();
  EXPECT_EQ(warm->tier(), cloudflux::common::v1::STORAGE_TIER_WARM);
  EXPECT_EQ(warm->version(), src->version());
  EXPECT_TRUE(*Get(key) == data);
  backend_ = "";
}

// On a server with UploadPartCopy (radosgw) the same copy and tier change
// stay on the server, in parts, and the SDK reads the new classes.
TEST_F(StorageTest, LargeCopiesAndTierChangesGoInPartsOnAServerThatCopiesParts) {
  auto rgw = testing::TestRadosgwEndpoint();
  if (!rgw.ok()) GTEST_SKIP() << "needs radosgw";
  backend_ = "rgw";
  std::string data = RandomBytes((11 << 20) + 7, 52);  // 3 parts of at least 5 MiB
  std::string key = "rgw-parts-" + core::NewId();
  auto src = Put(key, data, "", 1 << 20);
  ASSERT_TRUE(src.ok()) << src.status();
  auto sdk_get = [&](const std::string& physical_key) {
    return testing::RunNodeScript("s3.mjs", {"get", *rgw, "cloudflux-test", physical_key}).value_or("");
  };
  auto copy = Copy(CopyRequest(key, key + ".copy", "rgw", cloudflux::common::v1::STORAGE_TIER_WARM));
  ASSERT_TRUE(copy.status.ok()) << copy.status;
  EXPECT_TRUE(copy.messages.back().server_side());
  EXPECT_EQ(copy.object().sha256(), src->sha256());
  EXPECT_EQ(copy.object().tier(), cloudflux::common::v1::STORAGE_TIER_WARM);
  std::string sdk = sdk_get(copy.object().physical_key());
  EXPECT_TRUE(absl::StrContains(sdk, src->sha256())) << sdk;
  EXPECT_TRUE(absl::StrContains(sdk, "\"storageClass\":\"STANDARD_IA\"")) << sdk;
  EXPECT_TRUE(*Get(key + ".copy") == data);

  auto cold = SetTier(key, cloudflux::common::v1::STORAGE_TIER_COLD);
  ASSERT_TRUE(cold.ok()) << cold.status();
  EXPECT_EQ(cold->tier(), cloudflux::common::v1::STORAGE_TIER_COLD);
  EXPECT_EQ(cold->version(), src->version());
  EXPECT_EQ(cold->physical_key(), src->physical_key()) << "changed in place";
  sdk = sdk_get(src->physical_key());
  EXPECT_TRUE(absl::StrContains(sdk, src->sha256())) << sdk;
  EXPECT_TRUE(absl::StrContains(sdk, "\"storageClass\":\"GLACIER_IR\"")) << sdk;
  EXPECT_TRUE(*Get(key) == data);
  backend_ = "";
}

// Objects catalogued on a backend this instance no longer has: every
// operation on their bytes is a clear FAILED_PRECONDITION naming it.
TEST_F(StorageTest, ObjectsOnABackendNoLongerConfiguredAreAFailedPrecondition) {
  if (!testing::TestS3Endpoint().ok()) GTEST_SKIP() << "needs s3rver";
  backend_ = "gcs";
  tier_ = cloudflux::common::v1::STORAGE_TIER_ARCHIVE;
  ASSERT_TRUE(Put("gone/a", "bytes on gcs").ok());
  backend_ = "";
  tier_ = cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED;
  svc_.process->Signal(SIGTERM);
  ASSERT_EQ(svc_.process->Wait(absl::Seconds(20)), 0);
  std::string file = data_dir_ + "/no-backends.json";
  std::ofstream(file) << R"({"backends": []})";
  Start({{"CLOUDFLUX_BACKENDS_FILE", file}});

  auto named = [](const absl::Status& s) {
    return s.code() == absl::StatusCode::kFailedPrecondition && absl::StrContains(s.message(), "'gcs'");
  };
  EXPECT_TRUE(named(Get("gone/a").status())) << Get("gone/a").status();
  EXPECT_TRUE(named(SetTier("gone/a", cloudflux::common::v1::STORAGE_TIER_HOT).status()));
  EXPECT_TRUE(named(Restore("gone/a").status())) << Restore("gone/a").status();
  auto copy = Copy(CopyRequest("gone/a", "gone/b", "local", {}));
  EXPECT_TRUE(named(copy.status)) << copy.status;
  v1::ObjectInfo head;
  ASSERT_EQ(Head("gone/a", &head), absl::StatusCode::kOk) << "the catalog keeps the object";
  EXPECT_EQ(head.backend(), "gcs");
  EXPECT_EQ(Head("gone/b"), absl::StatusCode::kNotFound);
  svc_.process->Signal(SIGTERM);
  ASSERT_EQ(svc_.process->Wait(absl::Seconds(20)), 0);
  Start();
}

// RestoreObject on each backend: local disk and GCS read archives directly,
// Azure rehydrates into an online tier (catalog and event follow), s3rver
// implements no restore (a clear UNIMPLEMENTED); bad requests change nothing.
TEST_F(StorageTest, RestoreMakesArchivedObjectsReadableWhereTheStoreCan) {
  if (!testing::TestS3Endpoint().ok() || !testing::TestAzureEndpoint().ok()) {
    GTEST_SKIP() << "needs s3rver and azurite";
  }
  const auto kArchive = cloudflux::common::v1::STORAGE_TIER_ARCHIVE;
  const auto kHot = cloudflux::common::v1::STORAGE_TIER_HOT;
  std::string data = RandomBytes(300000, 41);
  std::string prefix = "restore-" + core::NewId() + "/";
  tier_ = kArchive;
  for (const std::string backend : {"local", "gcs", "s3", "azure"}) {
    backend_ = backend;
    ASSERT_TRUE(Put(prefix + backend, data).ok()) << backend;
  }
  backend_ = "azure";
  ASSERT_TRUE(Put(prefix + "azure-untouched", data).ok());
  tier_ = kHot;
  ASSERT_TRUE(Put(prefix + "azure-hot", data).ok());
  backend_ = "local";
  ASSERT_TRUE(Put(prefix + "local-hot", data).ok());

  // HeadObject says whether the bytes can be read now: asked of the store
  // for archived objects (s3rver reports the class it was given, azurite
  // the Archive tier), and of Azure for blobs that may be rehydrating.
  auto read_state = [&](const std::string& key) {
    v1::ObjectInfo info;
    EXPECT_EQ(Head(key, &info), absl::StatusCode::kOk) << key;
    return info.has_restore() ? info.restore().state() : v1::RESTORE_STATE_UNSPECIFIED;
  };
  EXPECT_EQ(read_state(prefix + "local"), v1::RESTORE_STATE_READABLE);
  EXPECT_EQ(read_state(prefix + "gcs"), v1::RESTORE_STATE_READABLE);
  EXPECT_EQ(read_state(prefix + "s3"), v1::RESTORE_STATE_NEEDED);
  EXPECT_EQ(read_state(prefix + "azure"), v1::RESTORE_STATE_NEEDED);
  EXPECT_EQ(read_state(prefix + "azure-hot"), v1::RESTORE_STATE_READABLE);
  EXPECT_EQ(read_state(prefix + "local-hot"), v1::RESTORE_STATE_UNSPECIFIED) << "nothing to ask";

  for (const std::string backend : {"local", "gcs"}) {
    auto r = Restore(prefix + backend);
    ASSERT_TRUE(r.ok()) << backend << ": " << r.status();
    EXPECT_EQ(r->state(), v1::RESTORE_STATE_READABLE) << backend;
    EXPECT_EQ(r->object().tier(), kArchive) << backend;
    EXPECT_TRUE(*Get(prefix + backend) == data) << backend;
  }
  auto s3 = Restore(prefix + "s3");
  EXPECT_EQ(s3.status().code(), absl::StatusCode::kUnimplemented) << s3.status();
  EXPECT_TRUE(absl::StrContains(s3.status().message(), "restore")) << s3.status();

  // Azure: not readable while archived; rehydrated into HOT.
  EXPECT_EQ(Get(prefix + "azure").status().code(), absl::StatusCode::kFailedPrecondition);
  auto azure = Restore(prefix + "azure", v1::RESTORE_PRIORITY_HIGH);
  ASSERT_TRUE(azure.ok()) << azure.status();
  EXPECT_EQ(azure->state(), v1::RESTORE_STATE_STARTED);
  EXPECT_EQ(azure->object().tier(), kHot);
  v1::ObjectInfo head;
  ASSERT_EQ(Head(prefix + "azure", &head), absl::StatusCode::kOk);
  EXPECT_EQ(head.tier(), kHot);
  EXPECT_EQ(head.version(), azure->object().version());
  EXPECT_TRUE(*Get(prefix + "azure") == data) << "azurite rehydrates at once";
  EXPECT_EQ(read_state(prefix + "azure"), v1::RESTORE_STATE_READABLE);
  // Nothing archived: nothing asked of the store.
  auto hot = Restore(prefix + "azure-hot");
  ASSERT_TRUE(hot.ok()) << hot.status();
  EXPECT_EQ(hot->state(), v1::RESTORE_STATE_READABLE);

  // Bad requests: clear errors, the archived object untouched.
  const std::string untouched = prefix + "azure-untouched";
  EXPECT_EQ(Restore(prefix + "missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Restore(untouched, {}, 366).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Restore(untouched, {}, -1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Restore(untouched, static_cast<v1::RestorePriority>(9)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Restore(untouched, {}, 0, kArchive).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Restore("../x").status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_EQ(Head(untouched, &head), absl::StatusCode::kOk);
  EXPECT_EQ(head.tier(), kArchive);
  EXPECT_EQ(Get(untouched).status().code(), absl::StatusCode::kFailedPrecondition);

  bool tier_changed = false;
  ConsumeObjectEvents(
      prefix + "azure",
      [&](const events::v1::EventEnvelope& e) {
        v1::ObjectTierChanged t;
        if (e.payload().UnpackTo(&t) && t.key() == prefix + "azure") {
          tier_changed = t.from_tier() == kArchive && t.to_tier() == kHot;
        }
      },
      [&] { return tier_changed; }, absl::Seconds(60));
  EXPECT_TRUE(tier_changed) << "ObjectTierChanged for the rehydration";
}

TEST_F(StorageTest, CopyBetweenEveryPairOfBackendsWithATierChange) {
  if (!testing::TestS3Endpoint().ok() || !testing::TestAzureEndpoint().ok()) {
    GTEST_SKIP() << "needs s3rver and azurite";
  }
  const std::vector<std::string> names = {"local", "s3", "gcs", "azure"};
  // Every class s3rver accepts (it predates GLACIER_IR, the S3 COLD class).
  const std::vector<cloudflux::common::v1::StorageTier> tiers = {
      cloudflux::common::v1::STORAGE_TIER_WARM, cloudflux::common::v1::STORAGE_TIER_HOT};
  std::string data = RandomBytes((1 << 20) + 999, 31);  // Azure blocks of 1 MiB
  std::string sha = core::Sha256Hex(data);
  int n = 0;
  for (const auto& from : names) {
    backend_ = from;
    std::string source = "pairs/" + from;
    auto put = Put(source, data, sha);
    ASSERT_TRUE(put.ok()) << from << ": " << put.status();
    for (const auto& to : names) {
      auto tier = tiers[n++ % tiers.size()];
      std::string target = "pairs/" + from + "-to-" + to;
      auto copy = Copy(CopyRequest(source, target, to, tier));
      ASSERT_TRUE(copy.status.ok()) << from << " -> " << to << ": " << copy.status;
      EXPECT_EQ(copy.messages.back().server_side(), from == to) << from << " -> " << to;
      EXPECT_EQ(copy.object().backend(), to);
      EXPECT_EQ(copy.object().tier(), tier);
      EXPECT_EQ(copy.object().sha256(), sha);
      auto back = Get(target);
      ASSERT_TRUE(back.ok()) << from << " -> " << to << ": " << back.status();
      EXPECT_TRUE(*back == data) << from << " -> " << to;
    }
  }
  // The Azure copies as the Azure SDK sees them.
  v1::ObjectInfo on_azure;
  ASSERT_EQ(Head("pairs/s3-to-azure", &on_azure), absl::StatusCode::kOk);
  auto sdk = testing::RunNodeScript("azure.mjs", {"get", *testing::TestAzureEndpoint(), "cloudflux-test",
                                                  on_azure.physical_key()});
  ASSERT_TRUE(sdk.ok()) << sdk.status();
  EXPECT_TRUE(absl::StrContains(*sdk, sha)) << *sdk;
  EXPECT_TRUE(absl::StrContains(*sdk, on_azure.tier() == cloudflux::common::v1::STORAGE_TIER_WARM
                                          ? "\"accessTier\":\"Cool\""
                                          : "\"accessTier\":\"Hot\""))
      << *sdk;
}

}  // namespace
}  // namespace cloudflux
