#include "forecast_features.h"

#include <algorithm>
#include <cmath>

#include "baselines.h"

namespace cloudflux::prediction {

namespace {

constexpr std::array<int, 9> kLags = {1, 2, 3, 4, 5, 6, 7, 14, 28};
constexpr std::array<int, 3> kWindows = {7, 28, 90};
constexpr double kNoReadYet = 1000;  // days since the last read when there was none

// The last `days` values of `h` (fewer if it is shorter).
std::span<const double> Last(std::span<const double> h, int days) {
  size_t n = std::min(h.size(), static_cast<size_t>(days));
  return h.subspan(h.size() - n, n);
}

}  // namespace

const std::vector<std::string>& FeatureNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (int lag : kLags) n.push_back("lag_" + std::to_string(lag));
    for (int w : kWindows) n.push_back("mean_" + std::to_string(w));
    for (int w : kWindows) n.push_back("std_" + std::to_string(w));
    for (int w : kWindows) n.push_back("nonzero_share_" + std::to_string(w));
    for (const char* x : {"days_since_read", "zero_run", "age_days", "log_size", "weekday",
                          "group_mean_7", "group_mean_28", "namespace_mean_7", "namespace_mean_28",
                          "tsb", "tsb_probability", "observed_days", "mean_all", "ewm_3", "ewm_14"}) {
      n.push_back(x);
    }
    return n;
  }();
  return names;
}

size_t FeatureIndex(std::string_view name) {
  const auto& names = FeatureNames();
  return static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
}

std::vector<float> Features(std::span<const double> history, const ObjectContext& context) {
  std::vector<float> f;
  f.reserve(FeatureNames().size());
  const int n = static_cast<int>(history.size());
  for (int lag : kLags) f.push_back(lag <= n ? static_cast<float>(history[n - lag]) : 0.f);
  double means[kWindows.size()];
  for (size_t i = 0; i < kWindows.size(); ++i) {
    auto w = Last(history, kWindows[i]);
    double sum = 0;
    for (double v : w) sum += v;
    means[i] = w.empty() ? 0 : sum / static_cast<double>(w.size());
    f.push_back(static_cast<float>(means[i]));
  }
  for (size_t i = 0; i < kWindows.size(); ++i) {
    auto w = Last(history, kWindows[i]);
    double var = 0;
    for (double v : w) var += (v - means[i]) * (v - means[i]);
    f.push_back(w.empty() ? 0.f : static_cast<float>(std::sqrt(var / static_cast<double>(w.size()))));
  }
  for (int w : kWindows) {
    auto last = Last(history, w);
    double nonzero = 0;
    for (double v : last) nonzero += v > 0;
    f.push_back(last.empty() ? 0.f : static_cast<float>(nonzero / static_cast<double>(last.size())));
  }
  int zero_run = 0;
  while (zero_run < n && history[n - 1 - zero_run] == 0) ++zero_run;
  f.push_back(static_cast<float>(zero_run == n ? kNoReadYet : zero_run + 1));
  f.push_back(static_cast<float>(zero_run));
  f.push_back(static_cast<float>(context.age_days));
  f.push_back(static_cast<float>(std::log1p(static_cast<double>(std::max<int64_t>(0, context.size_bytes)))));
  f.push_back(static_cast<float>(context.origin_weekday));
  f.push_back(static_cast<float>(context.group_mean_7));
  f.push_back(static_cast<float>(context.group_mean_28));
  f.push_back(static_cast<float>(context.namespace_mean_7));
  f.push_back(static_cast<float>(context.namespace_mean_28));
  TsbState tsb = Tsb(history);
  f.push_back(static_cast<float>(tsb.forecast()));
  f.push_back(static_cast<float>(tsb.probability));
  f.push_back(static_cast<float>(n));
  // The long-run rate over the whole history and exponentially weighted
  // means (half-lives of 3 and 14 days).
  double total = 0, ewm3 = 0, ewm14 = 0;
  const double a3 = 1 - std::exp2(-1.0 / 3), a14 = 1 - std::exp2(-1.0 / 14);
  for (double v : history) {
    total += v;
    ewm3 += a3 * (v - ewm3);
    ewm14 += a14 * (v - ewm14);
  }
  f.push_back(n == 0 ? 0.f : static_cast<float>(total / n));
  f.push_back(static_cast<float>(ewm3));
  f.push_back(static_cast<float>(ewm14));
  return f;
}

Activity ClassifyActivity(std::span<const double> history) {
  auto last90 = Last(history, 90);
  if (std::all_of(last90.begin(), last90.end(), [](double v) { return v == 0; })) return Activity::kNeverRead;
  auto last28 = Last(history, 28);
  double nonzero = 0;
  for (double v : last28) nonzero += v > 0;
  return nonzero * 2 < static_cast<double>(last28.size()) ? Activity::kIntermittent : Activity::kSteady;
}

}  // namespace cloudflux::prediction
