#include "schedule.h"

#include "absl/strings/str_cat.h"

namespace cloudflux::migration {

bool InHourWindow(int start_hour, int end_hour, absl::Time now) {
  if (start_hour == end_hour) return true;
  const int hour = absl::ToCivilHour(now, absl::UTCTimeZone()).hour();
  return start_hour < end_hour ? hour >= start_hour && hour < end_hour : hour >= start_hour || hour < end_hour;
}

absl::Status CheckWindow(int start_hour, int end_hour) {
  if (start_hour < 0 || start_hour > 23 || end_hour < 0 || end_hour > 23) {
    return absl::InvalidArgumentError("window hours must be 0..23");
  }
  return absl::OkStatus();
}

absl::Status CheckTimetable(const Timetable& slots) {
  if (slots.size() > kMaxSlots) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxSlots, " bandwidth slots"));
  }
  for (int i = 0; i < slots.size(); ++i) {
    const auto& s = slots[i];
    for (int day : s.weekdays()) {
      if (day < 1 || day > 7) {
        return absl::InvalidArgumentError(
            absl::StrCat("bandwidth slot ", i, ": weekdays are 1 (Monday) .. 7 (Sunday), not ", day));
      }
    }
    if (s.start_hour() < 0 || s.start_hour() > 23 || s.end_hour() <= s.start_hour() || s.end_hour() > 24) {
      return absl::InvalidArgumentError(absl::StrCat("bandwidth slot ", i, ": hours [", s.start_hour(), ", ",
                                                     s.end_hour(), ") must have 0 <= start < end <= 24"));
    }
    if (s.has_bandwidth_bytes_per_second() && s.bandwidth_bytes_per_second() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bandwidth slot ", i, ": bandwidth_bytes_per_second must be positive (unset = no cap)"));
    }
  }
  return absl::OkStatus();
}

std::optional<int64_t> BandwidthAt(std::optional<int64_t> base, const Timetable& slots, absl::Time now) {
  if (slots.empty()) return base;
  const absl::CivilHour at = absl::ToCivilHour(now, absl::UTCTimeZone());
  const absl::Weekday wd = absl::GetWeekday(at);
  // absl::Weekday counts from Monday = 0.
  const int iso = static_cast<int>(wd) + 1;
  for (const auto& s : slots) {
    bool day = s.weekdays().empty();
    for (int d : s.weekdays()) day = day || d == iso;
    if (!day || at.hour() < s.start_hour() || at.hour() >= s.end_hour()) continue;
    if (!s.has_bandwidth_bytes_per_second()) return std::nullopt;
    return s.bandwidth_bytes_per_second();
  }
  return base;
}

}  // namespace cloudflux::migration
