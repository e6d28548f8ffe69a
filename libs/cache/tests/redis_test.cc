#include <gtest/gtest.h>

#include <thread>

#include "cloudflux/cache/redis.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/testing/testing.h"

namespace cloudflux::cache {
namespace {

std::unique_ptr<RedisClient> Client(int pool_size = 4) {
  auto address = testing::TestRedisAddress();
  EXPECT_TRUE(address.ok()) << address.status();
  RedisOptions o;
  o.address = address.value_or("");
  o.pool_size = pool_size;
  auto c = RedisClient::Create(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(*c);
}

std::string Key(const std::string& name) { return "test:" + core::NewId() + ":" + name; }

TEST(Redis, SetGetBinaryValuesAndMissingKeys) {
  auto redis = Client();
  ASSERT_TRUE(redis->Ping(absl::Seconds(1)).ok());
  std::string key = Key("bin");
  std::string value("a\0b\r\n\xff", 6);
  ASSERT_TRUE(redis->Set(key, value).ok());
  auto got = redis->Get(key);
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, value);
  EXPECT_FALSE(redis->Get(Key("missing"))->has_value());
  EXPECT_EQ(*redis->Delete(key), 1);
  EXPECT_FALSE(*redis->Exists(key));
}

TEST(Redis, ExpiryAndSetIfAbsent) {
  auto redis = Client();
  std::string key = Key("ttl");
  ASSERT_TRUE(redis->Set(key, "v", absl::Milliseconds(150)).ok());
  auto ttl = redis->Ttl(key);
  ASSERT_TRUE(ttl.ok() && ttl->has_value());
  EXPECT_LE(**ttl, absl::Milliseconds(150));
  EXPECT_FALSE(*redis->SetIfAbsent(key, "other", absl::Seconds(5)));
  EXPECT_TRUE(testing::WaitFor([&] { return !*redis->Exists(key); }, absl::Seconds(3)));
  EXPECT_TRUE(*redis->SetIfAbsent(key, "other", absl::Seconds(5)));
  EXPECT_EQ(**redis->Get(key), "other");
}

TEST(Redis, FixedWindowCounterIsAtomicAcrossThreads) {
  auto redis = Client(4);
  std::string key = Key("counter");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) ASSERT_TRUE(redis->IncrementWithExpiry(key, absl::Seconds(30)).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(**redis->Get(key), "100");
  auto ttl = *redis->Ttl(key);
  ASSERT_TRUE(ttl.has_value());
  EXPECT_GT(*ttl, absl::Seconds(20)) << "the window starts at the first increment only";
}

TEST(Redis, ErrorsMapToStatusCodes) {
  auto redis = Client();
  std::string key = Key("list");
  ASSERT_TRUE(redis->Command({"LPUSH", key, "x"}).ok());
  EXPECT_EQ(redis->IncrementWithExpiry(key, absl::Seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(redis->Get(key).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(redis->Command({"NOSUCHCOMMAND"}).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(redis->Command({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisClient::Create({.address = "no-port"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Redis, ReconnectsAfterTheServerDropsConnections) {
  auto redis = Client(1);
  std::string key = Key("reconnect");
  ASSERT_TRUE(redis->Set(key, "before").ok());
  // Another client kills every normal connection, ours included.
  auto killer = Client(1);
  ASSERT_TRUE(killer->Command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}).ok());
  auto got = redis->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(**got, "before");
}

TEST(Redis, UnreachableServerIsUnavailable) {
  RedisOptions o;
  o.address = "127.0.0.1:" + std::to_string(testing::PickFreePort());
  auto redis = std::move(*RedisClient::Create(o));
  EXPECT_EQ(redis->Ping(absl::Milliseconds(500)).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace cloudflux::cache
