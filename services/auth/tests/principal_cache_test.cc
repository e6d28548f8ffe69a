#include "principal_cache.h"

#include <gtest/gtest.h>

#include "cloudflux/core/clock.h"

namespace cloudflux::auth {
namespace {

Credentials Named(const std::string& name, bool disabled = false) {
  Credentials c;
  c.principal.set_name(name);
  c.principal.set_disabled(disabled);
  c.client_secret_sha256 = "digest-of-" + name;
  return c;
}

class PrincipalCacheTest : public ::testing::Test {
 protected:
  core::ManualClock clock_;
  PrincipalCache cache_{absl::Seconds(60), 1000, clock_};
  int loads_ = 0;
  PrincipalCache::Loader Loader(Credentials c) {
    return [this, c]() -> absl::StatusOr<std::optional<Credentials>> {
      ++loads_;
      return c;
    };
  }
};

TEST_F(PrincipalCacheTest, NothingIsCachedUntilTheListenerIsUp) {
  ASSERT_TRUE(cache_.Get("svc", Loader(Named("svc"))).ok());
  ASSERT_TRUE(cache_.Get("svc", Loader(Named("svc"))).ok());
  EXPECT_EQ(loads_, 2);
  EXPECT_EQ(cache_.size(), 0u);
}

TEST_F(PrincipalCacheTest, CachesUntilInvalidatedOrExpired) {
  cache_.set_trusted(true);
  ASSERT_TRUE(cache_.Get("svc", Loader(Named("svc"))).ok());
  auto again = cache_.Get("svc", Loader(Named("svc", /*disabled=*/true)));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE((*again)->principal.disabled()) << "served from the cache";
  EXPECT_EQ(loads_, 1);

  cache_.Invalidate("svc");  // a NOTIFY: the principal changed
  again = cache_.Get("svc", Loader(Named("svc", true)));
  EXPECT_TRUE((*again)->principal.disabled());
  EXPECT_EQ(loads_, 2);

  clock_.Advance(absl::Seconds(61));  // backstop expiry
  again = cache_.Get("svc", Loader(Named("svc", false)));
  EXPECT_FALSE((*again)->principal.disabled());
  EXPECT_EQ(loads_, 3);
}

TEST_F(PrincipalCacheTest, ALoadThatRacedWithAChangeIsNotStored) {
  cache_.set_trusted(true);
  // The change is announced while the (old) row is being read.
  auto racing = [&]() -> absl::StatusOr<std::optional<Credentials>> {
    ++loads_;
    cache_.Invalidate("svc");
    return Named("svc");
  };
  ASSERT_TRUE(cache_.Get("svc", racing).ok());
  EXPECT_EQ(cache_.size(), 0u);
  ASSERT_TRUE(cache_.Get("svc", Loader(Named("svc"))).ok());
  EXPECT_EQ(loads_, 2);
}

TEST_F(PrincipalCacheTest, LosingTheListenerEmptiesTheCacheAndUnknownNamesAreNeverStored) {
  cache_.set_trusted(true);
  ASSERT_TRUE(cache_.Get("svc", Loader(Named("svc"))).ok());
  EXPECT_EQ(cache_.size(), 1u);
  cache_.set_trusted(false);
  EXPECT_EQ(cache_.size(), 0u);
  cache_.set_trusted(true);
  auto unknown = cache_.Get("nobody", [&]() -> absl::StatusOr<std::optional<Credentials>> {
    ++loads_;
    return std::nullopt;
  });
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(unknown->has_value());
  EXPECT_EQ(cache_.size(), 0u);
  // Errors pass through and are not stored either.
  auto failed = cache_.Get("svc2", []() -> absl::StatusOr<std::optional<Credentials>> {
    return absl::UnavailableError("db down");
  });
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(cache_.size(), 0u);
}

}  // namespace
}  // namespace cloudflux::auth
