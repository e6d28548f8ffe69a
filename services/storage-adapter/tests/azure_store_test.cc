// The Azure Blob backend against azurite (npm) on loopback, which checks
// every Shared Key signature, cross-checked with the official Azure SDK for
// JavaScript (tests/node/azure.mjs). Needs the test servers: scripts/dev
// test (or scripts/dev bench <this binary>).
#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/testing/testing.h"
#include "object_store.h"
#include "store_test_util.h"

namespace cloudflux::storage {
namespace {

namespace common = cloudflux::common::v1;

class AzureStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto endpoint = testing::TestAzureEndpoint();
    if (!endpoint.ok()) GTEST_SKIP() << endpoint.status() << " (run through scripts/dev test)";
    endpoint_ = *endpoint;
    // The store takes scheme://host:port; the account is its path prefix.
    host_endpoint_ = endpoint_.substr(0, endpoint_.rfind('/'));
  }
  AzureOptions Options() {
    AzureOptions o;
    o.name = "azure-test";
    o.endpoint = host_endpoint_;
    o.account = testing::kAzuriteAccount;
    o.account_key = testing::kAzuriteKey;
    o.container = "cloudflux-test";
    o.part_size = 1 << 20;
    o.multipart_threshold = 1 << 20;
    o.parallel_parts = 3;
    return o;
  }
  std::unique_ptr<ObjectStore> Store(AzureOptions o) {
    auto store = MakeAzureStore(std::move(o));
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  // The SDK's view of a blob: {size, sha256, accessTier} JSON, or "".
  std::string SdkGet(const std::string& blob) {
    return testing::RunNodeScript("azure.mjs", {"get", endpoint_, "cloudflux-test", blob}).value_or("");
  }
  static std::string Key() { return "objects/az/" + core::NewId(); }
  std::string endpoint_, host_endpoint_;
};

TEST_F(AzureStoreTest, SmallBlobWithTierIsReadBackByTheSdk) {
  auto store = Store(Options());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Ping().ok()) << store->Ping();
  std::string data = RandomBytes(200 * 1024 + 3, 1);
  std::string key = Key();
  ASSERT_TRUE(PutBytes(*store, key, data, common::STORAGE_TIER_WARM, 64 * 1024).ok());
  std::string sdk = SdkGet(key);
  EXPECT_TRUE(absl::StrContains(sdk, core::Sha256Hex(data))) << sdk;
  EXPECT_TRUE(absl::StrContains(sdk, "\"accessTier\":\"Cool\"")) << sdk;
  EXPECT_TRUE(*GetBytes(*store, key) == data);
}

TEST_F(AzureStoreTest, LargeBlobGoesInParallelBlocksAndRangesWork) {
  auto store = Store(Options());
  ASSERT_NE(store, nullptr);
  std::string data = RandomBytes((5 << 20) + 4321, 2);  // 6 blocks of 1 MiB
  std::string key = Key();
  ASSERT_TRUE(PutBytes(*store, key, data, common::STORAGE_TIER_COLD, 300 * 1024).ok());
  std::string sdk = SdkGet(key);
  EXPECT_TRUE(absl::StrContains(sdk, core::Sha256Hex(data))) << sdk;
  EXPECT_TRUE(absl::StrContains(sdk, "\"accessTier\":\"Cold\"")) << sdk;
  auto all = GetBytes(*store, key);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(*all == data);
  EXPECT_EQ(*GetBytes(*store, key, (1 << 20) - 10, 20), data.substr((1 << 20) - 10, 20));
  EXPECT_EQ(*GetBytes(*store, key, data.size() - 7), data.substr(data.size() - 7));
}

TEST_F(AzureStoreTest, ReadsWhatTheSdkWrote) {
  auto store = Store(Options());
  ASSERT_NE(store, nullptr);
  std::string data = RandomBytes((9 << 20) + 5, 3);  // the SDK commits 3 blocks
  std::string file = ::testing::TempDir() + "/azure-sdk-" + core::NewId();
  std::ofstream(file, std::ios::binary) << data;
  std::string key = Key();
  ASSERT_TRUE(testing::RunNodeScript("azure.mjs", {"put", endpoint_, "cloudflux-test", key, file}).ok());
  auto back = GetBytes(*store, key);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == data);
  EXPECT_EQ(*GetBytes(*store, key, 8 << 20, 100), data.substr(8 << 20, 100));

  // An empty blob.
  std::string empty = ::testing::TempDir() + "/azure-empty-" + core::NewId();
  std::ofstream(empty, std::ios::binary).flush();
  std::string empty_key = Key();
  ASSERT_TRUE(testing::RunNodeScript("azure.mjs", {"put", endpoint_, "cloudflux-test", empty_key, empty}).ok());
  EXPECT_EQ(*GetBytes(*store, empty_key), "");
}

TEST_F(AzureStoreTest, SetTierCopyAndDelete) {
  auto store = Store(Options());
  ASSERT_NE(store, nullptr);
  std::string data = RandomBytes(2 << 20, 4);
  std::string key = Key();
  ASSERT_TRUE(PutBytes(*store, key, data).ok());
  EXPECT_TRUE(absl::StrContains(SdkGet(key), "\"accessTier\":\"Hot\""));

  std::string copy = Key();
  ASSERT_TRUE(store->CopyWithin(key, copy, common::STORAGE_TIER_WARM, static_cast<int64_t>(data.size())).ok());
  std::string sdk = SdkGet(copy);
  EXPECT_TRUE(absl::StrContains(sdk, core::Sha256Hex(data))) << sdk;
  EXPECT_TRUE(absl::StrContains(sdk, "\"accessTier\":\"Cool\"")) << sdk;

  ASSERT_TRUE(store->SetTier(key, common::STORAGE_TIER_COLD, 0).ok());
  EXPECT_TRUE(absl::StrContains(SdkGet(key), "\"accessTier\":\"Cold\""));
  ASSERT_TRUE(store->SetTier(key, common::STORAGE_TIER_ARCHIVE, 0).ok());
  // An archived blob must be rehydrated before it can be read.
  EXPECT_EQ(GetBytes(*store, key).status().code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE(store->Delete(key).ok());
  ASSERT_TRUE(store->Delete(key).ok()) << "deleting a missing blob is fine";
  EXPECT_EQ(GetBytes(*store, key).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->SetTier(key, common::STORAGE_TIER_HOT, 0).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(*GetBytes(*store, copy) == data) << "the copy is independent";
}

// Rehydration is Set Blob Tier out of Archive with a priority (azurite, like
// Azure, answers 202; it moves the blob at once where Azure takes hours).
TEST_F(AzureStoreTest, RestoreRehydratesAnArchivedBlobIntoTheOnlineTier) {
  auto store = Store(Options());
  ASSERT_NE(store, nullptr);
  std::string data = RandomBytes(1 << 20, 5);
  std::string key = Key();
  ASSERT_TRUE(PutBytes(*store, key, data, common::STORAGE_TIER_ARCHIVE).ok());
  ASSERT_EQ(GetBytes(*store, key).status().code(), absl::StatusCode::kFailedPrecondition);
  auto before = store->ReadStateOf(key);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->state, ReadState::State::kNeedsRestore);
  EXPECT_TRUE(store->RestoresAfterTierChange());
  auto restored = store->Restore(
      key, {.priority = RestoreOptions::Priority::kHigh, .online_tier = common::STORAGE_TIER_WARM});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->state, RestoreResult::State::kStarted);
  EXPECT_TRUE(restored->tier_changed);
  EXPECT_TRUE(absl::StrContains(SdkGet(key), "\"accessTier\":\"Cool\"")) << SdkGet(key);
  EXPECT_TRUE(*GetBytes(*store, key) == data);
  auto after = store->ReadStateOf(key);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->state, ReadState::State::kReadable);
  EXPECT_EQ(store->ReadStateOf(Key()).status().code(), absl::StatusCode::kNotFound);
  // Not archived (any more): Set Blob Tier answers 200, nothing to wait for.
  auto again = store->Restore(key, {.online_tier = common::STORAGE_TIER_WARM});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->state, RestoreResult::State::kReadable);
  EXPECT_EQ(store->Restore(Key(), {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(AzureStoreTest, AbortedBlockUploadLeavesNothingVisible) {
  auto store = Store(Options());
  ASSERT_NE(store, nullptr);
  std::string key = Key();
  {
    auto w = store->StartWrite(key, common::STORAGE_TIER_HOT);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(RandomBytes(3 << 20, 5)).ok());  // blocks are sent
    (*w)->Abort();
  }
  EXPECT_EQ(GetBytes(*store, key).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SdkGet(key), "");
}

TEST_F(AzureStoreTest, BadCredentialsContainerAndConfig) {
  AzureOptions wrong = Options();
  wrong.account_key = "d3Jvbmcga2V5IHdyb25nIGtleQ==";
  auto bad = Store(wrong);
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(PutBytes(*bad, Key(), "x").code(), absl::StatusCode::kPermissionDenied);
  absl::Status ping = bad->Ping();
  EXPECT_FALSE(ping.ok());
  EXPECT_FALSE(absl::StrContains(ping.message(), testing::kAzuriteKey)) << "no secret in errors";

  AzureOptions missing = Options();
  missing.container = "no-such-container";
  auto none = Store(missing);
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(none->Ping().code(), absl::StatusCode::kNotFound);

  AzureOptions o = Options();
  o.container = "Bad_Name";
  EXPECT_EQ(MakeAzureStore(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.account_key = "not base64!";
  EXPECT_EQ(MakeAzureStore(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.account = "";
  EXPECT_EQ(MakeAzureStore(o).status().code(), absl::StatusCode::kInvalidArgument);

  AzureOptions unreachable = Options();
  unreachable.endpoint = "http://127.0.0.1:9";
  auto down = Store(unreachable);
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->Ping().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace cloudflux::storage
