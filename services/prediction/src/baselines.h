#pragma once
// The forecasts every learned forecast is scored against, which also serve
// objects too new or too quiet for the learned model: seasonal naive (the
// same weekday one season back) and TSB (Teunter, Syntetos & Babai 2011),
// the intermittent-demand method that updates the probability of a read and
// the size of a read separately, so that its forecast decays through runs of
// zero days (Croston's does not). Pure functions of the history given: a
// forecast from days [0, n) never looks at day n or later.

#include <span>
#include <vector>

namespace cloudflux::prediction {

// y[n + h] = y[n + h - season * ceil((h + 1) / season)] for h in [0, horizon):
// each day repeats the same weekday of the last full season observed. A
// history shorter than one season repeats its mean.
std::vector<double> SeasonalNaive(std::span<const double> history, int horizon, int season = 7);

struct TsbParams {
  double alpha = 0.1;  // smoothing of the size of a read day's count
  double beta = 0.1;   // smoothing of the probability of a read day
};

struct TsbState {
  double probability = 0;  // of a day with reads
  double size = 0;         // reads on such a day
  bool started = false;    // a day with reads was seen
  double forecast() const { return probability * size; }
};

// Runs TSB over `history`. It starts at the first day with reads: the
// probability is 1 / (that day's index + 1), the size its count; each later
// day moves the probability towards 1 or 0 by beta and, on a read day, the
// size towards its count by alpha. Before any read the forecast is 0.
TsbState Tsb(std::span<const double> history, const TsbParams& params = {});

// The same forecast for each of `horizon` days.
std::vector<double> TsbForecast(std::span<const double> history, int horizon, const TsbParams& params = {});

// Root mean squared scaled error of `forecast` against `actual`, scaled by
// the in-sample one-step naive error of `history` (M5's RMSSE); nullopt-like
// -1 when the history has no variation to scale by.
double Rmsse(std::span<const double> history, std::span<const double> actual, std::span<const double> forecast);

}  // namespace cloudflux::prediction
