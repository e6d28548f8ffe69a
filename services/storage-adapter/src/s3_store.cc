// The S3 REST API (and GCS's S3-compatible XML API) through libcurl with
// AWS Signature V4.
#include <cstring>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"
#include "cloud_io.h"
#include "http.h"
#include "object_store.h"
#include "sigv4.h"
#include "tiers.h"
#include "xml.h"

namespace cloudflux::storage {
namespace {

namespace common = cloudflux::common::v1;

constexpr int64_t kReadWindow = 8 << 20;
// A multipart upload has at most this many parts.
constexpr int64_t kMaxParts = 10000;

// The CompleteMultipartUpload body for parts 1..n with these ETags.
std::string CompleteXml(const std::vector<std::string>& etags) {
  std::string xml = "<CompleteMultipartUpload>";
  for (size_t i = 0; i < etags.size(); ++i) {
    absl::StrAppend(&xml, "<Part><PartNumber>", i + 1, "</PartNumber><ETag>", XmlEscape(etags[i]),
                    "</ETag></Part>");
  }
  return xml + "</CompleteMultipartUpload>";
}

struct Target {
  std::string url;
  std::string host;
  std::string canonical_uri;
};

class S3Store;

class S3Writer final : public ObjectWriter {
 public:
  S3Writer(S3Store& store, std::string key, std::string storage_class, const S3Options& options)
      : store_(store), key_(std::move(key)), storage_class_(std::move(storage_class)),
        cutter_(options.multipart_threshold, options.part_size), parts_(options.parallel_parts) {}
  // Goes on with the multipart upload `progress` (its parts checked).
  S3Writer(S3Store& store, std::string key, std::string storage_class, const S3Options& options,
           const UploadProgress& progress)
      : S3Writer(store, std::move(key), std::move(storage_class), options) {
    upload_id_ = progress.upload_id;
    next_part_ = static_cast<int>(progress.etags.size()) + 1;
    parts_.Preload(progress.etags);
    cutter_ = PartCutter(0, progress.part_size);
  }
  ~S3Writer() override {
    if (!committed_) Abort();
  }
  void ExpectSize(int64_t size) override {
    // Anything over one part goes in parts, so that a copy can resume.
    if (size > cutter_.part_size() && upload_id_.empty()) cutter_.set_threshold(cutter_.part_size());
  }
  int64_t PartSize() const override { return cutter_.part_size(); }
  std::optional<UploadProgress> Progress() override {
    if (upload_id_.empty()) return std::nullopt;
    const std::vector<std::string>& done = parts_.Collect();
    if (done.empty()) return std::nullopt;
    return UploadProgress{upload_id_, cutter_.part_size(), done};
  }
  void Suspend() override {
    if (aborted_ || committed_) return;
    aborted_ = true;  // not aborted in the store: ResumeWrite goes on with it
    parts_.Drain();
  }
  absl::Status Write(std::string_view data) override;
  absl::Status Commit() override;
  void Abort() override;

 private:
  absl::Status SubmitPart(std::string part);

  S3Store& store_;
  std::string key_;
  std::string storage_class_;
  PartCutter cutter_;
  std::string upload_id_;
  int next_part_ = 1;
  ParallelParts parts_;  // ETags in part order
  absl::Status failed_;
  bool committed_ = false;
  bool aborted_ = false;
};

class S3Store final : public ObjectStore {
 public:
  S3Store(S3Options options, Url endpoint)
      : options_(std::move(options)), endpoint_(std::move(endpoint)) {}

  const std::string& name() const override { return options_.name; }
  common::CloudProvider provider() const override { return options_.provider; }

  absl::StatusOr<std::unique_ptr<ObjectWriter>> StartWrite(const std::string& physical_key,
                                                           common::StorageTier tier) override {
    return std::make_unique<S3Writer>(*this, physical_key, StorageClassFor(options_.provider, tier),
                                      options_);
  }

  // ListParts checks that the store still holds the upload's parts with
  // their ETags. A server without ListParts (s3rver) is taken at its word:
  // CompleteMultipartUpload refuses parts whose ETags differ.
  absl::StatusOr<std::unique_ptr<ObjectWriter>> ResumeWrite(const std::string& physical_key,
                                                            common::StorageTier tier,
                                                            const UploadProgress& progress) override {
    if (progress.upload_id.empty() || progress.part_size < (5 << 20)) {
      return absl::InvalidArgumentError(options_.name + ": not a multipart upload of this store");
    }
    CF_ASSIGN_OR_RETURN(auto stored, ListParts(physical_key, progress.upload_id));
    if (stored.has_value()) {
      for (size_t i = 0; i < progress.etags.size(); ++i) {
        auto it = stored->find(static_cast<int>(i + 1));
        if (it == stored->end() || it->second.second != progress.part_size ||
            Unquoted(it->second.first) != Unquoted(progress.etags[i])) {
          return absl::NotFoundError(absl::StrCat(options_.name, ": part ", i + 1, " of upload ",
                                                  progress.upload_id, " of ", physical_key,
                                                  " is not stored as recorded"));
        }
      }
    }
    return std::make_unique<S3Writer>(*this, physical_key, StorageClassFor(options_.provider, tier),
                                      options_, progress);
  }

  // The upload's parts (number -> ETag, size); nullopt when the server has
  // no ListParts. NOT_FOUND when the upload is gone.
  absl::StatusOr<std::optional<std::map<int, std::pair<std::string, int64_t>>>> ListParts(
      const std::string& key, const std::string& upload_id) {
    std::map<int, std::pair<std::string, int64_t>> parts;
    std::string marker = "0";
    while (true) {
      CF_ASSIGN_OR_RETURN(HttpResponse r, Call("GET", key, {{"uploadId", upload_id}, {"part-number-marker", marker}}, {}, ""));
      if (r.status == 405 || r.status == 501) return std::nullopt;
      if (r.status != 200) return Error(r, absl::StrCat("list parts of upload ", upload_id, " of ", key));
      for (const auto& part : XmlRecords(r.body, "Part", {"PartNumber", "ETag", "Size"})) {
        int number = 0;
        int64_t size = 0;
        if (!absl::SimpleAtoi(part.at("PartNumber"), &number) || !absl::SimpleAtoi(part.at("Size"), &size)) continue;
        parts[number] = {part.at("ETag"), size};
      }
      std::string next = XmlFirstText(r.body, "NextPartNumberMarker").value_or("");
      if (XmlFirstText(r.body, "IsTruncated").value_or("false") != "true" || next.empty() || next == marker) break;
      marker = next;
    }
    return parts;
  }

  static std::string_view Unquoted(std::string_view etag) {
    if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') return etag.substr(1, etag.size() - 2);
    return etag;
  }

  absl::StatusOr<std::unique_ptr<ObjectReader>> OpenRead(const std::string& physical_key,
                                                         int64_t offset, int64_t length) override {
    return std::make_unique<RangedReader>(
        [this, physical_key](int64_t first, int64_t last) {
          return Call("GET", physical_key, {}, {{"Range", absl::StrCat("bytes=", first, "-", last)}}, "");
        },
        [this, physical_key](const HttpResponse& r) { return Error(r, "get " + physical_key); },
        offset, length, kReadWindow);
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
    if (size > options_.max_single_copy) {
      // GCS's XML API has no UploadPartCopy: the caller streams.
      if (options_.provider == common::CLOUD_PROVIDER_GCP) {
        return absl::UnimplementedError(options_.name + ": objects over the single-copy limit are copied by streaming");
      }
      return CopyInParts(from, to, tier, size);
    }
    auto headers = StorageClassHeaders(StorageClassFor(options_.provider, tier));
    headers.emplace_back("x-amz-copy-source", CopySource(from));
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

  // Objects over the single-copy limit: a multipart upload whose parts are
  // UploadPartCopy ranges of the source (parallel_parts at a time), aborted
  // on failure. UNIMPLEMENTED when the server has no UploadPartCopy (the
  // caller then streams the copy).
  absl::Status CopyInParts(const std::string& from, const std::string& to, common::StorageTier tier,
                           int64_t size) {
    const int64_t part = std::max(options_.part_size, (size + kMaxParts - 1) / kMaxParts);
    CF_ASSIGN_OR_RETURN(std::string upload_id, StartMultipart(to, StorageClassFor(options_.provider, tier)));
    ParallelParts parts(options_.parallel_parts);
    auto copied = [&]() -> absl::Status {
      int number = 1;
      for (int64_t first = 0; first < size; first += part, ++number) {
        int64_t last = std::min(size, first + part) - 1;
        CF_RETURN_IF_ERROR(parts.Submit([this, from, to, upload_id, number, first, last]() -> absl::StatusOr<std::string> {
          CF_ASSIGN_OR_RETURN(
              HttpResponse r,
              Call("PUT", to, {{"partNumber", std::to_string(number)}, {"uploadId", upload_id}},
                   {{"x-amz-copy-source", CopySource(from)},
                    {"x-amz-copy-source-range", absl::StrCat("bytes=", first, "-", last)}},
                   ""));
          return CopyPartEtag(options_.name, r, absl::StrCat("copy part ", number, " of ", from, " to ", to));
        }));
      }
      CF_ASSIGN_OR_RETURN(std::vector<std::string> etags, parts.Finish());
      return CompleteMultipart(to, upload_id, etags);
    }();
    if (!copied.ok()) {
      parts.Drain();
      AbortMultipartOrWarn(to, upload_id);
    }
    return copied;
  }

  // Multipart uploads (of bytes or of copied ranges): started with a
  // storage class, completed from their parts' ETags, aborted (an upload
  // already gone is fine).
  absl::StatusOr<std::string> StartMultipart(const std::string& key, const std::string& storage_class) {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("POST", key, {{"uploads", ""}}, StorageClassHeaders(storage_class), ""));
    if (r.status != 200) return Error(r, "start multipart upload of " + key);
    std::string id = XmlFirstText(r.body, "UploadId").value_or("");
    if (id.empty()) return absl::InternalError(options_.name + ": multipart upload started without an id");
    return id;
  }

  absl::Status CompleteMultipart(const std::string& key, const std::string& upload_id,
                                 const std::vector<std::string>& etags) {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("POST", key, {{"uploadId", upload_id}},
                                             {{"Content-Type", "application/xml"}}, CompleteXml(etags)));
    // S3 may answer 200 and put the error in the body.
    if (r.status != 200 || XmlFirstText(r.body, "Error").has_value()) {
      return Error(r, "complete multipart upload of " + key);
    }
    return absl::OkStatus();
  }

  absl::Status AbortMultipart(const std::string& key, const std::string& upload_id) {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("DELETE", key, {{"uploadId", upload_id}}, {}, ""));
    if (r.status != 204 && r.status != 200 && r.status != 404) {
      return Error(r, "abort upload " + upload_id + " of " + key);
    }
    return absl::OkStatus();
  }

  // For a failed upload: its parts are not worth failing over, but say so.
  void AbortMultipartOrWarn(const std::string& key, const std::string& upload_id) {
    if (absl::Status s = AbortMultipart(key, upload_id); !s.ok()) {
      core::LogWarn("multipart upload not aborted",
                    {{"backend", options_.name}, {"physical_key", key}, {"error", std::string(s.message())}});
    }
  }

  std::string CopySource(const std::string& key) const {
    return absl::StrCat("/", options_.bucket, "/", UriEncode(key, /*keep_slash=*/true));
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

  // ListMultipartUploads for exactly this key, then AbortMultipartUpload of
  // each (a NoSuchUpload answer means it is gone already).
  absl::Status AbortIncompleteWrites(const std::string& physical_key) override {
    CF_ASSIGN_OR_RETURN(HttpResponse list,
                        Call("GET", "", {{"prefix", physical_key}, {"uploads", ""}}, {}, ""));
    if (list.status != 200) return Error(list, "list incomplete uploads of " + physical_key);
    for (const auto& upload : XmlRecords(list.body, "Upload", {"Key", "UploadId"})) {
      if (upload.at("Key") != physical_key || upload.at("UploadId").empty()) continue;
      CF_RETURN_IF_ERROR(AbortMultipart(physical_key, upload.at("UploadId")));
      core::LogInfo("aborted an incomplete multipart upload",
                    {{"store", options_.name}, {"physical_key", physical_key}});
    }
    return absl::OkStatus();
  }

  // GCS reads its archive classes directly; S3 restores a temporary copy.
  absl::StatusOr<RestoreResult> Restore(const std::string& physical_key,
                                        const RestoreOptions& options) override {
    if (options_.provider == common::CLOUD_PROVIDER_GCP) return RestoreResult{};
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("POST", physical_key, {{"restore", ""}},
                                             {{"content-type", "application/xml"}}, S3RestoreBody(options)));
    return S3RestoreAnswer(options_.name, r, physical_key);
  }

  absl::StatusOr<int64_t> StoredSize(const std::string& physical_key) override {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("HEAD", physical_key, {}, {}, ""));
    return HeadSize(options_.name, r, "head " + physical_key);
  }

  absl::StatusOr<ReadState> ReadStateOf(const std::string& physical_key) override {
    if (options_.provider == common::CLOUD_PROVIDER_GCP) return ReadState{};
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("HEAD", physical_key, {}, {}, ""));
    if (r.status != 200) return Error(r, "head " + physical_key);
    return S3ReadState(r);
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

  absl::Status Error(const HttpResponse& r, const std::string& what) const {
    return StoreError(options_.name, r, what);
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
  return failed_ = cutter_.Append(data, [this](std::string part) -> absl::Status {
    if (upload_id_.empty()) {
      CF_ASSIGN_OR_RETURN(upload_id_, store_.StartMultipart(key_, storage_class_));
    }
    return SubmitPart(std::move(part));
  });
}

absl::Status S3Writer::SubmitPart(std::string part) {
  int number = next_part_++;
  return failed_ = parts_.Submit([this, number, part = std::move(part)]() mutable -> absl::StatusOr<std::string> {
    auto sent = store_.Call("PUT", key_, {{"partNumber", std::to_string(number)}, {"uploadId", upload_id_}},
                            {}, part);
    RecycleBody(std::move(part));  // the next part fills the same memory
    CF_ASSIGN_OR_RETURN(HttpResponse r, std::move(sent));
    if (r.status != 200) return store_.Error(r, absl::StrCat("upload part ", number, " of ", key_));
    return r.Header("etag");
  });
}

absl::Status S3Writer::Commit() {
  if (!failed_.ok()) return failed_;
  if (!cutter_.cut() && upload_id_.empty()) {
    CF_ASSIGN_OR_RETURN(HttpResponse r, store_.Call("PUT", key_, {}, store_.StorageClassHeaders(storage_class_),
                                                    cutter_.TakeRest()));
    if (r.status != 200) return failed_ = store_.Error(r, "put " + key_);
    committed_ = true;
    return absl::OkStatus();
  }
  if (std::string rest = cutter_.TakeRest(); !rest.empty()) CF_RETURN_IF_ERROR(SubmitPart(std::move(rest)));
  auto etags = parts_.Finish();
  if (!etags.ok()) return failed_ = etags.status();
  if (absl::Status done = store_.CompleteMultipart(key_, upload_id_, *etags); !done.ok()) return failed_ = done;
  committed_ = true;
  return absl::OkStatus();
}

void S3Writer::Abort() {
  if (aborted_ || committed_) return;
  aborted_ = true;
  parts_.Drain();
  if (!upload_id_.empty()) store_.AbortMultipartOrWarn(key_, upload_id_);
}

}  // namespace

absl::StatusOr<std::string> CopyPartEtag(const std::string& store, const HttpResponse& r,
                                         const std::string& what) {
  // S3 may answer 200 and put the error in the body.
  std::optional<std::string> etag = XmlFirstText(r.body, "ETag");
  if (r.status != 200 || XmlFirstText(r.body, "Error").has_value() || !etag.has_value() || etag->empty()) {
    return StoreError(store, r, what);
  }
  return *etag;
}

std::string S3RestoreBody(const RestoreOptions& options) {
  const char* tier = options.priority == RestoreOptions::Priority::kHigh   ? "Expedited"
                     : options.priority == RestoreOptions::Priority::kBulk ? "Bulk"
                                                                           : "Standard";
  return absl::StrCat(
      "<RestoreRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Days>", options.days,
      "</Days><GlacierJobParameters><Tier>", tier, "</Tier></GlacierJobParameters></RestoreRequest>");
}

absl::StatusOr<RestoreResult> S3RestoreAnswer(const std::string& store, const HttpResponse& r,
                                              const std::string& physical_key) {
  using State = RestoreResult::State;
  if (r.status == 202) return RestoreResult{.state = State::kStarted};
  if (r.status == 200) return RestoreResult{.state = State::kReadable};
  if (r.status == 409 && StoreErrorCode(r) == "RestoreAlreadyInProgress") {
    return RestoreResult{.state = State::kInProgress};
  }
  return StoreError(store, r, "restore " + physical_key);
}

ReadState S3ReadState(const HttpResponse& head) {
  using State = ReadState::State;
  std::string storage_class = head.Header("x-amz-storage-class");
  std::string archive_status = head.Header("x-amz-archive-status");  // Intelligent-Tiering
  bool archived = storage_class == "GLACIER" || storage_class == "DEEP_ARCHIVE" ||
                  archive_status == "ARCHIVE_ACCESS" || archive_status == "DEEP_ARCHIVE_ACCESS";
  if (!archived) return ReadState{};
  // x-amz-restore: ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"
  std::string restore = head.Header("x-amz-restore");
  if (absl::StrContains(restore, "ongoing-request=\"true\"")) return ReadState{.state = State::kRestoring};
  if (!absl::StrContains(restore, "ongoing-request=\"false\"")) return ReadState{.state = State::kNeedsRestore};
  ReadState out;
  size_t at = restore.find("expiry-date=\"");
  if (at != std::string::npos) {
    at += std::strlen("expiry-date=\"");
    std::string date = restore.substr(at, restore.find('"', at) - at);
    absl::Time until;
    std::string error;
    if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", date, absl::UTCTimeZone(), &until, &error)) {
      out.readable_until = until;
    }
  }
  return out;
}

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
