#pragma once
// Pieces the HTTP object stores (S3/GCS, Azure Blob) share: parallel part
// uploads, ranged reads in windows, and error statuses from REST answers.

#include <deque>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "http.h"
#include "object_store.h"

namespace cloudflux::storage {

// A failed REST answer as a status naming the store, what was tried and the
// store's error code (from the XML body; never the credentials): 404
// NOT_FOUND, 401/403 PERMISSION_DENIED, 409 FAILED_PRECONDITION (e.g. an
// archived blob), 416 OUT_OF_RANGE, 400 INVALID_ARGUMENT, 429 and 503
// SlowDown/ServerBusy RESOURCE_EXHAUSTED (throttled), other 5xx UNAVAILABLE.
absl::Status StoreError(const std::string& store, const HttpResponse& r, const std::string& what);
// The size of the object a HEAD answered for (a 200 with Content-Length),
// else the store's error: NOT_FOUND where there is none.
absl::StatusOr<int64_t> HeadSize(const std::string& store, const HttpResponse& r, const std::string& what);

// The store's error code of a REST answer: <Code> of the XML body, else
// Azure's x-ms-error-code header (Azure answers HEAD without a body); "" if
// neither.
std::string StoreErrorCode(const HttpResponse& r);

// Cuts a written stream into the parts of an upload, each filled in place
// (no staging buffer to copy parts out of): until more than `threshold`
// bytes have come it keeps them, as the object may still go in one request;
// past it, every part is handed on as soon as it holds `part_size` bytes.
// Holds at most max(threshold, part_size) + part_size bytes.
class PartCutter {
 public:
  using Submit = std::function<absl::Status(std::string part)>;
  PartCutter(int64_t threshold, int64_t part_size) : threshold_(threshold), part_size_(part_size) {}
  // A new threshold, before the first Append (0: every full part is cut).
  void set_threshold(int64_t threshold) { threshold_ = threshold; }
  int64_t part_size() const { return part_size_; }
  // Appends `data`; once past the threshold hands every full part to
  // `submit`, in order, stopping at its first failure.
  absl::Status Append(std::string_view data, const Submit& submit);
  // Whether parts have been handed on (the object goes as a multipart upload).
  bool cut() const { return cut_; }
  // Not cut: every byte, for a single request. Cut: the last, short part
  // ("" if none). Leaves the cutter empty.
  std::string TakeRest();

 private:
  int64_t threshold_;
  int64_t part_size_;
  int64_t held_ = 0;
  bool cut_ = false;
  std::deque<std::string> parts_;  // every one full but the last
};

// Uploads parts `limit` at a time on background threads; results (an ETag,
// a block id) are kept in submission order. Not thread-safe.
class ParallelParts {
 public:
  using Upload = std::function<absl::StatusOr<std::string>()>;
  explicit ParallelParts(int limit) : limit_(limit < 1 ? 1 : limit) {}
  ~ParallelParts() { Drain(); }
  // Waits for the oldest part first when `limit` are in flight; returns the
  // first failure seen.
  absl::Status Submit(Upload upload);
  // Waits for every part; their results in order, or the first failure.
  absl::StatusOr<std::vector<std::string>> Finish();
  // Waits for every part, ignoring results (before an abort).
  void Drain();
  // Results of parts stored before this uploader started (a resumed
  // upload); before the first Submit.
  void Preload(std::vector<std::string> results) { results_ = std::move(results); }
  // The results of the parts finished so far, in order, up to the first
  // part still in flight (without waiting for it).
  const std::vector<std::string>& Collect();
  bool empty() const { return in_flight_.empty() && results_.empty(); }

 private:
  absl::Status WaitOldest();

  int limit_;
  std::deque<std::future<absl::StatusOr<std::string>>> in_flight_;
  std::vector<std::string> results_;
  absl::Status failed_;
};

// Reads [offset, offset+length) (length 0 = to the end) in windows of
// `window` bytes, one ranged request each; while one window is consumed the
// next kReadAhead are already being fetched.
// `fetch(first, last)` sends the request for bytes first..last inclusive and
// must be callable from another thread.
class RangedReader final : public ObjectReader {
 public:
  static constexpr int kReadAhead = 3;
  using Fetch = std::function<absl::StatusOr<HttpResponse>(int64_t first, int64_t last)>;
  using Error = std::function<absl::Status(const HttpResponse&)>;
  RangedReader(Fetch fetch, Error error, int64_t offset, int64_t length, int64_t window)
      : fetch_(std::move(fetch)), error_(std::move(error)), pos_(offset),
        end_(length > 0 ? offset + length : -1), window_size_(window) {}
  // Chunks are pieces of the fetched window itself.
  absl::StatusOr<Chunk> ReadChunk(size_t max) override;

 private:
  Fetch fetch_;
  Error error_;
  int64_t pos_;
  int64_t end_;  // exclusive; -1 until known
  int64_t window_size_;
  std::shared_ptr<std::string> window_;  // the current window, shared with the chunks cut from it
  size_t window_pos_ = 0;
  std::deque<std::future<absl::StatusOr<HttpResponse>>> ahead_;  // the next windows, in order
  int64_t fetched_to_ = -1;  // first byte not yet requested
};

}  // namespace cloudflux::storage
