#pragma once
// GbmModel: one gradient-boosted tree ensemble trained and evaluated with
// XGBoost's C API (Debian's libxgboost-dev), behind this header. Models are
// saved to and loaded from bytes (XGBoost's JSON format), so that they can be
// stored as objects. Predict is thread-safe (XGBoost's in-place prediction);
// `threads` is XGBoost's own threads while training.

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace cloudflux::prediction {

// A dense row-major matrix of features.
struct FeatureMatrix {
  size_t cols = 0;
  std::vector<float> values;  // rows * cols
  size_t rows() const { return cols == 0 ? 0 : values.size() / cols; }
  void AddRow(const std::vector<float>& row) { values.insert(values.end(), row.begin(), row.end()); }
};

struct GbmParams {
  // reg:tweedie (counts with many zeros), count:poisson, binary:logistic
  // (probabilities), reg:squarederror.
  std::string objective = "reg:tweedie";
  // Fewer, deeper trees at a higher rate: within about 1 % of the accuracy
  // of 100 trees of depth 6 at 0.1 on the generated traces, and 1.6x faster
  // to forecast with (bench/RESULTS.md, "Fewer, deeper trees").
  int rounds = 40;
  int max_depth = 7;
  double learning_rate = 0.2;
  double tweedie_variance_power = 1.3;
  double subsample = 0.8;
  double min_child_weight = 1;
  int threads = 2;
  uint64_t seed = 7;
};

class GbmModel {
 public:
  GbmModel();
  ~GbmModel();
  GbmModel(GbmModel&&) noexcept;
  GbmModel& operator=(GbmModel&&) noexcept;

  // INVALID_ARGUMENT for mismatched shapes or an empty set; INTERNAL with
  // XGBoost's message otherwise.
  static absl::StatusOr<GbmModel> Train(const FeatureMatrix& x, const std::vector<float>& y,
                                        const GbmParams& params);
  // The same on the first `rows` rows of a row-major array (no copy).
  // `cancel` (may be null) is looked at before each round: once true,
  // CANCELLED.
  static absl::StatusOr<GbmModel> Train(const float* values, size_t rows, size_t cols,
                                        const std::vector<float>& y, const GbmParams& params,
                                        const std::atomic<bool>* cancel = nullptr);
  static absl::StatusOr<GbmModel> Load(std::string_view bytes);

  // One prediction per row (the mean for regression, the probability for
  // binary:logistic).
  absl::StatusOr<std::vector<float>> Predict(const FeatureMatrix& x) const;
  absl::StatusOr<std::string> Save() const;

 private:
  struct Handle;
  std::unique_ptr<Handle> handle_;
};

}  // namespace cloudflux::prediction
