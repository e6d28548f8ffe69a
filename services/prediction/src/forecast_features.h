#pragma once
// The learned model's inputs for one object at one forecast origin (the
// first day to forecast), computed only from days before the origin, and
// its targets, computed only from the origin on. One place for both, so that
// training rows and live forecasts are built the same way.

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cloudflux::prediction {

// What is known of an object besides its own reads.
struct ObjectContext {
  int64_t size_bytes = 0;
  int age_days = 0;          // days since it was written, at the origin
  int origin_weekday = 0;    // 0..6 of the origin day
  // Mean reads per object and day of the object's prefix group and of its
  // namespace over the 7 and 28 days before the origin (what carries a new
  // object).
  double group_mean_7 = 0, group_mean_28 = 0;
  double namespace_mean_7 = 0, namespace_mean_28 = 0;
};

// Feature names, in the order Features() writes them.
const std::vector<std::string>& FeatureNames();

// The position of the named feature in FeatureNames() (and in every row).
size_t FeatureIndex(std::string_view name);

// The features of the object whose daily reads before the origin are
// `history` (oldest first; the last element is the day before the origin).
std::vector<float> Features(std::span<const double> history, const ObjectContext& context);

// The forecast windows: each of the next 7 days, then the sums over 30, 90
// and 180 days (the minimum storage durations of IA, Glacier IR and Deep
// Archive classes).
inline constexpr int kDailyHorizons = 7;
inline constexpr std::array<int, 3> kSumWindows = {30, 90, 180};
inline constexpr int kTargets = kDailyHorizons + static_cast<int>(kSumWindows.size());
// Window length (days) of target `t`.
inline int TargetDays(int t) { return t < kDailyHorizons ? 1 : kSumWindows[t - kDailyHorizons]; }
// First day (offset from the origin) of target `t`.
inline int TargetStart(int t) { return t < kDailyHorizons ? t : 0; }

// Activity classes intervals are calibrated per: no read in the last 90
// days, reads on fewer than half of the last 28 days, or more.
enum class Activity { kNeverRead = 0, kIntermittent = 1, kSteady = 2 };
inline constexpr int kActivityClasses = 3;
Activity ClassifyActivity(std::span<const double> history);

}  // namespace cloudflux::prediction
