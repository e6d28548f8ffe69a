// The S3/GCS backend against s3rver (npm) and Ceph's S3 gateway (radosgw)
// on loopback, cross-checked with the official AWS SDK for JavaScript
// (tests/node/s3.mjs). Needs the test servers: scripts/dev test (or
// scripts/dev bench <this binary>).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/testing/testing.h"
#include "http.h"
#include "object_store.h"
#include "sigv4.h"
#include "store_test_util.h"

namespace cloudflux::storage {
namespace {

namespace common = cloudflux::common::v1;

// The AWS SDK client (tests/node/s3.mjs); its output, or "" when it failed.
std::string Sdk(const std::vector<std::string>& args) {
  return testing::RunNodeScript("s3.mjs", args).value_or("");
}

class S3StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto endpoint = testing::TestS3Endpoint();
    if (!endpoint.ok()) GTEST_SKIP() << endpoint.status() << " (run through scripts/dev test)";
    endpoint_ = *endpoint;
  }
  S3Options Options(const std::string& bucket = "cloudflux-test") {
    S3Options o;
    o.name = "s3-test";
    o.endpoint = endpoint_;
    o.bucket = bucket;
    o.access_key_id = "S3RVER";
    o.secret_access_key = "S3RVER";
    o.part_size = 5 << 20;
    o.multipart_threshold = 5 << 20;
    o.parallel_parts = 3;
    return o;
  }
  std::unique_ptr<ObjectStore> Store(S3Options o) {
    auto store = MakeS3Store(std::move(o));
    EXPECT_TRUE(store.ok()) << store.status();
    return std::move(*store);
  }
  static absl::Status Put(ObjectStore& store, const std::string& key, const std::string& data,
                          common::StorageTier tier = common::STORAGE_TIER_HOT, size_t chunk = 1 << 20) {
    return PutBytes(store, key, data, tier, chunk);
  }
  static absl::StatusOr<std::string> Get(ObjectStore& store, const std::string& key,
                                         int64_t offset = 0, int64_t length = 0) {
    return GetBytes(store, key, offset, length);
  }
  std::string SdkGet(const std::string& bucket, const std::string& key) {
    return Sdk({"get", endpoint_, bucket, key});
  }
  // A 9 MiB object the SDK wrote, read back whole and from the second read
  // window on.
  void ExpectToReadWhatTheSdkWrote(ObjectStore& store, const std::string& key, int seed) {
    std::string data = RandomBytes(9 << 20, seed);
    std::string file = ::testing::TempDir() + "/sdk-upload-" + core::NewId();
    std::ofstream(file, std::ios::binary) << data;
    ASSERT_NE(Sdk({"put", endpoint_, "cloudflux-test", key, file}), "");
    std::filesystem::remove(file);
    auto back = Get(store, key);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == data);
    auto range = Get(store, key, 8 << 20, 0);
    ASSERT_TRUE(range.ok()) << range.status();
    EXPECT_EQ(*range, data.substr(8 << 20));
  }
  // A 17 MiB object put in 700 KiB chunks (4 parts of 5 MiB, three in
  // flight) and read back whole, across a part boundary and past the second
  // read window, and by the SDK. Returns the SDK's answer ({size, sha256,
  // storageClass}).
  std::string ExpectMultipartRoundTrip(ObjectStore& store, const std::string& key,
                                       common::StorageTier tier, int seed) {
    std::string data = RandomBytes((17 << 20) + 12345, seed);
    EXPECT_TRUE(Put(store, key, data, tier, 700 * 1024).ok());
    auto back = Get(store, key);
    EXPECT_TRUE(back.ok()) << back.status();
    if (!back.ok()) return "";
    EXPECT_TRUE(*back == data) << "whole object differs";
    int64_t boundary = 5 << 20;
    auto across = Get(store, key, boundary - 100, 200);
    EXPECT_TRUE(across.ok()) << across.status();
    if (across.ok()) {
      EXPECT_EQ(*across, data.substr(boundary - 100, 200));
    }
    auto tail = Get(store, key, 16 << 20, 0);
    EXPECT_TRUE(tail.ok()) << tail.status();
    if (tail.ok()) {
      EXPECT_TRUE(*tail == data.substr(16 << 20));
    }
    std::string sdk = SdkGet("cloudflux-test", key);
    EXPECT_NE(sdk.find(core::Sha256Hex(data)), std::string::npos) << sdk;
    return sdk;
  }
  std::string endpoint_;
};

// Our SigV4 against the AWS SDK's signer (@smithy/signature-v4) on the
// requests this backend makes.
TEST_F(S3StoreTest, SignaturesMatchTheAwsSdk) {
  struct Case {
    std::string method, path;
    std::vector<std::pair<std::string, std::string>> query, headers;
    std::string body;
  };
  std::vector<Case> cases = {
      {"PUT", "/bucket/dir/a%20b%2Bc~.txt", {}, {{"x-amz-storage-class", "STANDARD_IA"}}, "hello"},
      {"POST", "/bucket/big", {{"uploads", ""}}, {{"x-amz-storage-class", "DEEP_ARCHIVE"}}, ""},
      {"PUT", "/bucket/big", {{"partNumber", "3"}, {"uploadId", "a/b+c=="}}, {}, "part bytes"},
      {"GET", "/bucket/big", {}, {{"range", "bytes=100-199"}}, ""},
      {"DELETE", "/big", {{"uploadId", "xyz"}}, {}, ""},
      {"GET", "/bucket", {{"prefix", "objects/ab/x"}, {"uploads", ""}}, {}, ""},
      {"PUT", "/bucket/big", {{"partNumber", "2"}, {"uploadId", "u1"}},
       {{"x-amz-copy-source", "/bucket/src%20key"}, {"x-amz-copy-source-range", "bytes=8388608-16777215"}}, ""},
      {"POST", "/bucket/archived", {{"restore", ""}}, {{"content-type", "application/xml"}},
       S3RestoreBody({.days = 3, .priority = RestoreOptions::Priority::kBulk})},
  };
  SigV4Key key{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-1", "s3"};
  absl::Time when = absl::FromUnixSeconds(1'790'000'000);
  std::string json = "[";
  std::vector<std::string> ours;
  for (const Case& c : cases) {
    SigV4Request r;
    r.method = c.method;
    r.canonical_uri = c.path;
    r.canonical_query = CanonicalQuery(c.query);
    r.headers = c.headers;
    r.headers.emplace_back("host", "bucket.s3.eu-west-1.amazonaws.com");
    r.payload_sha256 = core::Sha256Hex(c.body);
    SignV4(r, key, when);
    for (const auto& [name, value] : r.headers) {
      if (name == "Authorization") ours.push_back(value);
    }
    std::string query = "{", headers = "{";
    for (const auto& [k, v] : c.query) absl::StrAppend(&query, query.size() > 1 ? "," : "", "\"", k, "\":\"", v, "\"");
    for (const auto& [k, v] : c.headers) absl::StrAppend(&headers, headers.size() > 1 ? "," : "", "\"", k, "\":\"", v, "\"");
    absl::StrAppend(&json, json.size() > 1 ? "," : "", "{\"method\":\"", c.method,
                    "\",\"host\":\"bucket.s3.eu-west-1.amazonaws.com\",\"path\":\"", c.path,
                    "\",\"query\":", query, "},\"headers\":", headers, "},\"payloadSha256\":\"",
                    core::Sha256Hex(c.body), "\",\"time\":\"",
                    absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", when, absl::UTCTimeZone()),
                    "\",\"accessKeyId\":\"", key.access_key_id, "\",\"secretAccessKey\":\"",
                    key.secret_access_key, "\",\"region\":\"", key.region, "\"}");
  }
  json += "]";
  auto signed_by_sdk = testing::RunNodeScript("sigv4.mjs", {json});
  ASSERT_TRUE(signed_by_sdk.ok()) << signed_by_sdk.status();
  const std::string& sdk = *signed_by_sdk;
  for (const std::string& auth : ours) {
    EXPECT_NE(sdk.find(auth), std::string::npos) << "ours: " << auth << "\nsdk: " << sdk;
  }
}

TEST_F(S3StoreTest, SmallObjectRoundTripsAndTheSdkReadsTheSameBytes) {
  auto store = Store(Options());
  ASSERT_TRUE(store->Ping().ok()) << store->Ping();
  std::string key = "objects/" + core::NewId() + "/with space+plus";
  std::string data = RandomBytes(300 * 1024 + 7, 1);
  ASSERT_TRUE(Put(*store, key, data, common::STORAGE_TIER_WARM, 64 * 1024).ok());
  auto back = Get(*store, key);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, data);
  auto range = Get(*store, key, 1000, 5000);
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(*range, data.substr(1000, 5000));
  auto tail = Get(*store, key, data.size() - 10, 0);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, data.substr(data.size() - 10));

  std::string sdk = SdkGet("cloudflux-test", key);
  EXPECT_NE(sdk.find(core::Sha256Hex(data)), std::string::npos) << sdk;
  EXPECT_NE(sdk.find(absl::StrCat("\"size\":", data.size())), std::string::npos) << sdk;

  ASSERT_TRUE(store->Delete(key).ok());
  EXPECT_EQ(Get(*store, key).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->Delete(key).ok()) << "deleting a missing object is fine";
  EXPECT_EQ(SdkGet("cloudflux-test", key), "");
}

TEST_F(S3StoreTest, LargeObjectsGoUpInParallelPartsAndReadBackAcrossPartBoundaries) {
  auto store = Store(Options());
  ExpectMultipartRoundTrip(*store, "big/" + core::NewId(), common::STORAGE_TIER_HOT, 2);
}

TEST_F(S3StoreTest, AnAbortedMultipartUploadLeavesNoObject) {
  auto store = Store(Options());
  std::string key = "aborted/" + core::NewId();
  auto w = store->StartWrite(key, common::STORAGE_TIER_HOT);
  ASSERT_TRUE(w.ok());
  std::string data = RandomBytes(12 << 20, 3);
  ASSERT_TRUE((*w)->Write(data).ok());  // two parts uploaded already
  (*w)->Abort();
  EXPECT_EQ(Get(*store, key).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SdkGet("cloudflux-test", key), "");
  // Destroying a writer without Commit aborts too.
  {
    auto w2 = store->StartWrite(key, common::STORAGE_TIER_HOT);
    ASSERT_TRUE(w2.ok());
    ASSERT_TRUE((*w2)->Write(data).ok());
  }
  EXPECT_EQ(Get(*store, key).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(S3StoreTest, ReadsWhatTheSdkWrote) {
  auto store = Store(Options());
  ExpectToReadWhatTheSdkWrote(*store, "from-sdk/" + core::NewId(), 4);
}

TEST_F(S3StoreTest, VirtualHostStyleAndTheGcsDialect) {
  S3Options vhost = Options();
  // s3rver serves <bucket>.s3.localhost (curl resolves *.localhost to loopback).
  vhost.endpoint = "http://s3.localhost:" + endpoint_.substr(endpoint_.rfind(':') + 1);
  vhost.virtual_host_style = true;
  auto store = Store(vhost);
  ASSERT_TRUE(store->Ping().ok()) << store->Ping();
  std::string key = "vhost/" + core::NewId();
  ASSERT_TRUE(Put(*store, key, "virtual host").ok());
  EXPECT_EQ(*Get(*store, key), "virtual host");
  EXPECT_NE(SdkGet("cloudflux-test", key), "");

  S3Options gcs = Options("cloudflux-gcs");
  gcs.provider = common::CLOUD_PROVIDER_GCP;
  gcs.region = "auto";
  auto g = Store(gcs);
  EXPECT_EQ(g->provider(), common::CLOUD_PROVIDER_GCP);
  ASSERT_TRUE(Put(*g, key, "gcs bytes", common::STORAGE_TIER_COLD).ok());
  EXPECT_EQ(*Get(*g, key), "gcs bytes");
  EXPECT_NE(SdkGet("cloudflux-gcs", key), "");
}

// The restore request is the one the AWS SDK builds; s3rver implements no
// restore, so against it the answer is a clear UNIMPLEMENTED, and GCS
// (archive classes read directly) has nothing to restore.
TEST_F(S3StoreTest, RestoreRequestsMatchTheSdkAndUnsupportedRestoresAreClear) {
  for (auto [priority, tier] : {std::pair{RestoreOptions::Priority::kStandard, "Standard"},
                                {RestoreOptions::Priority::kHigh, "Expedited"},
                                {RestoreOptions::Priority::kBulk, "Bulk"}}) {
    auto sdk = testing::RunNodeScript("s3.mjs", {"restore-body", endpoint_, "cloudflux-test", "k", "5", tier});
    ASSERT_TRUE(sdk.ok()) << sdk.status();
    std::string ours = S3RestoreBody({.days = 5, .priority = priority});
    // The SDK's body, as JSON-escaped text.
    std::string escaped = absl::StrReplaceAll(ours, {{"\"", "\\\""}});
    EXPECT_TRUE(absl::StrContains(*sdk, escaped)) << "ours: " << ours << "\nsdk: " << *sdk;
    EXPECT_TRUE(absl::StrContains(*sdk, "\"restore\":\"\"")) << *sdk;
  }

  auto store = Store(Options());
  std::string key = "restore/" + core::NewId();
  ASSERT_TRUE(Put(*store, key, "archived bytes", common::STORAGE_TIER_ARCHIVE).ok());
  // HEAD reports the DEEP_ARCHIVE class it was written with and no restore.
  auto state = store->ReadStateOf(key);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->state, ReadState::State::kNeedsRestore);
  std::string hot_key = "restore/" + core::NewId();
  ASSERT_TRUE(Put(*store, hot_key, "hot bytes", common::STORAGE_TIER_HOT).ok());
  state = store->ReadStateOf(hot_key);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->state, ReadState::State::kReadable);
  EXPECT_EQ(store->ReadStateOf("restore/missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(store->RestoresAfterTierChange());
  auto restored = store->Restore(key, {});
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kUnimplemented) << restored.status();
  EXPECT_TRUE(absl::StrContains(restored.status().message(), "restore " + key)) << restored.status();

  // s3rver cannot list incomplete multipart uploads either: a clear
  // UNIMPLEMENTED the sweeper logs (the bucket's lifecycle rule cleans up).
  absl::Status aborted = store->AbortIncompleteWrites(key);
  EXPECT_EQ(aborted.code(), absl::StatusCode::kUnimplemented) << aborted;

  S3Options gcs = Options("cloudflux-gcs");
  gcs.provider = common::CLOUD_PROVIDER_GCP;
  auto g = Store(gcs);
  auto direct = g->Restore(key, {});
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(direct->state, RestoreResult::State::kReadable);
  EXPECT_FALSE(direct->tier_changed);
  auto gcs_state = g->ReadStateOf(key);  // GCS reads its archive classes directly
  ASSERT_TRUE(gcs_state.ok()) << gcs_state.status();
  EXPECT_EQ(gcs_state->state, ReadState::State::kReadable);
}

// Copies over max_single_copy go as UploadPartCopy parts; s3rver has no
// UploadPartCopy, so the attempt ends UNIMPLEMENTED (the service then
// streams the copy) with the upload aborted and nothing at the destination.
TEST_F(S3StoreTest, LargeCopiesGoInPartsOrSayTheServerCannot) {
  S3Options o = Options();
  o.max_single_copy = 1 << 20;
  auto store = Store(o);
  std::string data = RandomBytes(3 << 20, 8);
  std::string key = "copy/" + core::NewId();
  ASSERT_TRUE(Put(*store, key, data, common::STORAGE_TIER_HOT, 1 << 20).ok());
  absl::Status copied = store->CopyWithin(key, key + ".copy", common::STORAGE_TIER_WARM,
                                          static_cast<int64_t>(data.size()));
  EXPECT_EQ(copied.code(), absl::StatusCode::kUnimplemented) << copied;
  EXPECT_EQ(Get(*store, key + ".copy").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(*Get(*store, key) == data);
  // GCS's XML API has no UploadPartCopy: streamed without asking.
  S3Options gcs = Options("cloudflux-gcs");
  gcs.provider = common::CLOUD_PROVIDER_GCP;
  gcs.max_single_copy = 1 << 20;
  auto g = Store(gcs);
  absl::Status gcs_copied = g->CopyWithin(key, key + ".copy", common::STORAGE_TIER_WARM, 3 << 20);
  EXPECT_EQ(gcs_copied.code(), absl::StatusCode::kUnimplemented) << gcs_copied;
  EXPECT_TRUE(absl::StrContains(gcs_copied.message(), "streaming")) << gcs_copied;
  // Up to the limit: one copy request.
  std::string small = RandomBytes(512 << 10, 9);
  ASSERT_TRUE(Put(*store, key + ".s", small).ok());
  ASSERT_TRUE(store->CopyWithin(key + ".s", key + ".s2", common::STORAGE_TIER_WARM,
                                static_cast<int64_t>(small.size()))
                  .ok());
  EXPECT_TRUE(*Get(*store, key + ".s2") == small);
}

// Requests on other threads (read-ahead windows, multipart parts) reuse
// the connections earlier requests opened instead of opening their own.
TEST_F(S3StoreTest, ConnectionsAreReusedAcrossThreads) {
  auto get = [&] {
    absl::StatusOr<HttpResponse> r;
    std::thread([&] { r = SendHttp({.url = endpoint_ + "/cloudflux-test"}); }).join();
    return r;
  };
  auto first = get();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_GT(first->status, 0);
  for (int i = 0; i < 3; ++i) {
    auto again = get();
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->new_connections, 0) << "request " << i << " on a new thread opened a connection";
  }
}

// A large body given back is the memory the next large response fills
// (read windows reuse their buffers instead of faulting fresh pages in).
TEST_F(S3StoreTest, LargeResponseBodiesReuseRecycledBuffers) {
  auto store = Store(Options());
  const std::string key = "recycled-" + core::NewId();
  const std::string data = RandomBytes(3'000'000, 11);
  ASSERT_TRUE(Put(*store, key, data).ok());
  const std::string url = endpoint_ + "/cloudflux-test/" + key;  // s3rver serves anonymous GETs
  auto first = SendHttp({.url = url});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->status, 200);
  ASSERT_EQ(first->body, data);
  const char* memory = first->body.data();
  const size_t capacity = first->body.capacity();
  RecycleBody(std::move(first->body));
  // Had the buffer been freed, this same-sized block would likely take it.
  std::string blocker;
  blocker.reserve(capacity);
  auto second = SendHttp({.url = url});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->body, data);
  EXPECT_EQ(second->body.data(), memory) << "the recycled buffer was not reused";
}

// What the pool keeps between reads is bounded, however many windows come back.
TEST(BodyPool, KeepsAtMostItsCapBetweenReads) {
  for (int i = 0; i < 12; ++i) {
    std::string window;
    window.reserve(8 << 20);
    RecycleBody(std::move(window));
    EXPECT_LE(RecycledBodyBytes(), kMaxPooledBytes);
  }
  EXPECT_GE(RecycledBodyBytes(), kMaxPooledBytes - (8 << 20)) << "the pool kept too little to serve one read";
}

TEST_F(S3StoreTest, BadCredentialsAndMissingBucketsAreClearErrors) {
  // (s3rver checks the key id but not V4 signatures; the signature itself is
  // checked against AWS's SDK in SignaturesMatchTheAwsSdk.)
  S3Options wrong = Options();
  wrong.access_key_id = "NOT-A-KEY";
  wrong.secret_access_key = "not-the-secret";
  auto store = Store(wrong);
  absl::Status s = Put(*store, "x/" + core::NewId(), "data");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_NE(s.message().find("InvalidAccessKeyId"), std::string::npos) << s;
  EXPECT_EQ(s.message().find("not-the-secret"), std::string::npos);

  auto missing = Store(Options("no-such-bucket"));
  EXPECT_EQ(missing->Ping().code(), absl::StatusCode::kNotFound);

  S3Options down = Options();
  down.endpoint = "http://127.0.0.1:1";
  EXPECT_EQ(Store(down)->Ping().code(), absl::StatusCode::kUnavailable);
}

// The same backend against Ceph's S3 gateway (radosgw, Debian's package, on
// a one-OSD cluster): a production S3 implementation that checks every V4
// signature and has what s3rver lacks: UploadPartCopy, listing and aborting
// multipart uploads, storage classes on copies.
class RadosgwStoreTest : public S3StoreTest {
 protected:
  void SetUp() override {
    auto endpoint = testing::TestRadosgwEndpoint();
    if (!endpoint.ok()) GTEST_SKIP() << endpoint.status() << " (run through scripts/dev test)";
    endpoint_ = *endpoint;
  }
  // The key's incomplete multipart uploads as the SDK lists them:
  // {"uploads":[ids]}, "" when the SDK failed (node may print warnings
  // before that line).
  std::string Uploads(const std::string& key) {
    std::string out = Sdk({"uploads", endpoint_, "cloudflux-test", key});
    size_t at = out.find("{\"uploads\"");
    if (at == std::string::npos) return "";
    return out.substr(at, out.find('\n', at) - at);
  }
  static constexpr char kNoUploads[] = "{\"uploads\":[]}";
};

TEST_F(RadosgwStoreTest, EverySignedRequestIsAcceptedAndTheSdkReadsTheSameBytesAndClass) {
  auto store = Store(Options());
  ASSERT_TRUE(store->Ping().ok()) << store->Ping();
  std::string key = "rgw/" + core::NewId();
  ASSERT_TRUE(Put(*store, key, "one PUT", common::STORAGE_TIER_WARM).ok());
  EXPECT_EQ(*Get(*store, key), "one PUT");
  std::string sdk = SdkGet("cloudflux-test", key);
  EXPECT_NE(sdk.find(core::Sha256Hex("one PUT")), std::string::npos) << sdk;
  EXPECT_NE(sdk.find("\"storageClass\":\"STANDARD_IA\""), std::string::npos) << sdk;

  std::string big_key = "rgw/big/" + core::NewId();
  sdk = ExpectMultipartRoundTrip(*store, big_key, common::STORAGE_TIER_COLD, 21);
  EXPECT_NE(sdk.find("\"storageClass\":\"GLACIER_IR\""), std::string::npos) << sdk;
  EXPECT_EQ(Uploads(big_key), kNoUploads);

  ExpectToReadWhatTheSdkWrote(*store, "rgw/from-sdk/" + core::NewId(), 22);

  ASSERT_TRUE(store->Delete(key).ok());
  EXPECT_EQ(Get(*store, key).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->Delete(key).ok()) << "deleting a missing object is OK";

  // radosgw checks the signature itself: the right key id with the wrong
  // secret is refused, and the secret is in no error.
  S3Options wrong = Options();
  wrong.secret_access_key = "not-the-secret";
  auto refused = Store(wrong);
  absl::Status s = Put(*refused, "rgw/" + core::NewId(), "data");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "SignatureDoesNotMatch")) << s;
  EXPECT_FALSE(absl::StrContains(s.message(), "not-the-secret")) << s;
  EXPECT_EQ(refused->Ping().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Get(*refused, big_key).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Store(Options("no-such-bucket"))->Ping().code(), absl::StatusCode::kNotFound);

  // radosgw has no restore (an archived class is read directly there):
  // a clear UNIMPLEMENTED, as on s3rver.
  std::string archived = "rgw/restore/" + core::NewId();
  ASSERT_TRUE(Put(*store, archived, "archived bytes", common::STORAGE_TIER_ARCHIVE).ok());
  auto restored = store->Restore(archived, {});
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kUnimplemented) << restored.status();
}

// An aborted or dropped upload leaves neither an object nor an incomplete
// multipart upload whose parts would stay billed.
TEST_F(RadosgwStoreTest, AbortedAndDroppedUploadsLeaveNoPartsBehind) {
  auto store = Store(Options());
  std::string key = "rgw/aborted/" + core::NewId();
  std::string data = RandomBytes(12 << 20, 23);
  auto w = store->StartWrite(key, common::STORAGE_TIER_HOT);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Write(data).ok());  // two parts uploaded already
  EXPECT_NE(Uploads(key), kNoUploads) << "the upload should be in progress";
  (*w)->Abort();
  EXPECT_EQ(Uploads(key), kNoUploads);
  EXPECT_EQ(Get(*store, key).status().code(), absl::StatusCode::kNotFound);
  {
    auto dropped = store->StartWrite(key, common::STORAGE_TIER_HOT);
    ASSERT_TRUE(dropped.ok()) << dropped.status();
    ASSERT_TRUE((*dropped)->Write(data).ok());
  }
  EXPECT_EQ(Uploads(key), kNoUploads);
  EXPECT_EQ(Get(*store, key).status().code(), absl::StatusCode::kNotFound);
}

// The sweeper's cleanup of a dead writer: exactly that key's incomplete
// uploads are aborted, not those of keys it is a prefix of.
TEST_F(RadosgwStoreTest, TheSweeperAbortsExactlyTheDeadWritersUploads) {
  auto store = Store(Options());
  std::string key = "rgw/dead/" + core::NewId();
  std::string longer = key + "-other";
  ASSERT_NE(Sdk({"start-upload", endpoint_, "cloudflux-test", key}), "");
  ASSERT_NE(Sdk({"start-upload", endpoint_, "cloudflux-test", key}), "");
  ASSERT_NE(Sdk({"start-upload", endpoint_, "cloudflux-test", longer}), "");
  ASSERT_NE(Uploads(key), kNoUploads);
  const std::string longer_uploads = Uploads(longer);  // {"uploads":["<id>"]}
  ASSERT_NE(longer_uploads, kNoUploads);
  absl::Status aborted = store->AbortIncompleteWrites(key);
  ASSERT_TRUE(aborted.ok()) << aborted;
  EXPECT_EQ(Uploads(key), kNoUploads);
  EXPECT_EQ(Uploads(longer), longer_uploads) << "the longer key's upload must stay";
  EXPECT_TRUE(store->AbortIncompleteWrites(longer).ok());
  EXPECT_EQ(Uploads(longer), kNoUploads);
  EXPECT_TRUE(store->AbortIncompleteWrites(key).ok()) << "nothing left to abort is OK";
}

// Above max_single_copy, copies and tier changes go as UploadPartCopy
// ranges on the server; the bytes never pass through this process.
TEST_F(RadosgwStoreTest, LargeCopiesAndTierChangesGoAsUploadPartCopyParts) {
  S3Options o = Options();
  o.max_single_copy = 1 << 20;
  auto store = Store(o);
  std::string data = RandomBytes((12 << 20) + 4321, 24);  // 3 parts of at least 5 MiB
  std::string key = "rgw/copy/" + core::NewId();
  ASSERT_TRUE(Put(*store, key, data, common::STORAGE_TIER_HOT, 1 << 20).ok());
  const int64_t size = static_cast<int64_t>(data.size());
  absl::Status copied = store->CopyWithin(key, key + ".copy", common::STORAGE_TIER_WARM, size);
  ASSERT_TRUE(copied.ok()) << copied;
  std::string sdk = SdkGet("cloudflux-test", key + ".copy");
  EXPECT_NE(sdk.find(core::Sha256Hex(data)), std::string::npos) << sdk;
  EXPECT_NE(sdk.find("\"storageClass\":\"STANDARD_IA\""), std::string::npos) << sdk;
  auto across = Get(*store, key + ".copy", (5 << 20) - 10, 20);
  ASSERT_TRUE(across.ok()) << across.status();
  EXPECT_EQ(*across, data.substr((5 << 20) - 10, 20));
  EXPECT_EQ(Uploads(key + ".copy"), kNoUploads);

  // The object rewritten onto itself with the new class, in parts.
  absl::Status tiered = store->SetTier(key, common::STORAGE_TIER_COLD, size);
  ASSERT_TRUE(tiered.ok()) << tiered;
  sdk = SdkGet("cloudflux-test", key);
  EXPECT_NE(sdk.find(core::Sha256Hex(data)), std::string::npos) << sdk;
  EXPECT_NE(sdk.find("\"storageClass\":\"GLACIER_IR\""), std::string::npos) << sdk;
  EXPECT_EQ(Uploads(key), kNoUploads);

  // A size larger than the source: the part past its end is refused, the
  // upload aborted, nothing at the destination.
  absl::Status too_long = store->CopyWithin(key, key + ".bad", common::STORAGE_TIER_WARM, size + (6 << 20));
  EXPECT_FALSE(too_long.ok());
  EXPECT_EQ(Get(*store, key + ".bad").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Uploads(key + ".bad"), kNoUploads);
  // A missing source: NOT_FOUND, nothing left.
  absl::Status missing = store->CopyWithin(key + ".none", key + ".bad", common::STORAGE_TIER_WARM, size);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound) << missing;
  EXPECT_EQ(Uploads(key + ".bad"), kNoUploads);
}

}  // namespace
}  // namespace cloudflux::storage
