#include "schedule.h"

#include <gtest/gtest.h>

namespace cloudflux::migration {
namespace {

namespace v1 = cloudflux::migration::v1;

absl::Time At(int y, int m, int d, int h) { return absl::FromCivil(absl::CivilHour(y, m, d, h), absl::UTCTimeZone()); }

v1::BandwidthSlot Slot(std::vector<int> days, int start, int end, std::optional<int64_t> cap) {
  v1::BandwidthSlot s;
  for (int d : days) s.add_weekdays(d);
  s.set_start_hour(start);
  s.set_end_hour(end);
  if (cap.has_value()) s.set_bandwidth_bytes_per_second(*cap);
  return s;
}

TEST(Window, HoursWrapPastMidnightAndEqualHoursAreAnyTime) {
  EXPECT_TRUE(InHourWindow(0, 0, At(2026, 12, 7, 13)));
  EXPECT_TRUE(InHourWindow(2, 5, At(2026, 12, 7, 2)));
  EXPECT_TRUE(InHourWindow(2, 5, At(2026, 12, 7, 4)));
  EXPECT_FALSE(InHourWindow(2, 5, At(2026, 12, 7, 5)));
  EXPECT_FALSE(InHourWindow(2, 5, At(2026, 12, 7, 1)));
  EXPECT_TRUE(InHourWindow(22, 3, At(2026, 12, 7, 23)));
  EXPECT_TRUE(InHourWindow(22, 3, At(2026, 12, 7, 0)));
  EXPECT_FALSE(InHourWindow(22, 3, At(2026, 12, 7, 3)));
  EXPECT_FALSE(InHourWindow(22, 3, At(2026, 12, 7, 12)));
  EXPECT_TRUE(CheckWindow(23, 0).ok());
  EXPECT_EQ(CheckWindow(24, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckWindow(0, -1).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Timetable, TheFirstSlotThatHoldsSetsTheCapElseTheBase) {
  Timetable slots;
  // Weekdays 09-18: 1 MB/s; Saturday all day: no cap; every day 18-20: 5 MB/s.
  *slots.Add() = Slot({1, 2, 3, 4, 5}, 9, 18, 1'000'000);
  *slots.Add() = Slot({6}, 0, 24, std::nullopt);
  *slots.Add() = Slot({}, 18, 20, 5'000'000);
  ASSERT_TRUE(CheckTimetable(slots).ok());
  // 2026-12-07 is a Monday, 2026-12-12 a Saturday, 2026-12-13 a Sunday.
  EXPECT_EQ(BandwidthAt(10'000'000, slots, At(2026, 12, 7, 9)), 1'000'000);
  EXPECT_EQ(BandwidthAt(10'000'000, slots, At(2026, 12, 11, 17)), 1'000'000);
  EXPECT_EQ(BandwidthAt(10'000'000, slots, At(2026, 12, 7, 18)), 5'000'000);
  EXPECT_EQ(BandwidthAt(10'000'000, slots, At(2026, 12, 7, 8)), 10'000'000);
  EXPECT_EQ(BandwidthAt(10'000'000, slots, At(2026, 12, 12, 12)), std::nullopt);
  EXPECT_EQ(BandwidthAt(10'000'000, slots, At(2026, 12, 12, 19)), std::nullopt);  // Saturday's slot comes first
  EXPECT_EQ(BandwidthAt(std::nullopt, slots, At(2026, 12, 13, 12)), std::nullopt);
  EXPECT_EQ(BandwidthAt(std::nullopt, slots, At(2026, 12, 13, 19)), 5'000'000);
  EXPECT_EQ(BandwidthAt(7, Timetable(), At(2026, 12, 13, 19)), 7);
}

TEST(Timetable, BadSlotsAreRefused) {
  auto refused = [](v1::BandwidthSlot s) {
    Timetable slots;
    *slots.Add() = std::move(s);
    return CheckTimetable(slots).code() == absl::StatusCode::kInvalidArgument;
  };
  EXPECT_TRUE(refused(Slot({0}, 1, 2, 5)));
  EXPECT_TRUE(refused(Slot({8}, 1, 2, 5)));
  EXPECT_TRUE(refused(Slot({}, 5, 5, 5)));
  EXPECT_TRUE(refused(Slot({}, 6, 5, 5)));
  EXPECT_TRUE(refused(Slot({}, -1, 5, 5)));
  EXPECT_TRUE(refused(Slot({}, 23, 25, 5)));
  EXPECT_TRUE(refused(Slot({}, 1, 2, 0)));
  EXPECT_TRUE(refused(Slot({}, 1, 2, -3)));
  EXPECT_FALSE(refused(Slot({7}, 23, 24, std::nullopt)));
  Timetable many;
  for (int i = 0; i <= kMaxSlots; ++i) *many.Add() = Slot({}, 1, 2, 5);
  EXPECT_EQ(CheckTimetable(many).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cloudflux::migration
