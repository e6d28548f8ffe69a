// The S3 REST API (and GCS's S3-compatible XML API) through libcurl with
// AWS Signature V4.
#include <future>
#include <deque>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"
#include "http.h"
#include "object_store.h"
#include "sigv4.h"
#include "tiers.h"
#include "xml.h"

namespace cloudflux::storage {
namespace {

namespace common = cloudflux::common::v1;

constexpr int64_t kReadWindow = 8 << 20;
// The largest object one S3 copy request may copy.
constexpr int64_t kMaxSingleCopy = int64_t{5} << 30;

struct Target {
  std::string url;
  std::string host;
  std::string canonical_uri;
};

class S3Store;

class S3Writer final : public ObjectWriter {
 public:
  S3Writer(S3Store& store, std::string key, std::string storage_class)
      : store_(store), key_(std::move(key)), storage_class_(std::move(storage_class)) {}
  ~S3Writer() override {
    if (!committed_) Abort();
  }
  absl::Status Write(std::string_view data) override;
  absl::Status Commit() override;
  void Abort() override;

 private:
  absl::Status SubmitPart(std::string part);
  absl::Status WaitOldest();

  S3Store& store_;
  std::string key_;
  std::string storage_class_;
  std::string buffer_;
  std::string upload_id_;
  int next_part_ = 1;
  std::deque<std::pair<int, std::future<absl::StatusOr<std::string>>>> in_flight_;
  std::vector<std::pair<int, std::string>> etags_;
  absl::Status failed_;
  bool committed_ = false;
  bool aborted_ = false;
};

class S3Reader final : public ObjectReader {
 public:
  S3Reader(S3Store& store, std::string key, int64_t offset, int64_t length)
      : store_(store), key_(std::move(key)), pos_(offset),
        end_(length > 0 ? offset + length : -1) {}
  absl::Status Read(size_t max, std::string* out) override;

 private:
  S3Store& store_;
  std::string key_;
  int64_t pos_;
  int64_t end_;  // exclusive; -1 until known
  std::string window_;
  size_t window_pos_ = 0;
};

class S3Store final : public ObjectStore {
 public:
  S3Store(S3Options options, Url endpoint)
      : options_(std::move(options)), endpoint_(std::move(endpoint)) {}

  const std::string& name() const override { return options_.name; }
  common::CloudProvider provider() const override { return options_.provider; }

  absl::StatusOr<std::unique_ptr<ObjectWriter>> StartWrite(const std::string& physical_key,
                                                           common::StorageTier tier) override {
    return std::make_unique<S3Writer>(*this, physical_key,
                                      StorageClassFor(options_.provider, tier));
  }

  absl::StatusOr<std::unique_ptr<ObjectReader>> OpenRead(const std::string& physical_key,
                                                         int64_t offset, int64_t length) override {
    return std::make_unique<S3Reader>(*this, physical_key, offset, length);
  }

  absl::Status Delete(const std::string& physical_key) override {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("DELETE", physical_key, {}, {}, ""));
    if (r.status == 404 || (r.status >= 200 && r.status < 300)) return absl::OkStatus();
    return Error(r, "delete " + physical_key);
  }

  // A copy onto itself with the new storage class (S3 and GCS's XML API
  // change classes by rewriting; GCS accepts the x-amz- copy headers).
  absl::Status SetTier(const std::string& physical_key, common::StorageTier tier,
                       int64_t size) override {
    return CopyWithin(physical_key, physical_key, tier, size);
  }

  absl::Status CopyWithin(const std::string& from, const std::string& to, common::StorageTier tier,
                          int64_t size) override {
    if (size > kMaxSingleCopy) {
      return absl::UnimplementedError(options_.name + ": objects over 5 GiB are copied by streaming");
    }
    auto headers = StorageClassHeaders(StorageClassFor(options_.provider, tier));
    headers.emplace_back("x-amz-copy-source",
                         absl::StrCat("/", options_.bucket, "/", UriEncode(from, /*keep_slash=*/true)));
    // REPLACE: a copy onto itself must change something besides the class
    // for some servers; the catalog keeps content type and metadata anyway.
    headers.emplace_back("x-amz-metadata-directive", "REPLACE");
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("PUT", to, {}, std::move(headers), ""));
    // S3 may answer 200 and put the error in the body.
    if (r.status != 200 || XmlFirstText(r.body, "Error").has_value() ||
        (!XmlFirstText(r.body, "ETag").has_value() && XmlFirstText(r.body, "Code").has_value())) {
      return Error(r, absl::StrCat("copy ", from, " to ", to));
    }
    return absl::OkStatus();
  }

  // The header carrying the tier's storage class on the request that
  // creates the object (single PUT, multipart start, copy).
  std::vector<std::pair<std::string, std::string>> StorageClassHeaders(
      const std::string& storage_class) const {
    if (storage_class.empty()) return {};
    return {{options_.provider == common::CLOUD_PROVIDER_GCP ? "x-goog-storage-class"
                                                             : "x-amz-storage-class",
             storage_class}};
  }

  absl::Status Ping() override {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("HEAD", "", {}, {}, ""));
    if (r.status >= 200 && r.status < 300) return absl::OkStatus();
    return Error(r, absl::StrCat("bucket ", options_.bucket));
  }

  // One signed request on `key` ("" = the bucket).
  absl::StatusOr<HttpResponse> Call(const std::string& method, const std::string& key,
                                    std::vector<std::pair<std::string, std::string>> query,
                                    std::vector<std::pair<std::string, std::string>> headers,
                                    std::string_view body) {
    Target t = TargetFor(key);
    SigV4Request sign;
    sign.method = method;
    sign.canonical_uri = t.canonical_uri;
    sign.canonical_query = CanonicalQuery(query);
    sign.headers = std::move(headers);
    sign.headers.emplace_back("host", t.host);
    sign.payload_sha256 = core::Sha256Hex(body);
    SignV4(sign,
           {options_.access_key_id, options_.secret_access_key,
            options_.region.empty() ? "us-east-1" : options_.region, "s3"},
           absl::Now());
    HttpRequest request;
    request.method = method;
    request.url = sign.canonical_query.empty() ? t.url : t.url + "?" + sign.canonical_query;
    request.headers = std::move(sign.headers);
    request.body = body;
    request.timeout = options_.timeout;
    return SendHttp(request);
  }

  // A failed response as a status naming what was tried and the store's
  // error code (never the credentials).
  absl::Status Error(const HttpResponse& r, const std::string& what) const {
    std::string code = XmlFirstText(r.body, "Code").value_or("");
    std::string message = XmlFirstText(r.body, "Message").value_or("");
    std::string text = absl::StrCat(options_.name, ": ", what, ": HTTP ", r.status,
                                    code.empty() ? "" : " " + code,
                                    message.empty() ? "" : ": " + message);
    if (r.status == 404) return absl::NotFoundError(text);
    if (r.status == 403 || r.status == 401) return absl::PermissionDeniedError(text);
    if (r.status == 416) return absl::OutOfRangeError(text);
    if (r.status == 400) return absl::InvalidArgumentError(text);
    if (r.status == 429 || r.status >= 500) return absl::UnavailableError(text);
    return absl::InternalError(text);
  }

  const S3Options& options() const { return options_; }

 private:
  Target TargetFor(const std::string& key) const {
    Target t;
    std::string path = key.empty() ? "" : UriEncode(key, /*keep_slash=*/true);
    if (options_.virtual_host_style) {
      t.host = absl::StrCat(options_.bucket, ".", endpoint_.host);
      t.canonical_uri = "/" + path;
    } else {
      t.host = endpoint_.host;
      t.canonical_uri = absl::StrCat("/", options_.bucket, key.empty() ? "" : "/", path);
    }
    t.url = absl::StrCat(endpoint_.scheme, "://", t.host, t.canonical_uri);
    return t;
  }

  S3Options options_;
  Url endpoint_;
};

absl::Status S3Writer::Write(std::string_view data) {
  if (!failed_.ok()) return failed_;
  buffer_.append(data);
  const S3Options& o = store_.options();
  if (upload_id_.empty() && static_cast<int64_t>(buffer_.size()) <= o.multipart_threshold) {
    return absl::OkStatus();
  }
  if (upload_id_.empty()) {
    CF_ASSIGN_OR_RETURN(HttpResponse r, store_.Call("POST", key_, {{"uploads", ""}},
                                                    store_.StorageClassHeaders(storage_class_), ""));
    if (r.status != 200) return failed_ = store_.Error(r, "start multipart upload of " + key_);
    auto id = XmlFirstText(r.body, "UploadId");
    if (!id.has_value() || id->empty()) {
      return failed_ = absl::InternalError(o.name + ": multipart upload started without an id");
    }
    upload_id_ = *id;
  }
  while (static_cast<int64_t>(buffer_.size()) >= o.part_size) {
    std::string part = buffer_.substr(0, o.part_size);
    buffer_.erase(0, o.part_size);
    CF_RETURN_IF_ERROR(SubmitPart(std::move(part)));
  }
  return absl::OkStatus();
}

absl::Status S3Writer::SubmitPart(std::string part) {
  while (static_cast<int>(in_flight_.size()) >= store_.options().parallel_parts) {
    CF_RETURN_IF_ERROR(WaitOldest());
  }
  int number = next_part_++;
  in_flight_.emplace_back(
      number, std::async(std::launch::async,
                         [this, number, part = std::move(part)]() -> absl::StatusOr<std::string> {
                           CF_ASSIGN_OR_RETURN(
                               HttpResponse r,
                               store_.Call("PUT", key_,
                                           {{"partNumber", std::to_string(number)},
                                            {"uploadId", upload_id_}},
                                           {}, part));
                           if (r.status != 200) {
                             return store_.Error(r, absl::StrCat("upload part ", number, " of ", key_));
                           }
                           return r.Header("etag");
                         }));
  return absl::OkStatus();
}

absl::Status S3Writer::WaitOldest() {
  auto [number, future] = std::move(in_flight_.front());
  in_flight_.pop_front();
  absl::StatusOr<std::string> etag = future.get();
  if (!etag.ok()) return failed_ = etag.status();
  etags_.emplace_back(number, *etag);
  return absl::OkStatus();
}

absl::Status S3Writer::Commit() {
  if (!failed_.ok()) return failed_;
  if (upload_id_.empty()) {
    CF_ASSIGN_OR_RETURN(HttpResponse r,
                        store_.Call("PUT", key_, {}, store_.StorageClassHeaders(storage_class_), buffer_));
    if (r.status != 200) return failed_ = store_.Error(r, "put " + key_);
    committed_ = true;
    std::string().swap(buffer_);
    return absl::OkStatus();
  }
  if (!buffer_.empty()) {
    CF_RETURN_IF_ERROR(SubmitPart(std::move(buffer_)));
    buffer_.clear();
  }
  while (!in_flight_.empty()) CF_RETURN_IF_ERROR(WaitOldest());
  std::string xml = "<CompleteMultipartUpload>";
  for (const auto& [number, etag] : etags_) {
    absl::StrAppend(&xml, "<Part><PartNumber>", number, "</PartNumber><ETag>", XmlEscape(etag),
                    "</ETag></Part>");
  }
  xml += "</CompleteMultipartUpload>";
  CF_ASSIGN_OR_RETURN(HttpResponse r,
                      store_.Call("POST", key_, {{"uploadId", upload_id_}},
                                  {{"Content-Type", "application/xml"}}, xml));
  // S3 may answer 200 and put the error in the body.
  if (r.status != 200 || XmlFirstText(r.body, "Error").has_value()) {
    return failed_ = store_.Error(r, "complete multipart upload of " + key_);
  }
  committed_ = true;
  return absl::OkStatus();
}

void S3Writer::Abort() {
  if (aborted_ || committed_) return;
  aborted_ = true;
  while (!in_flight_.empty()) {
    in_flight_.front().second.wait();
    in_flight_.pop_front();
  }
  if (!upload_id_.empty()) {
    auto r = store_.Call("DELETE", key_, {{"uploadId", upload_id_}}, {}, "");
    if (!r.ok() || (r->status != 204 && r->status != 200 && r->status != 404)) {
      core::LogWarn("multipart upload not aborted",
                    {{"backend", store_.name()},
                     {"physical_key", key_},
                     {"error", r.ok() ? absl::StrCat("HTTP ", r->status)
                                      : std::string(r.status().message())}});
    }
  }
}

absl::Status S3Reader::Read(size_t max, std::string* out) {
  out->clear();
  if (window_pos_ == window_.size()) {
    window_.clear();
    window_pos_ = 0;
    if (end_ >= 0 && pos_ >= end_) return absl::OkStatus();
    int64_t last = pos_ + kReadWindow - 1;
    if (end_ >= 0) last = std::min(last, end_ - 1);
    CF_ASSIGN_OR_RETURN(HttpResponse r,
                        store_.Call("GET", key_, {}, {{"Range", absl::StrCat("bytes=", pos_, "-", last)}}, ""));
    if (r.status == 416) {
      end_ = pos_;
      return absl::OkStatus();
    }
    if (r.status != 206 && r.status != 200) return store_.Error(r, "get " + key_);
    if (r.status == 200 && pos_ > 0) {
      return absl::InternalError(store_.name() + ": the store ignored the byte range");
    }
    // "bytes a-b/total" tells where the object ends.
    std::string range = r.Header("content-range");
    if (auto slash = range.rfind('/'); end_ < 0 && slash != std::string::npos) {
      int64_t total = 0;
      if (absl::SimpleAtoi(range.substr(slash + 1), &total)) end_ = total;
    }
    if (r.status == 200 && end_ < 0) end_ = static_cast<int64_t>(r.body.size());
    window_ = std::move(r.body);
    pos_ += static_cast<int64_t>(window_.size());
    if (window_.empty()) end_ = pos_;
  }
  size_t n = std::min(max, window_.size() - window_pos_);
  out->assign(window_, window_pos_, n);
  window_pos_ += n;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ObjectStore>> MakeS3Store(S3Options options) {
  if (options.bucket.empty()) return absl::InvalidArgumentError(options.name + ": bucket is required");
  if (options.access_key_id.empty() || options.secret_access_key.empty()) {
    return absl::InvalidArgumentError(options.name + ": access key id and secret are required");
  }
  if (options.part_size < (5 << 20)) {
    return absl::InvalidArgumentError(options.name + ": part_size must be at least 5 MiB");
  }
  if (options.multipart_threshold < options.part_size) options.multipart_threshold = options.part_size;
  if (options.parallel_parts < 1) options.parallel_parts = 1;
  CF_ASSIGN_OR_RETURN(Url endpoint, ParseEndpoint(options.endpoint));
  return std::make_unique<S3Store>(std::move(options), std::move(endpoint));
}

}  // namespace cloudflux::storage
