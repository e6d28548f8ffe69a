#include "conformal.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cloudflux::prediction {

namespace {
double Scale(double forecast) { return std::sqrt(std::max(0.0, forecast) + 1.0); }

// The q-quantile of sorted `v` with the split-conformal correction
// ceil((n + 1) q) / n, clamped to the sample.
double Quantile(const std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  double n = static_cast<double>(v.size());
  double rank = std::ceil((n + 1) * q) - 1;
  rank = std::clamp(rank, 0.0, n - 1);
  return v[static_cast<size_t>(rank)];
}

void Thin(std::vector<double>& v, size_t keep) {
  if (v.size() <= keep) return;
  std::vector<double> out;
  out.reserve(keep);
  for (size_t i = 0; i < keep; ++i) out.push_back(v[i * (v.size() - 1) / (keep - 1)]);
  v.swap(out);
}
}  // namespace

void ConformalCalibrator::Add(int target, Activity activity, double forecast, double actual) {
  double r = (actual - forecast) / Scale(forecast);
  cells_[target][static_cast<int>(activity)].scaled.push_back(r);
  cells_[target][kActivityClasses].scaled.push_back(r);
}

void ConformalCalibrator::Finish() {
  for (auto& per_target : cells_) {
    for (Cell& c : per_target) {
      std::sort(c.scaled.begin(), c.scaled.end());
      Thin(c.scaled, kMaxKept);
    }
  }
}

size_t ConformalCalibrator::count(int target, Activity activity) const {
  return cells_[target][static_cast<int>(activity)].scaled.size();
}

const ConformalCalibrator::Cell& ConformalCalibrator::Resolve(int target, Activity activity) const {
  const Cell& own = cells_[target][static_cast<int>(activity)];
  return own.scaled.size() >= kMinCell ? own : cells_[target][kActivityClasses];
}

size_t ConformalCalibrator::LevelIndex(double level) {
  return std::abs(level - kIntervalLevels[0]) < 1e-9 ? 0 : 1;
}

Interval ConformalCalibrator::Bounds(int target, Activity activity, double forecast, double level) const {
  const Cell& c = Resolve(target, activity);
  double alpha = c.alpha[LevelIndex(level)];
  Interval out;
  if (alpha <= 0) {  // ACI has driven the level past any table: unbounded
    out.upper = std::numeric_limits<double>::infinity();
    return out;
  }
  alpha = std::min(alpha, 1.0);
  double s = Scale(forecast);
  // A hair outwards, so that an outcome equal to a calibration residual's
  // (ties are common: counts are whole) is inside, as split conformal has it.
  const double eps = 1e-9 * (1 + forecast);
  const double lower = forecast + Quantile(c.scaled, alpha / 2) * s - eps;
  // Reads cannot go below 0: where the lower tail's bound would, no outcome
  // misses on that side, and the whole miscoverage goes to the upper tail
  // (a two-sided split would cover every zero-read day on top of 1 - alpha).
  const double upper_q = lower <= 0 ? 1 - alpha : 1 - alpha / 2;
  out.lower = std::max(0.0, lower);
  out.upper = std::max(out.lower, forecast + Quantile(c.scaled, upper_q) * s + eps);
  return out;
}

void ConformalCalibrator::Update(int target, Activity activity, double level, bool covered, double gamma) {
  Cell& own = cells_[target][static_cast<int>(activity)];
  Cell& c = own.scaled.size() >= kMinCell ? own : cells_[target][kActivityClasses];
  // Gibbs & Candès: alpha may leave [0, 1] (below 0 the interval is
  // unbounded, above 1 a point), which is what lets coverage recover.
  double& alpha = c.alpha[LevelIndex(level)];
  alpha += gamma * ((1 - level) - (covered ? 0.0 : 1.0));
  alpha = std::clamp(alpha, -1.0, 2.0);
}

std::string ConformalCalibrator::Serialize() const {
  std::ostringstream out;
  out << std::setprecision(17) << "conformal v1\n";
  for (int t = 0; t < kTargets; ++t) {
    for (int a = 0; a <= kActivityClasses; ++a) {
      const Cell& c = cells_[t][a];
      out << t << ' ' << a << ' ' << c.alpha[0] << ' ' << c.alpha[1] << ' ' << c.scaled.size();
      for (double r : c.scaled) out << ' ' << r;
      out << '\n';
    }
  }
  return out.str();
}

absl::StatusOr<ConformalCalibrator> ConformalCalibrator::Parse(std::string_view text) {
  ConformalCalibrator out;
  std::vector<absl::string_view> lines =
      absl::StrSplit(absl::string_view(text.data(), text.size()), '\n', absl::SkipEmpty());
  if (lines.empty() || lines[0] != "conformal v1") return absl::InvalidArgumentError("not a conformal table");
  if (lines.size() != 1 + static_cast<size_t>(kTargets * (kActivityClasses + 1))) {
    return absl::InvalidArgumentError("conformal table of the wrong size");
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
    int t = 0, a = 0;
    size_t n = 0;
    if (f.size() < 5 || !absl::SimpleAtoi(f[0], &t) || !absl::SimpleAtoi(f[1], &a) || t < 0 ||
        t >= kTargets || a < 0 || a > kActivityClasses || !absl::SimpleAtoi(f[4], &n) || f.size() != 5 + n) {
      return absl::InvalidArgumentError(absl::StrCat("bad conformal line ", i));
    }
    Cell& c = out.cells_[t][a];
    if (!absl::SimpleAtod(f[2], &c.alpha[0]) || !absl::SimpleAtod(f[3], &c.alpha[1])) {
      return absl::InvalidArgumentError(absl::StrCat("bad conformal level on line ", i));
    }
    c.scaled.reserve(n);
    for (size_t k = 0; k < n; ++k) {
      double r = 0;
      if (!absl::SimpleAtod(f[5 + k], &r)) return absl::InvalidArgumentError(absl::StrCat("bad residual on line ", i));
      c.scaled.push_back(r);
    }
  }
  return out;
}

std::string ConformalCalibrator::SerializeLevels() const {
  std::ostringstream out;
  out << std::setprecision(17) << "levels v1\n";
  for (int t = 0; t < kTargets; ++t) {
    for (int a = 0; a <= kActivityClasses; ++a) {
      out << t << ' ' << a << ' ' << cells_[t][a].alpha[0] << ' ' << cells_[t][a].alpha[1] << '\n';
    }
  }
  return out.str();
}

absl::Status ConformalCalibrator::ParseLevels(std::string_view text) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(absl::string_view(text.data(), text.size()), '\n', absl::SkipEmpty());
  if (lines.empty() || lines[0] != "levels v1" ||
      lines.size() != 1 + static_cast<size_t>(kTargets * (kActivityClasses + 1))) {
    return absl::InvalidArgumentError("not a table of conformal levels");
  }
  std::array<std::array<std::array<double, kIntervalLevels.size()>, kActivityClasses + 1>, kTargets> levels{};
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
    int t = 0, a = 0;
    double lo = 0, hi = 0;
    if (f.size() != 4 || !absl::SimpleAtoi(f[0], &t) || !absl::SimpleAtoi(f[1], &a) || t < 0 || t >= kTargets ||
        a < 0 || a > kActivityClasses || !absl::SimpleAtod(f[2], &lo) || !absl::SimpleAtod(f[3], &hi) ||
        !std::isfinite(lo) || !std::isfinite(hi)) {
      return absl::InvalidArgumentError(absl::StrCat("bad conformal levels on line ", i));
    }
    levels[t][a] = {lo, hi};
  }
  for (int t = 0; t < kTargets; ++t) {
    for (int a = 0; a <= kActivityClasses; ++a) cells_[t][a].alpha = levels[t][a];
  }
  return absl::OkStatus();
}

}  // namespace cloudflux::prediction
