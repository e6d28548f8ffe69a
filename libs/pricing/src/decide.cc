#include "cloudflux/pricing/decide.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace cloudflux::pricing {

Usage EstimateUsage(const AccessStats& stats, double horizon_days, const std::optional<Forecast>& forecast) {
  auto rate = [&](int64_t reads, double window) {
    return static_cast<double>(reads) / std::clamp(stats.age_days, 1.0, window);
  };
  double per_day = 0.5 * rate(stats.reads_7d, 7) + 0.3 * rate(stats.reads_30d, 30) +
                   0.2 * rate(stats.reads_90d, 90);
  if (forecast.has_value()) {
    double c = std::clamp(forecast->confidence, 0.0, 1.0);
    per_day = c * forecast->reads_next_7d / 7 + (1 - c) * per_day;
  }
  Usage u;
  u.reads = per_day * horizon_days;
  u.bytes_read = u.reads * static_cast<double>(stats.size);
  return u;
}

Decision Decide(const PriceCatalog& catalog, const AccessStats& stats, const Placement& current,
                const TierPolicy& policy, const std::optional<Forecast>& forecast) {
  Decision d;
  d.expected = EstimateUsage(stats, policy.horizon_days, forecast);
  d.candidates =
      PriceCandidates(catalog, stats.size, current, d.expected, policy.horizon_days, policy.constraints);
  const CostBreakdown* now = nullptr;
  for (const auto& c : d.candidates) {
    if (c.is_current) now = &c;
  }
  d.target = current.cls;
  if (now != nullptr) d.current_monthly = d.target_monthly = now->monthly;
  auto describe = [&](const char* why) {
    d.reason = absl::StrFormat("%s; %.1f reads expected in %.0f days", why, d.expected.reads,
                               policy.horizon_days);
  };
  if (policy.pinned_tier.has_value()) {
    const ClassPrice* pinned =
        current.cls == nullptr ? nullptr : catalog.ForTier(current.cls->cloud(), *policy.pinned_tier);
    for (const auto& c : d.candidates) {
      if (c.cls == pinned && !c.is_current) {
        d.target = pinned;
        d.move = true;
        d.target_monthly = c.monthly;
        d.saving = (now != nullptr ? now->total : 0) - c.total;
      }
    }
    describe("the policy pins the tier");
    return d;
  }
  // The current class may no longer be allowed (a stricter latency need):
  // then the cheapest allowed one, whatever it saves.
  bool current_allowed =
      current.cls != nullptr &&
      (policy.constraints.max_first_byte_latency_ms == 0 ||
       current.cls->first_byte_latency_ms() <= policy.constraints.max_first_byte_latency_ms);
  const CostBreakdown* best = nullptr;
  for (const auto& c : d.candidates) {
    if (!c.is_current) {
      best = &c;
      break;
    }
  }
  if (best == nullptr) {
    describe("no other class is allowed");
    return d;
  }
  if (!current_allowed) {
    d.target = best->cls;
    d.move = true;
    d.target_monthly = best->monthly;
    d.saving = (now != nullptr ? now->total : 0) - best->total;
    describe("the current class misses the latency requirement");
    return d;
  }
  if (!policy.auto_tiering) {
    describe("auto-tiering is off");
    return d;
  }
  if (stats.age_days < policy.min_observed_days) {
    describe("the object is too young to judge");
    return d;
  }
  if (stats.size < policy.min_object_size) {
    describe("the object is below the policy's minimum size to move");
    return d;
  }
  double saving = now->total - best->total;
  if (saving <= 0 || saving <= policy.hysteresis * now->total) {
    describe(saving <= 0 ? "the current class is the cheapest"
                         : "the saving is within the hysteresis margin");
    return d;
  }
  d.target = best->cls;
  d.move = true;
  d.target_monthly = best->monthly;
  d.saving = saving;
  d.reason = absl::StrFormat(
      "%s saves $%.6f over %.0f days after a $%.6f move (%.1f reads expected)", ClassName(*best->cls),
      saving, policy.horizon_days, best->move(), d.expected.reads);
  return d;
}

}  // namespace cloudflux::pricing
