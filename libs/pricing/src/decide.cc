#include "cloudflux/pricing/decide.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cloudflux::pricing {

constexpr double kPriorReads = 1;
constexpr double kPriorDays = 30;
constexpr double kBurstDays = 14;
constexpr double kTrustedForecast = 0.5;

Usage EstimateUsage(const AccessStats& stats, double horizon_days, const std::optional<Forecast>& forecast) {
  // The long-run rate: the last 90 days with a prior of one read a month
  // worth 30 days of evidence, so that a quiet spell lowers it gradually.
  double long_run = (static_cast<double>(stats.reads_90d) + kPriorReads) /
                    (std::clamp(stats.age_days, 0.0, 90.0) + kPriorDays);
  // Quiet for longer than the window: all of the quiet spell is evidence.
  if (stats.reads_90d == 0 && stats.days_since_last_read > 90) {
    long_run = kPriorReads / (stats.days_since_last_read + kPriorDays);
  }
  // The recent rate catches bursts; one read in a week is not one.
  double recent = static_cast<double>(stats.reads_7d) / (std::clamp(stats.age_days, 0.0, 7.0) + 7);
  // A burst is expected to last about two weeks, then the long-run rate.
  double near = std::min(horizon_days, kBurstDays);
  double reads = std::max(long_run, recent) * near + long_run * (horizon_days - near);
  if (forecast.has_value()) {
    double c = std::clamp(forecast->confidence, 0.0, 1.0);
    reads = c * forecast->reads_next_7d / 7 * horizon_days + (1 - c) * reads;
  }
  Usage u;
  u.reads = reads;
  u.bytes_read = u.reads * static_cast<double>(stats.size);
  return u;
}

absl::StatusOr<TierPolicy::ForecastRole> ParseForecastRole(std::string_view name) {
  if (name == "decides") return TierPolicy::ForecastRole::kDecides;
  if (name == "confirms") return TierPolicy::ForecastRole::kConfirms;
  if (name == "vetoes") return TierPolicy::ForecastRole::kVetoes;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown forecast role '", absl::CHexEscape(absl::string_view(name.data(), name.size())), "' (decides, confirms or vetoes)"));
}

Decision Decide(const PriceCatalog& catalog, const AccessStats& stats, const Placement& current,
                const TierPolicy& policy, const std::optional<Forecast>& forecast) {
  if (policy.forecast_role != TierPolicy::ForecastRole::kDecides && forecast.has_value() && current.cls != nullptr) {
    TierPolicy plain = policy;
    plain.forecast_role = TierPolicy::ForecastRole::kDecides;
    Decision counts = Decide(catalog, stats, current, plain, std::nullopt);
    if (!counts.move) return counts;
    Decision both = Decide(catalog, stats, current, plain, forecast);
    if (both.move) return policy.forecast_role == TierPolicy::ForecastRole::kConfirms ? both : counts;
    counts.move = false;
    counts.target = current.cls;
    counts.target_monthly = counts.current_monthly;
    counts.saving = 0;
    counts.reason = absl::StrCat("the forecast does not confirm the move the counts suggest: ", both.reason);
    return counts;
  }
  Decision d;
  d.expected = EstimateUsage(stats, policy.horizon_days, forecast);
  // A pinned tier is named by the operator: an opt-in one counts as allowed.
  Constraints constraints = policy.constraints;
  if (policy.pinned_tier.has_value()) constraints.opt_in_tiers.erase(*policy.pinned_tier);
  d.candidates = PriceCandidates(catalog, stats.size, current, d.expected, policy.horizon_days, constraints);
  const CostBreakdown* now = nullptr;
  for (const auto& c : d.candidates) {
    if (c.is_current) now = &c;
  }
  d.target = current.cls;
  if (now != nullptr) d.current_monthly = d.target_monthly = now->monthly;
  // Recommends candidate `c` (its saving against the current placement).
  auto choose = [&](const CostBreakdown& c) {
    d.target = c.cls;
    d.move = true;
    d.target_monthly = c.monthly;
    d.saving = now != nullptr ? now->total - c.total : 0;
  };
  auto describe = [&](const char* why) {
    d.reason = absl::StrFormat("%s; %.1f reads expected in %.0f days", why, d.expected.reads,
                               policy.horizon_days);
  };
  if (policy.pinned_tier.has_value()) {
    const ClassPrice* pinned =
        current.cls == nullptr ? nullptr : catalog.ForTier(current.cls->cloud(), *policy.pinned_tier);
    for (const auto& c : d.candidates) {
      if (c.cls == pinned && !c.is_current) choose(c);
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
  // A forecast the prediction service is confident in knows more than the
  // caution below, which is for objects nothing is known about.
  const bool foreseen = forecast.has_value() && forecast->confidence >= kTrustedForecast;
  if (current.cls == nullptr) {
    // A new object: nothing is known about its reads yet, so only classes
    // where reads cost nothing extra and that commit to no minimum.
    const CostBreakdown* safe = nullptr;
    for (const auto& c : d.candidates) {
      if (foreseen || (c.cls->retrieval_per_gb() == 0 && c.cls->min_storage_days() == 0)) {
        safe = &c;
        break;
      }
    }
    if (safe == nullptr) safe = best;
    choose(*safe);
    d.reason = absl::StrFormat("%s is the cheapest place to write it (%.1f reads expected in %.0f days)",
                               ClassName(*safe->cls), d.expected.reads, policy.horizon_days);
    return d;
  }
  if (!current_allowed) {
    choose(*best);
    describe("the current class misses the latency requirement");
    return d;
  }
  if (!policy.auto_tiering) {
    describe("auto-tiering is off");
    return d;
  }
  if (stats.age_days < policy.min_observed_days && !foreseen) {
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
  choose(*best);
  d.reason = absl::StrFormat(
      "%s saves $%.6f over %.0f days after a $%.6f move (%.1f reads expected)", ClassName(*best->cls),
      saving, policy.horizon_days, best->move(), d.expected.reads);
  return d;
}

}  // namespace cloudflux::pricing
