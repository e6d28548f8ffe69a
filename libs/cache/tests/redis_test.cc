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

std::unique_ptr<TrackedValues> Track(RedisClient& redis, const std::string& prefix) {
  auto tracked = TrackedValues::Create(redis, {.prefixes = {prefix}});
  EXPECT_TRUE(tracked.ok()) << tracked.status();
  EXPECT_TRUE(testing::WaitFor([&] { return (*tracked)->tracking(); }, absl::Seconds(5)));
  return std::move(*tracked);
}

// Reads `key` through `tracked` until it shows `want` (the invalidation
// travels asynchronously); a stale value served from memory never would.
bool EventuallyReads(TrackedValues& tracked, const std::string& key,
                     const std::optional<std::string>& want) {
  return testing::WaitFor(
      [&] {
        auto got = tracked.Get({key});
        return got.ok() && (*got)[0] == want;
      },
      absl::Seconds(2));
}

// Whether `keys` are soon answered with `want` entirely from memory.
bool ServedFromMemory(TrackedValues& tracked, const std::vector<std::string>& keys,
                      const std::vector<std::optional<std::string>>& want) {
  return testing::WaitFor(
      [&] {
        int64_t hits = tracked.hits();
        auto got = tracked.Get(keys);
        return got.ok() && *got == want && tracked.hits() == hits + static_cast<int64_t>(keys.size());
      },
      absl::Seconds(2));
}

TEST(TrackedValues, ServesFromMemoryUntilAnotherClientChangesTheKey) {
  auto redis = Client();
  auto writer = Client(1);
  std::string prefix = Key("tracked") + ":";
  auto tracked = Track(*redis, prefix);
  std::string a = prefix + "a", b = prefix + "b";
  ASSERT_TRUE(writer->Set(a, "1").ok());

  auto first = tracked->Get({a, b});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)[0], std::optional<std::string>("1"));
  EXPECT_EQ((*first)[1], std::nullopt);
  // Both values, the absent one too, are soon served from memory (a value
  // read while the invalidation of the SET above arrived is not kept).
  EXPECT_TRUE(ServedFromMemory(*tracked, {a, b}, *first));

  // Written, created, counted, deleted and expired by someone else: each
  // change reaches this process.
  ASSERT_TRUE(writer->Set(a, "2").ok());
  EXPECT_TRUE(EventuallyReads(*tracked, a, "2"));
  ASSERT_TRUE(writer->IncrementWithExpiry(b, absl::Seconds(30)).ok());
  EXPECT_TRUE(EventuallyReads(*tracked, b, "1"));
  ASSERT_TRUE(writer->IncrementWithExpiry(b, absl::Seconds(30)).ok());
  EXPECT_TRUE(EventuallyReads(*tracked, b, "2"));
  ASSERT_TRUE(writer->Delete(a).ok());
  EXPECT_TRUE(EventuallyReads(*tracked, a, std::nullopt));
  ASSERT_TRUE(writer->Set(a, "short", absl::Milliseconds(100)).ok());
  EXPECT_TRUE(EventuallyReads(*tracked, a, "short"));
  EXPECT_TRUE(EventuallyReads(*tracked, a, std::nullopt)) << "expired in Redis, so here too";
  EXPECT_TRUE(ServedFromMemory(*tracked, {a}, {std::nullopt}));
  tracked->Forget({a});
  int64_t hits = tracked->hits();
  ASSERT_TRUE(tracked->Get({a}).ok());
  EXPECT_EQ(tracked->hits(), hits) << "forgotten, so read from Redis";
}

TEST(TrackedValues, KeysOutsideThePrefixesAlwaysComeFromRedis) {
  auto redis = Client();
  std::string prefix = Key("tracked") + ":";
  auto tracked = Track(*redis, prefix);
  std::string other = Key("untracked");
  ASSERT_TRUE(redis->Set(other, "x").ok());
  ASSERT_TRUE(tracked->Get({other}).ok());
  ASSERT_TRUE(tracked->Get({other}).ok());
  EXPECT_EQ(tracked->hits(), 0);
  ASSERT_TRUE(redis->Set(other, "y").ok());
  auto got = tracked->Get({other});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0], std::optional<std::string>("y"));
}

TEST(TrackedValues, ALostSubscriptionServesNothingStaleAndResubscribes) {
  auto redis = Client();
  auto writer = Client(1);
  std::string prefix = Key("tracked") + ":";
  auto tracked = Track(*redis, prefix);
  std::string key = prefix + "k";
  ASSERT_TRUE(writer->Set(key, "before").ok());
  ASSERT_TRUE(tracked->Get({key}).ok());

  // The tracking connection goes away and its invalidations with it: once
  // the loss is noticed the kept value is dropped, so the change made while
  // nobody listened is read (a kept value would be served forever).
  ASSERT_TRUE(writer->Command({"CLIENT", "KILL", "TYPE", "pubsub"}).ok());
  ASSERT_TRUE(writer->Set(key, "after").ok());
  EXPECT_TRUE(EventuallyReads(*tracked, key, "after"));
  EXPECT_TRUE(testing::WaitFor([&] { return tracked->tracking(); }, absl::Seconds(5)));
  ASSERT_TRUE(writer->Set(key, "again").ok());
  EXPECT_TRUE(EventuallyReads(*tracked, key, "again"));
}

TEST(TrackedValues, RejectsNoPrefixAndSurvivesAnUnreachableServer) {
  auto redis = Client();
  EXPECT_EQ(TrackedValues::Create(*redis, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TrackedValues::Create(*redis, {.prefixes = {""}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  RedisOptions o;
  o.address = "127.0.0.1:" + std::to_string(testing::PickFreePort());
  o.connect_timeout = absl::Milliseconds(200);
  o.command_timeout = absl::Milliseconds(200);
  auto down = std::move(*RedisClient::Create(o));
  auto tracked = TrackedValues::Create(*down, {.prefixes = {"p:"}});
  ASSERT_TRUE(tracked.ok());
  EXPECT_EQ((*tracked)->Get({"p:x"}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE((*tracked)->tracking());
}

}  // namespace
}  // namespace cloudflux::cache
