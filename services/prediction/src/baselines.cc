#include "baselines.h"

#include <cmath>
#include <numeric>

namespace cloudflux::prediction {

std::vector<double> SeasonalNaive(std::span<const double> history, int horizon, int season) {
  std::vector<double> out(static_cast<size_t>(std::max(0, horizon)), 0.0);
  const int n = static_cast<int>(history.size());
  if (n == 0) return out;
  if (n < season) {
    double mean = std::accumulate(history.begin(), history.end(), 0.0) / n;
    std::fill(out.begin(), out.end(), mean);
    return out;
  }
  for (int h = 0; h < horizon; ++h) {
    int back = season * ((h + season) / season);  // season * ceil((h + 1) / season)
    out[h] = history[n + h - back];
  }
  return out;
}

TsbState Tsb(std::span<const double> history, const TsbParams& params) {
  TsbState s;
  for (size_t t = 0; t < history.size(); ++t) {
    const double y = history[t];
    if (!s.started) {
      if (y > 0) {
        s.started = true;
        s.probability = 1.0 / static_cast<double>(t + 1);
        s.size = y;
      }
      continue;
    }
    if (y > 0) {
      s.probability += params.beta * (1.0 - s.probability);
      s.size += params.alpha * (y - s.size);
    } else {
      s.probability -= params.beta * s.probability;
    }
  }
  return s;
}

std::vector<double> TsbForecast(std::span<const double> history, int horizon, const TsbParams& params) {
  return std::vector<double>(static_cast<size_t>(std::max(0, horizon)), Tsb(history, params).forecast());
}

double Rmsse(std::span<const double> history, std::span<const double> actual, std::span<const double> forecast) {
  if (history.size() < 2 || actual.empty() || actual.size() != forecast.size()) return -1;
  double scale = 0;
  for (size_t t = 1; t < history.size(); ++t) scale += (history[t] - history[t - 1]) * (history[t] - history[t - 1]);
  scale /= static_cast<double>(history.size() - 1);
  if (scale <= 0) return -1;
  double err = 0;
  for (size_t h = 0; h < actual.size(); ++h) err += (actual[h] - forecast[h]) * (actual[h] - forecast[h]);
  err /= static_cast<double>(actual.size());
  return std::sqrt(err / scale);
}

}  // namespace cloudflux::prediction
