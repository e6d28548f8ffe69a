#include "cloud_io.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/status.h"
#include "xml.h"

namespace cloudflux::storage {

std::string StoreErrorCode(const HttpResponse& r) {
  std::string code = XmlFirstText(r.body, "Code").value_or("");
  return code.empty() ? r.Header("x-ms-error-code") : code;
}

absl::Status StoreError(const std::string& store, const HttpResponse& r, const std::string& what) {
  std::string code = StoreErrorCode(r);
  std::string message = XmlFirstText(r.body, "Message").value_or("");
  std::string text = absl::StrCat(store, ": ", what, ": HTTP ", r.status, code.empty() ? "" : " " + code,
                                  message.empty() ? "" : ": " + message);
  // An archived object read before it was restored: S3 and GCS answer 403
  // InvalidObjectState, Azure 409 BlobArchived (also while a tier change out
  // of Archive, which Azure runs in the background, is still going on). Not
  // a permission problem.
  if (code == "InvalidObjectState" || code == "BlobArchived") {
    return absl::FailedPreconditionError(absl::StrCat(
        text, " (the object is archived: restore it or change its tier to an online one first; "
              "leaving an archive tier can take hours after the change is accepted)"));
  }
  if (r.status == 404) return absl::NotFoundError(text);
  if (r.status == 403 || r.status == 401) return absl::PermissionDeniedError(text);
  if (r.status == 409) return absl::FailedPreconditionError(text);
  if (r.status == 416) return absl::OutOfRangeError(text);
  // The server does not implement the request (s3rver has no restore).
  if (r.status == 405 || r.status == 501) return absl::UnimplementedError(text);
  if (r.status == 400) return absl::InvalidArgumentError(text);
  // Throttled: S3's 503 SlowDown, Azure's 503 ServerBusy, GCS's 429. The
  // caller is asked to slow down (RESOURCE_EXHAUSTED), not told the store
  // is gone.
  if (r.status == 429 || (r.status == 503 && (code == "SlowDown" || code == "ServerBusy"))) {
    return absl::ResourceExhaustedError(absl::StrCat(text, " (throttled by the store)"));
  }
  if (r.status >= 500) return absl::UnavailableError(text);
  return absl::InternalError(text);
}

absl::StatusOr<int64_t> HeadSize(const std::string& store, const HttpResponse& r, const std::string& what) {
  if (r.status != 200) return StoreError(store, r, what);
  int64_t size = 0;
  if (!absl::SimpleAtoi(r.Header("content-length"), &size)) {
    return absl::InternalError(absl::StrCat(store, ": ", what, ": no Content-Length"));
  }
  return size;
}

namespace {

// Gives `s` room for exactly `bytes` (std::string's own growth would double
// its capacity, past the part size).
void Regrow(std::string& s, size_t bytes) {
  std::string bigger;
  bigger.reserve(bytes);  // exact from an empty string
  bigger.append(s);
  s.swap(bigger);
}

}  // namespace

absl::Status PartCutter::Append(std::string_view data, const Submit& submit) {
  const size_t part_size = static_cast<size_t>(part_size_);
  while (!data.empty()) {
    if (parts_.empty() || parts_.back().size() == part_size) {
      parts_.emplace_back();
      // A part after the first is known to fill up: it takes a buffer from
      // the large-body pool, where the stores give sent parts back. The
      // first one grows with what comes (most objects are small).
      if (cut_ || parts_.size() > 1) parts_.back() = TakeBodyBuffer(part_size);
    }
    std::string& last = parts_.back();
    size_t n = std::min(data.size(), part_size - last.size());
    if (last.size() + n > last.capacity()) {
      Regrow(last, std::min(part_size, std::max(2 * last.capacity(), last.size() + n)));
    }
    last.append(data.data(), n);
    data.remove_prefix(n);
    held_ += static_cast<int64_t>(n);
  }
  if (!cut_ && held_ <= threshold_) return absl::OkStatus();
  cut_ = true;
  while (!parts_.empty() && static_cast<int64_t>(parts_.front().size()) == part_size_) {
    std::string part = std::move(parts_.front());
    parts_.pop_front();
    held_ -= static_cast<int64_t>(part.size());
    CF_RETURN_IF_ERROR(submit(std::move(part)));
  }
  return absl::OkStatus();
}

std::string PartCutter::TakeRest() {
  std::string rest;
  if (!parts_.empty()) {
    rest = std::move(parts_.front());
    parts_.pop_front();
    if (!parts_.empty()) Regrow(rest, static_cast<size_t>(held_));
    for (; !parts_.empty(); parts_.pop_front()) rest += parts_.front();
  }
  held_ = 0;
  return rest;
}

absl::Status ParallelParts::Submit(Upload upload) {
  if (!failed_.ok()) return failed_;
  while (static_cast<int>(in_flight_.size()) >= limit_) CF_RETURN_IF_ERROR(WaitOldest());
  in_flight_.push_back(std::async(std::launch::async, std::move(upload)));
  return absl::OkStatus();
}

absl::Status ParallelParts::WaitOldest() {
  auto result = in_flight_.front().get();
  in_flight_.pop_front();
  if (!result.ok()) {
    if (failed_.ok()) failed_ = result.status();
    return failed_;
  }
  results_.push_back(std::move(*result));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ParallelParts::Finish() {
  while (!in_flight_.empty()) {
    absl::Status s = WaitOldest();
    if (!s.ok()) {
      Drain();
      return s;
    }
  }
  if (!failed_.ok()) return failed_;
  return std::move(results_);
}

const std::vector<std::string>& ParallelParts::Collect() {
  while (failed_.ok() && !in_flight_.empty() &&
         in_flight_.front().wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    (void)WaitOldest();
  }
  return results_;
}

void ParallelParts::Drain() {
  while (!in_flight_.empty()) {
    in_flight_.front().wait();
    in_flight_.pop_front();
  }
}

absl::StatusOr<Chunk> RangedReader::ReadChunk(size_t max) {
  if (window_ == nullptr || window_pos_ == window_->size()) {
    window_.reset();  // back to the body pool once no chunk holds it: its memory serves a later window
    window_pos_ = 0;
    if (end_ >= 0 && pos_ >= end_) return Chunk{};
    int64_t last = pos_ + window_size_ - 1;
    if (end_ >= 0) last = std::min(last, end_ - 1);
    absl::StatusOr<HttpResponse> fetched;
    if (!ahead_.empty()) {
      fetched = ahead_.front().get();
      ahead_.pop_front();
    } else {
      fetched = fetch_(pos_, last);
    }
    CF_ASSIGN_OR_RETURN(HttpResponse r, std::move(fetched));
    if (r.status == 416) {  // an empty object, or reading exactly at its end
      end_ = pos_;
      return Chunk{};
    }
    if (r.status != 206 && r.status != 200) return error_(r);
    if (r.status == 200 && pos_ > 0) return absl::InternalError("the store ignored the byte range");
    // "bytes a-b/total" tells where the object ends.
    std::string range = r.Header("content-range");
    if (auto slash = range.rfind('/'); end_ < 0 && slash != std::string::npos) {
      int64_t total = 0;
      if (absl::SimpleAtoi(range.substr(slash + 1), &total)) end_ = total;
    }
    if (r.status == 200 && end_ < 0) end_ = static_cast<int64_t>(r.body.size());
    window_ = std::shared_ptr<std::string>(new std::string(std::move(r.body)), [](std::string* body) {
      RecycleBody(std::move(*body));
      delete body;
    });
    pos_ += static_cast<int64_t>(window_->size());
    if (window_->empty()) end_ = pos_;
    // Once the end is known, keep the next windows in flight.
    if (fetched_to_ < pos_) fetched_to_ = pos_;
    while (end_ >= 0 && fetched_to_ < end_ && static_cast<int>(ahead_.size()) < kReadAhead) {
      int64_t to = std::min(fetched_to_ + window_size_, end_);
      ahead_.push_back(std::async(std::launch::async, fetch_, fetched_to_, to - 1));
      fetched_to_ = to;
    }
  }
  size_t n = std::min(max, window_->size() - window_pos_);
  Chunk chunk{window_->data() + window_pos_, n, window_};
  window_pos_ += n;
  return chunk;
}

}  // namespace cloudflux::storage
