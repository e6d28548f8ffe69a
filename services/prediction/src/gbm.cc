#include "gbm.h"

#include <xgboost/c_api.h>

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace cloudflux::prediction {

namespace {

absl::Status Check(int rc, const char* what) {
  if (rc == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("xgboost ", what, ": ", XGBGetLastError()));
}

// A DMatrix over `x`, freed on destruction.
class DMatrix {
 public:
  static absl::StatusOr<std::unique_ptr<DMatrix>> From(const FeatureMatrix& x) {
    return From(x.values.data(), x.rows(), x.cols);
  }
  static absl::StatusOr<std::unique_ptr<DMatrix>> From(const float* values, size_t rows, size_t cols) {
    auto m = std::unique_ptr<DMatrix>(new DMatrix());
    absl::Status s = Check(XGDMatrixCreateFromMat(values, rows, cols, NAN, &m->handle_), "creating a matrix");
    if (!s.ok()) return s;
    return m;
  }
  ~DMatrix() {
    if (handle_ != nullptr) XGDMatrixFree(handle_);
  }
  DMatrixHandle get() const { return handle_; }

 private:
  DMatrix() = default;
  DMatrixHandle handle_ = nullptr;
};

}  // namespace

struct GbmModel::Handle {
  BoosterHandle booster = nullptr;
  mutable std::mutex mu;  // saving
  ~Handle() {
    if (booster != nullptr) XGBoosterFree(booster);
  }
};

GbmModel::GbmModel() : handle_(std::make_unique<Handle>()) {}
GbmModel::~GbmModel() = default;
GbmModel::GbmModel(GbmModel&&) noexcept = default;
GbmModel& GbmModel::operator=(GbmModel&&) noexcept = default;

absl::StatusOr<GbmModel> GbmModel::Train(const FeatureMatrix& x, const std::vector<float>& y,
                                         const GbmParams& params) {
  if (x.cols == 0 || x.values.size() % x.cols != 0) {
    return absl::InvalidArgumentError("training needs a non-empty feature matrix");
  }
  return Train(x.values.data(), x.rows(), x.cols, y, params);
}

absl::StatusOr<GbmModel> GbmModel::Train(const float* values, size_t rows, size_t cols,
                                         const std::vector<float>& y, const GbmParams& params,
                                         const std::atomic<bool>* cancel) {
  if (cols == 0 || rows == 0) return absl::InvalidArgumentError("training needs a non-empty feature matrix");
  if (y.size() != rows) return absl::InvalidArgumentError("one label per row is needed");
  auto data = DMatrix::From(values, rows, cols);
  if (!data.ok()) return data.status();
  absl::Status s = Check(XGDMatrixSetFloatInfo((*data)->get(), "label", y.data(), y.size()), "setting labels");
  if (!s.ok()) return s;
  GbmModel model;
  DMatrixHandle train[1] = {(*data)->get()};
  s = Check(XGBoosterCreate(train, 1, &model.handle_->booster), "creating a booster");
  if (!s.ok()) return s;
  const std::vector<std::pair<std::string, std::string>> settings = {
      {"objective", params.objective},
      {"tree_method", "hist"},
      {"max_depth", std::to_string(params.max_depth)},
      {"eta", absl::StrCat(params.learning_rate)},
      {"subsample", absl::StrCat(params.subsample)},
      {"min_child_weight", absl::StrCat(params.min_child_weight)},
      {"nthread", std::to_string(params.threads)},
      {"seed", std::to_string(params.seed)},
      {"verbosity", "0"},
  };
  for (const auto& [k, v] : settings) {
    s = Check(XGBoosterSetParam(model.handle_->booster, k.c_str(), v.c_str()), "setting a parameter");
    if (!s.ok()) return s;
  }
  // The first trees start from the labels' mean rather than XGBoost's 0.5
  // (1.7 does not estimate it): a few rounds then fit busy objects' counts
  // as well as many did. A log link needs it above 0, a logit inside (0, 1).
  double mean = 0;
  for (float v : y) mean += v;
  mean /= static_cast<double>(y.size());
  mean = params.objective == "binary:logistic" ? std::clamp(mean, 1e-6, 1 - 1e-6) : std::max(mean, 1e-6);
  s = Check(XGBoosterSetParam(model.handle_->booster, "base_score", absl::StrCat(mean).c_str()), "setting a parameter");
  if (!s.ok()) return s;
  if (params.objective == "reg:tweedie") {
    s = Check(XGBoosterSetParam(model.handle_->booster, "tweedie_variance_power",
                                absl::StrCat(params.tweedie_variance_power).c_str()),
              "setting a parameter");
    if (!s.ok()) return s;
  }
  for (int i = 0; i < params.rounds; ++i) {
    if (cancel != nullptr && cancel->load()) return absl::CancelledError("training cancelled");
    s = Check(XGBoosterUpdateOneIter(model.handle_->booster, i, (*data)->get()), "training");
    if (!s.ok()) return s;
  }
  return model;
}

absl::StatusOr<GbmModel> GbmModel::Load(std::string_view bytes) {
  GbmModel model;
  absl::Status s = Check(XGBoosterCreate(nullptr, 0, &model.handle_->booster), "creating a booster");
  if (!s.ok()) return s;
  if (XGBoosterLoadModelFromBuffer(model.handle_->booster, bytes.data(), bytes.size()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("not a model: ", XGBGetLastError()));
  }
  return model;
}

absl::StatusOr<std::vector<float>> GbmModel::Predict(const FeatureMatrix& x) const {
  if (x.rows() == 0) return std::vector<float>{};
  // In-place prediction on the caller's array: thread-safe in XGBoost, and
  // no matrix to build.
  const std::string array = absl::StrCat(R"({"data": [)", reinterpret_cast<uintptr_t>(x.values.data()),
                                         R"(, true], "shape": [)", x.rows(), ", ", x.cols,
                                         R"(], "typestr": "<f4", "version": 3})");
  static constexpr char kConfig[] =
      R"({"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false, "missing": NaN, "cache_id": 0})";
  const bst_ulong* shape = nullptr;
  bst_ulong dims = 0;
  const float* out = nullptr;
  absl::Status s = Check(
      XGBoosterPredictFromDense(handle_->booster, array.c_str(), kConfig, nullptr, &shape, &dims, &out),
      "predicting");
  if (!s.ok()) return s;
  return std::vector<float>(out, out + x.rows());
}

absl::StatusOr<std::string> GbmModel::Save() const {
  std::lock_guard lock(handle_->mu);
  bst_ulong n = 0;
  const char* out = nullptr;
  absl::Status s = Check(XGBoosterSaveModelToBuffer(handle_->booster, R"({"format": "json"})", &n, &out),
                         "saving");
  if (!s.ok()) return s;
  return std::string(out, n);
}

}  // namespace cloudflux::prediction
