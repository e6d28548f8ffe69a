#pragma once
// When a job may start objects and how fast: maintenance windows (UTC hours)
// and bandwidth timetables by weekday and hour.

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cloudflux/migration/v1/migration.pb.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace cloudflux::migration {

using Timetable = google::protobuf::RepeatedPtrField<cloudflux::migration::v1::BandwidthSlot>;

// Whether `now` falls in UTC hours [start, end), wrapping past midnight when
// start > end; start == end is any time.
bool InHourWindow(int start_hour, int end_hour, absl::Time now);

// INVALID_ARGUMENT unless both hours are 0..23.
absl::Status CheckWindow(int start_hour, int end_hour);

// INVALID_ARGUMENT for more than kMaxSlots slots, weekdays outside 1..7,
// hours outside 0..23 / 1..24 or not increasing, or a cap that is not
// positive.
inline constexpr int kMaxSlots = 32;
absl::Status CheckTimetable(const Timetable& slots);

// The cap at `now`: the first slot that holds (its own cap, or none when it
// has none), else `base`. nullopt = no cap.
std::optional<int64_t> BandwidthAt(std::optional<int64_t> base, const Timetable& slots, absl::Time now);

}  // namespace cloudflux::migration
