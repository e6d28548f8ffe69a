// Azure Blob Storage through its REST API (libcurl) with Shared Key
// authorization (OpenSSL HMAC-SHA256).
#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"
#include "cloud_io.h"
#include "http.h"
#include "object_store.h"
#include "tiers.h"
#include "xml.h"

namespace cloudflux::storage {

namespace common = cloudflux::common::v1;
using Pairs = std::vector<std::pair<std::string, std::string>>;

namespace {

constexpr char kApiVersion[] = "2021-12-02";  // the first with the Cold tier
constexpr int64_t kReadWindow = 8 << 20;

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

absl::StatusOr<std::string> Unbase64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return absl::InvalidArgumentError("not base64");
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return absl::InvalidArgumentError("not base64");
  size_t pad = text.size() - text.find_last_not_of('=') - 1;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string HeaderValue(const Pairs& headers, absl::string_view name) {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, name)) return v;
  }
  return "";
}

class AzureStore;

class AzureWriter final : public ObjectWriter {
 public:
  AzureWriter(AzureStore& store, std::string key, std::string tier, const AzureOptions& options)
      : store_(store), key_(std::move(key)), tier_(std::move(tier)),
        cutter_(options.multipart_threshold, options.part_size), parts_(options.parallel_parts) {}
  // Goes on after the uncommitted blocks `progress` names (checked).
  AzureWriter(AzureStore& store, std::string key, std::string tier, const AzureOptions& options,
              const UploadProgress& progress)
      : AzureWriter(store, std::move(key), std::move(tier), options) {
    next_block_ = static_cast<int>(progress.etags.size());
    parts_.Preload(progress.etags);
    cutter_ = PartCutter(0, progress.part_size);
    resumed_ = true;
  }
  void ExpectSize(int64_t size) override {
    // Anything over one block goes in blocks, so that a copy can resume.
    if (size > cutter_.part_size() && next_block_ == 0) cutter_.set_threshold(cutter_.part_size());
  }
  int64_t PartSize() const override { return cutter_.part_size(); }
  // A blob's uncommitted blocks are its upload (there is no upload id).
  std::optional<UploadProgress> Progress() override {
    if (!cutter_.cut() && !resumed_) return std::nullopt;
    const std::vector<std::string>& done = parts_.Collect();
    if (done.empty()) return std::nullopt;
    return UploadProgress{kBlocksUpload, cutter_.part_size(), done};
  }
  void Suspend() override { parts_.Drain(); }
  absl::Status Write(std::string_view data) override;
  absl::Status Commit() override;
  // Uncommitted blocks are invisible and expire on their own.
  void Abort() override { parts_.Drain(); }
  static constexpr char kBlocksUpload[] = "uncommitted-blocks";

 private:
  absl::Status SubmitBlock(std::string block);

  AzureStore& store_;
  std::string key_;
  std::string tier_;
  PartCutter cutter_;
  int next_block_ = 0;
  ParallelParts parts_;  // block ids in order
  absl::Status failed_;
  bool resumed_ = false;
};

class AzureStore final : public ObjectStore {
 public:
  AzureStore(AzureOptions options, Url endpoint, std::string key, std::string path_prefix)
      : options_(std::move(options)), endpoint_(std::move(endpoint)), key_(std::move(key)),
        path_prefix_(std::move(path_prefix)) {}

  const std::string& name() const override { return options_.name; }
  common::CloudProvider provider() const override { return common::CLOUD_PROVIDER_AZURE; }
  const AzureOptions& options() const { return options_; }

  absl::StatusOr<std::unique_ptr<ObjectWriter>> StartWrite(const std::string& physical_key,
                                                           common::StorageTier tier) override {
    return std::make_unique<AzureWriter>(*this, physical_key,
                                         StorageClassFor(common::CLOUD_PROVIDER_AZURE, tier),
                                         options_);
  }

  // Get Block List (uncommitted) must still name every recorded block with
  // the block size; Azure discards uncommitted blocks after a week.
  absl::StatusOr<std::unique_ptr<ObjectWriter>> ResumeWrite(const std::string& physical_key,
                                                            common::StorageTier tier,
                                                            const UploadProgress& progress) override {
    if (progress.upload_id != AzureWriter::kBlocksUpload || progress.part_size <= 0) {
      return absl::InvalidArgumentError(options_.name + ": not a block upload of this store");
    }
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("GET", physical_key, {{"comp", "blocklist"}, {"blocklisttype", "uncommitted"}}, {}, ""));
    if (r.status != 200) return Error(r, "get the uncommitted blocks of " + physical_key);
    std::map<std::string, int64_t> stored;
    for (const auto& block : XmlRecords(r.body, "Block", {"Name", "Size"})) {
      int64_t size = 0;
      if (absl::SimpleAtoi(block.at("Size"), &size)) stored[block.at("Name")] = size;
    }
    for (const auto& id : progress.etags) {
      auto it = stored.find(id);
      if (it == stored.end() || it->second != progress.part_size) {
        return absl::NotFoundError(absl::StrCat(options_.name, ": block ", id, " of ", physical_key,
                                                " is not stored as recorded"));
      }
    }
    return std::make_unique<AzureWriter>(*this, physical_key, StorageClassFor(common::CLOUD_PROVIDER_AZURE, tier),
                                         options_, progress);
  }

  absl::StatusOr<std::unique_ptr<ObjectReader>> OpenRead(const std::string& physical_key,
                                                         int64_t offset, int64_t length) override {
    return std::make_unique<RangedReader>(
        [this, physical_key](int64_t first, int64_t last) {
          return Call("GET", physical_key, {}, {{"x-ms-range", absl::StrCat("bytes=", first, "-", last)}}, "");
        },
        [this, physical_key](const HttpResponse& r) { return Error(r, "get " + physical_key); },
        offset, length, kReadWindow);
  }

  absl::Status Delete(const std::string& physical_key) override {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("DELETE", physical_key, {}, {}, ""));
    if (r.status == 404 || r.status == 202 || r.status == 200) return absl::OkStatus();
    return Error(r, "delete " + physical_key);
  }

  absl::Status SetTier(const std::string& physical_key, common::StorageTier tier, int64_t) override {
    CF_ASSIGN_OR_RETURN(
        HttpResponse r,
        Call("PUT", physical_key, {{"comp", "tier"}},
             {{"x-ms-access-tier", StorageClassFor(common::CLOUD_PROVIDER_AZURE, tier)}}, ""));
    if (r.status == 200 || r.status == 202) return absl::OkStatus();
    return Error(r, "set tier of " + physical_key);
  }

  // Rehydration: Set Blob Tier out of Archive with a rehydrate priority.
  // Azure answers 202 and moves the blob in the background (hours); 200 if
  // it was not archived; 409 BlobBeingRehydrated while an earlier one runs.
  absl::StatusOr<RestoreResult> Restore(const std::string& physical_key,
                                        const RestoreOptions& options) override {
    using State = RestoreResult::State;
    CF_ASSIGN_OR_RETURN(
        HttpResponse r,
        Call("PUT", physical_key, {{"comp", "tier"}},
             {{"x-ms-access-tier", StorageClassFor(common::CLOUD_PROVIDER_AZURE, options.online_tier)},
              {"x-ms-rehydrate-priority",
               options.priority == RestoreOptions::Priority::kHigh ? "High" : "Standard"}},
             ""));
    if (r.status == 202) return RestoreResult{.state = State::kStarted, .tier_changed = true};
    if (r.status == 200) return RestoreResult{.state = State::kReadable, .tier_changed = true};
    if (r.status == 409 && StoreErrorCode(r) == "BlobBeingRehydrated") {
      return RestoreResult{.state = State::kInProgress};
    }
    return Error(r, "rehydrate " + physical_key);
  }

  absl::StatusOr<int64_t> StoredSize(const std::string& physical_key) override {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("HEAD", physical_key, {}, {}, ""));
    return HeadSize(options_.name, r, "properties of " + physical_key);
  }

  absl::StatusOr<ReadState> ReadStateOf(const std::string& physical_key) override {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("HEAD", physical_key, {}, {}, ""));
    if (r.status != 200) return Error(r, "properties of " + physical_key);
    return AzureReadState(r);
  }

  bool RestoresAfterTierChange() const override { return true; }

  // Copy Blob inside the account; a copy Azure runs asynchronously is
  // waited for.
  absl::Status CopyWithin(const std::string& from, const std::string& to, common::StorageTier tier,
                          int64_t) override {
    CF_ASSIGN_OR_RETURN(
        HttpResponse r,
        Call("PUT", to, {},
             {{"x-ms-copy-source", BlobUrl(from)},
              {"x-ms-access-tier", StorageClassFor(common::CLOUD_PROVIDER_AZURE, tier)}},
             ""));
    if (r.status != 202 && r.status != 201) return Error(r, absl::StrCat("copy ", from, " to ", to));
    std::string state = r.Header("x-ms-copy-status");
    absl::Duration wait = absl::Milliseconds(50);
    absl::Time deadline = absl::Now() + options_.timeout;
    while (state == "pending") {
      if (absl::Now() > deadline) {
        (void)Delete(to);
        return absl::DeadlineExceededError(absl::StrCat(options_.name, ": copy to ", to, " still pending"));
      }
      absl::SleepFor(wait);
      wait = std::min(wait * 2, absl::Seconds(2));
      CF_ASSIGN_OR_RETURN(HttpResponse head, Call("HEAD", to, {}, {}, ""));
      if (head.status != 200) return Error(head, "copy status of " + to);
      state = head.Header("x-ms-copy-status");
    }
    if (state != "success") {
      (void)Delete(to);
      return absl::InternalError(absl::StrCat(options_.name, ": copy to ", to, " ended ", state));
    }
    return absl::OkStatus();
  }

  absl::Status Ping() override {
    CF_ASSIGN_OR_RETURN(HttpResponse r, Call("HEAD", "", {{"restype", "container"}}, {}, ""));
    if (r.status == 200) return absl::OkStatus();
    return Error(r, "container " + options_.container);
  }

  absl::Status Error(const HttpResponse& r, const std::string& what) const {
    return StoreError(options_.name, r, what);
  }

  // One signed request on blob `key` ("" = the container).
  absl::StatusOr<HttpResponse> Call(const std::string& method, const std::string& key,
                                    const Pairs& query, Pairs headers, std::string_view body) {
    std::string path = Path(key);
    headers.emplace_back("x-ms-date", absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::Now(),
                                                       absl::UTCTimeZone()));
    headers.emplace_back("x-ms-version", kApiVersion);
    std::string to_sign =
        SharedKeyStringToSign(method, options_.account, path, query, headers, body.size());
    headers.emplace_back("Authorization", absl::StrCat("SharedKey ", options_.account, ":",
                                                       Base64(core::HmacSha256(key_, to_sign))));
    HttpRequest request;
    request.method = method;
    request.url = absl::StrCat(endpoint_.scheme, "://", endpoint_.host, path);
    for (size_t i = 0; i < query.size(); ++i) {
      absl::StrAppend(&request.url, i == 0 ? "?" : "&", UriEncode(query[i].first, false), "=",
                      UriEncode(query[i].second, false));
    }
    request.headers = std::move(headers);
    request.body = body;
    request.timeout = options_.timeout;
    return SendHttp(request);
  }

 private:
  std::string Path(const std::string& key) const {
    std::string path = absl::StrCat(path_prefix_, "/", options_.container);
    if (!key.empty()) absl::StrAppend(&path, "/", UriEncode(key, /*keep_slash=*/true));
    return path;
  }
  std::string BlobUrl(const std::string& key) const {
    return absl::StrCat(endpoint_.scheme, "://", endpoint_.host, Path(key));
  }

  AzureOptions options_;
  Url endpoint_;
  std::string key_;          // decoded account key
  std::string path_prefix_;  // "/<account>" for emulators, else ""
};

absl::Status AzureWriter::Write(std::string_view data) {
  if (!failed_.ok()) return failed_;
  return failed_ = cutter_.Append(data, [this](std::string block) { return SubmitBlock(std::move(block)); });
}

absl::Status AzureWriter::SubmitBlock(std::string block) {
  // Ids of one blob must all have the same length.
  std::string id = Base64(absl::StrFormat("block-%08d", next_block_++));
  return failed_ = parts_.Submit([this, id, block = std::move(block)]() mutable -> absl::StatusOr<std::string> {
    auto sent = store_.Call("PUT", key_, {{"comp", "block"}, {"blockid", id}}, {}, block);
    RecycleBody(std::move(block));  // the next block fills the same memory
    CF_ASSIGN_OR_RETURN(HttpResponse r, std::move(sent));
    if (r.status != 201) return store_.Error(r, "put block of " + key_);
    return id;
  });
}

absl::Status AzureWriter::Commit() {
  if (!failed_.ok()) return failed_;
  Pairs tier;
  if (!tier_.empty()) tier.emplace_back("x-ms-access-tier", tier_);
  if (!cutter_.cut() && !resumed_) {
    Pairs headers = tier;
    headers.emplace_back("x-ms-blob-type", "BlockBlob");
    CF_ASSIGN_OR_RETURN(HttpResponse r, store_.Call("PUT", key_, {}, std::move(headers), cutter_.TakeRest()));
    if (r.status != 201) return failed_ = store_.Error(r, "put " + key_);
    return absl::OkStatus();
  }
  if (std::string rest = cutter_.TakeRest(); !rest.empty()) CF_RETURN_IF_ERROR(SubmitBlock(std::move(rest)));
  auto ids = parts_.Finish();
  if (!ids.ok()) return failed_ = ids.status();
  std::string xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>";
  for (const auto& id : *ids) absl::StrAppend(&xml, "<Latest>", id, "</Latest>");
  xml += "</BlockList>";
  Pairs headers = tier;
  headers.emplace_back("Content-Type", "application/xml");
  CF_ASSIGN_OR_RETURN(HttpResponse r,
                      store_.Call("PUT", key_, {{"comp", "blocklist"}}, std::move(headers), xml));
  if (r.status != 201) return failed_ = store_.Error(r, "put block list of " + key_);
  return absl::OkStatus();
}

}  // namespace

ReadState AzureReadState(const HttpResponse& head) {
  using State = ReadState::State;
  if (absl::StartsWith(head.Header("x-ms-archive-status"), "rehydrate-pending")) {
    return ReadState{.state = State::kRestoring};
  }
  if (absl::EqualsIgnoreCase(head.Header("x-ms-access-tier"), "Archive")) {
    return ReadState{.state = State::kNeedsRestore};
  }
  return ReadState{};
}

std::string SharedKeyStringToSign(const std::string& method, const std::string& account,
                                  const std::string& path, const Pairs& query, const Pairs& headers,
                                  size_t content_length) {
  std::vector<std::pair<std::string, std::string>> ms;
  for (const auto& [k, v] : headers) {
    std::string name = absl::AsciiStrToLower(k);
    if (absl::StartsWith(name, "x-ms-")) ms.emplace_back(name, std::string(absl::StripAsciiWhitespace(v)));
  }
  std::sort(ms.begin(), ms.end());
  std::vector<std::pair<std::string, std::string>> q;
  for (const auto& [k, v] : query) q.emplace_back(absl::AsciiStrToLower(k), v);
  std::sort(q.begin(), q.end());
  std::string out = absl::StrCat(method, "\n", HeaderValue(headers, "content-encoding"), "\n",
                                 HeaderValue(headers, "content-language"), "\n",
                                 content_length == 0 ? "" : std::to_string(content_length), "\n",
                                 HeaderValue(headers, "content-md5"), "\n",
                                 HeaderValue(headers, "content-type"), "\n",
                                 HeaderValue(headers, "date"), "\n",
                                 HeaderValue(headers, "if-modified-since"), "\n",
                                 HeaderValue(headers, "if-match"), "\n",
                                 HeaderValue(headers, "if-none-match"), "\n",
                                 HeaderValue(headers, "if-unmodified-since"), "\n",
                                 HeaderValue(headers, "range"), "\n");
  for (const auto& [k, v] : ms) absl::StrAppend(&out, k, ":", v, "\n");
  absl::StrAppend(&out, "/", account, path.empty() ? "/" : path);
  // Parameters named more than once are joined with commas.
  for (size_t i = 0; i < q.size();) {
    std::vector<std::string> values;
    size_t j = i;
    for (; j < q.size() && q[j].first == q[i].first; ++j) values.push_back(q[j].second);
    absl::StrAppend(&out, "\n", q[i].first, ":", absl::StrJoin(values, ","));
    i = j;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<ObjectStore>> MakeAzureStore(AzureOptions options) {
  static const std::regex kContainer("^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$");
  if (options.account.empty()) return absl::InvalidArgumentError(options.name + ": account name is required");
  if (!std::regex_match(options.container, kContainer)) {
    return absl::InvalidArgumentError(
        options.name + ": container must be 3-63 characters of a-z, 0-9 and single '-'");
  }
  auto key = Unbase64(options.account_key);
  if (!key.ok()) return absl::InvalidArgumentError(options.name + ": account key must be base64");
  if (options.part_size < (1 << 20) || options.part_size > (int64_t{4000} << 20)) {
    return absl::InvalidArgumentError(options.name + ": part_size must be 1 MiB to 4000 MiB");
  }
  if (options.multipart_threshold < options.part_size) options.multipart_threshold = options.part_size;
  if (options.parallel_parts < 1) options.parallel_parts = 1;
  if (options.endpoint.empty()) {
    options.endpoint = absl::StrCat("https://", options.account, ".blob.core.windows.net");
  }
  CF_ASSIGN_OR_RETURN(Url endpoint, ParseEndpoint(options.endpoint));
  std::string prefix =
      absl::StartsWith(endpoint.host, options.account + ".") ? "" : "/" + options.account;
  return std::make_unique<AzureStore>(std::move(options), std::move(endpoint), std::move(*key),
                                      std::move(prefix));
}

}  // namespace cloudflux::storage
