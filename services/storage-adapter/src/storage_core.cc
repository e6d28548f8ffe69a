#include "storage_core.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <regex>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/server/paging.h"
#include "cloudflux/storage/v1/events.pb.h"

namespace cloudflux::storage {

namespace v1 = cloudflux::storage::v1;
using cloudflux::common::v1::StorageTier;
using google::protobuf::util::TimeUtil;

namespace {

constexpr char kColumns[] =
    "namespace, key, version, backend, physical_key, tier, size, sha256, etag, content_type, "
    "jsonb_build_object('metadata', metadata)::text, "
    "(extract(epoch from created_at) * 1000000)::bigint, "
    "(extract(epoch from updated_at) * 1000000)::bigint";
constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr size_t kMaxMetadataEntries = 64;
constexpr size_t kMaxMetadataBytes = 8192;
// The largest code point, UTF-8 encoded: sorts after every key with a given
// prefix in byte order.
constexpr char kMaxUtf8[] = "\xf4\x8f\xbf\xbf";

v1::ObjectInfo InfoFromRow(const db::Row& row) {
  v1::ObjectInfo info;
  info.set_namespace_(row.Text(0));
  info.set_key(row.Text(1));
  info.set_version(row.Int(2));
  info.set_backend(row.Text(3));
  info.set_physical_key(row.Text(4));
  info.set_tier(static_cast<StorageTier>(row.Int(5)));
  info.set_size(row.Int(6));
  info.set_sha256(row.Text(7));
  info.set_etag(row.Text(8));
  info.set_content_type(row.Text(9));
  v1::PutObjectHeader metadata;
  if (google::protobuf::util::JsonStringToMessage(row.Text(10), &metadata).ok()) {
    info.mutable_metadata()->swap(*metadata.mutable_metadata());
  }
  *info.mutable_created() = TimeUtil::MicrosecondsToTimestamp(row.Int(11));
  *info.mutable_updated() = TimeUtil::MicrosecondsToTimestamp(row.Int(12));
  return info;
}

std::string Subject(const std::string& ns, const std::string& key) {
  return absl::StrCat(ns, "/", key);
}

}  // namespace

absl::Status ValidateNamespace(const std::string& ns) {
  static const std::regex kNamespace(R"(^[a-z0-9][a-z0-9._-]{0,62}$)");
  if (ns.empty()) return absl::InvalidArgumentError("namespace is required");
  if (!std::regex_match(ns, kNamespace)) {
    return absl::InvalidArgumentError(
        "namespace must be 1-63 characters of a-z, 0-9, '.', '_', '-' starting with a letter or "
        "digit");
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(const std::string& key) {
  if (key.empty()) return absl::InvalidArgumentError("key is required");
  if (key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("key is longer than ", kMaxKeyBytes, " bytes"));
  }
  if (key.front() == '/') return absl::InvalidArgumentError("key must not start with '/'");
  for (unsigned char c : key) {
    if (c < 0x20 || c == 0x7f) return absl::InvalidArgumentError("key contains a control character");
  }
  size_t start = 0;
  while (start <= key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string::npos) end = key.size();
    std::string_view segment(key.data() + start, end - start);
    if (segment == ".." || segment == ".") {
      return absl::InvalidArgumentError("key must not contain '.' or '..' segments");
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

StorageCore::StorageCore(db::Pool& pool, std::map<std::string, std::unique_ptr<ObjectStore>> backends,
                         std::string default_backend, const core::Clock& clock)
    : pool_(pool),
      backends_(std::move(backends)),
      default_backend_(std::move(default_backend)),
      clock_(clock) {}

absl::StatusOr<std::unique_ptr<StorageCore::Upload>> StorageCore::BeginPut(
    const v1::PutObjectHeader& header) {
  CF_RETURN_IF_ERROR(ValidateNamespace(header.namespace_()));
  CF_RETURN_IF_ERROR(ValidateKey(header.key()));
  std::string backend = header.backend().empty() ? default_backend_ : header.backend();
  auto it = backends_.find(backend);
  if (it == backends_.end()) {
    return absl::NotFoundError(absl::StrCat("backend '", backend.substr(0, 64), "' is not configured"));
  }
  if (!cloudflux::common::v1::StorageTier_IsValid(header.tier())) {
    return absl::InvalidArgumentError("unknown tier");
  }
  if (header.content_type().size() > 256) return absl::InvalidArgumentError("content_type is too long");
  if (!header.expected_sha256().empty()) {
    static const std::regex kHex(R"(^[0-9a-f]{64}$)");
    if (!std::regex_match(header.expected_sha256(), kHex)) {
      return absl::InvalidArgumentError("expected_sha256 must be 64 lowercase hex characters");
    }
  }
  size_t metadata_bytes = 0;
  for (const auto& [k, v] : header.metadata()) metadata_bytes += k.size() + v.size();
  if (header.metadata_size() > static_cast<int>(kMaxMetadataEntries) ||
      metadata_bytes > kMaxMetadataBytes) {
    return absl::InvalidArgumentError(absl::StrCat("metadata is limited to ", kMaxMetadataEntries,
                                                   " entries and ", kMaxMetadataBytes, " bytes"));
  }
  auto upload = std::unique_ptr<Upload>(new Upload());
  upload->core_ = this;
  upload->header_ = header;
  upload->header_.set_backend(backend);
  if (upload->header_.tier() == cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED) {
    upload->header_.set_tier(cloudflux::common::v1::STORAGE_TIER_HOT);
  }
  upload->store_ = it->second.get();
  // Physical names are ours: a fresh one per write, so an overwrite never
  // touches the bytes readers may be streaming.
  std::string id = core::NewId();
  upload->physical_key_ = absl::StrCat("objects/", id.substr(id.size() - 2), "/", id);
  CF_ASSIGN_OR_RETURN(upload->writer_,
                      upload->store_->StartWrite(upload->physical_key_, upload->header_.tier()));
  return upload;
}

StorageCore::Upload::~Upload() {
  if (!finished_ && writer_ != nullptr) writer_->Abort();
}

absl::Status StorageCore::Upload::Write(std::string_view chunk) {
  if (finished_) return absl::FailedPreconditionError("upload already finished");
  hash_.Update(chunk);
  size_ += static_cast<int64_t>(chunk.size());
  return writer_->Write(chunk);
}

absl::StatusOr<v1::ObjectInfo> StorageCore::Upload::Finish() {
  if (finished_) return absl::FailedPreconditionError("upload already finished");
  finished_ = true;
  std::string sha = hash_.HexDigest();
  if (!header_.expected_sha256().empty() && sha != header_.expected_sha256()) {
    writer_->Abort();
    return absl::DataLossError(absl::StrCat("SHA-256 mismatch: received ", sha, ", expected ",
                                            header_.expected_sha256(), "; nothing was stored"));
  }
  absl::Status committed = writer_->Commit();
  if (!committed.ok()) {
    writer_->Abort();
    return committed;
  }
  v1::PutObjectHeader metadata_only;
  *metadata_only.mutable_metadata() = header_.metadata();
  std::string metadata_json;
  (void)google::protobuf::util::MessageToJsonString(metadata_only, &metadata_json);
  v1::ObjectInfo info;
  std::string replaced_backend, replaced_physical;
  absl::Status catalogued = core_->pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result old,
                        tx.Exec("SELECT backend, physical_key FROM storage.objects WHERE namespace "
                                "= $1 AND key = $2 FOR UPDATE",
                                {header_.namespace_(), header_.key()}));
    CF_ASSIGN_OR_RETURN(
        db::Result rows,
        tx.Exec(absl::StrCat(
                    "INSERT INTO storage.objects AS o (namespace, key, backend, physical_key, tier, "
                    "size, sha256, etag, content_type, metadata) VALUES ($1, $2, $3, $4, $5, $6, "
                    "$7, $8, $9, coalesce(($10::jsonb)->'metadata', '{}')) ON CONFLICT (namespace, "
                    "key) DO UPDATE SET version = o.version + 1, backend = EXCLUDED.backend, "
                    "physical_key = EXCLUDED.physical_key, tier = EXCLUDED.tier, size = "
                    "EXCLUDED.size, sha256 = EXCLUDED.sha256, etag = EXCLUDED.etag, content_type "
                    "= EXCLUDED.content_type, metadata = EXCLUDED.metadata, updated_at = now() "
                    "RETURNING ",
                    kColumns),
                {header_.namespace_(), header_.key(), header_.backend(), physical_key_,
                 std::to_string(static_cast<int>(header_.tier())), std::to_string(size_), sha,
                 "\"" + sha.substr(0, 32) + "\"", header_.content_type(), metadata_json}));
    info = InfoFromRow(rows[0]);
    if (!old.empty()) {
      replaced_backend = old[0].Text(0);
      replaced_physical = old[0].Text(1);
    }
    v1::ObjectCreated event;
    *event.mutable_object() = info;
    event.set_overwrite(!old.empty());
    std::string subject = Subject(info.namespace_(), info.key());
    return core_->outbox_.Enqueue(
        tx, kObjectTopic, events::MakeEnvelope("cloudflux/storage-adapter", "objects/" + subject,
                                               subject, event, core_->clock_));
  });
  if (!catalogued.ok()) {
    (void)store_->Delete(physical_key_);  // no orphan
    return catalogued;
  }
  if (!replaced_physical.empty()) {
    // The old version may live on another backend.
    auto old_store = core_->backends_.find(replaced_backend);
    absl::Status removed = old_store == core_->backends_.end()
                               ? absl::NotFoundError("backend " + replaced_backend + " is not configured")
                               : old_store->second->Delete(replaced_physical);
    if (!removed.ok()) {
      core::LogWarn("old object version not removed",
                    {{"physical_key", replaced_physical}, {"error", std::string(removed.message())}});
    }
  }
  return info;
}

absl::StatusOr<v1::ObjectInfo> StorageCore::Head(const std::string& ns, const std::string& key) {
  CF_RETURN_IF_ERROR(ValidateNamespace(ns));
  CF_RETURN_IF_ERROR(ValidateKey(key));
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec(absl::StrCat("SELECT ", kColumns,
                                              " FROM storage.objects WHERE namespace = $1 AND key = $2"),
                                 {ns, key}));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("object ", Subject(ns, key), " not found"));
  return InfoFromRow(rows[0]);
}

absl::StatusOr<std::pair<v1::ObjectInfo, std::unique_ptr<ObjectReader>>> StorageCore::OpenGet(
    const v1::GetObjectRequest& request) {
  if (request.offset() < 0 || request.length() < 0) {
    return absl::InvalidArgumentError("offset and length must not be negative");
  }
  CF_ASSIGN_OR_RETURN(v1::ObjectInfo info, Head(request.namespace_(), request.key()));
  if (request.offset() > info.size() ||
      (request.offset() == info.size() && info.size() > 0 && request.length() > 0) ||
      request.length() > info.size() - request.offset()) {
    return absl::OutOfRangeError(absl::StrCat("range ", request.offset(), "+", request.length(),
                                              " is outside the object's ", info.size(), " bytes"));
  }
  auto it = backends_.find(info.backend());
  if (it == backends_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("object is on backend '", info.backend(),
                                                      "', which is not configured here"));
  }
  CF_ASSIGN_OR_RETURN(auto reader,
                      it->second->OpenRead(info.physical_key(), request.offset(), request.length()));
  return std::pair{std::move(info), std::move(reader)};
}

absl::Status StorageCore::Delete(const std::string& ns, const std::string& key) {
  CF_RETURN_IF_ERROR(ValidateNamespace(ns));
  CF_RETURN_IF_ERROR(ValidateKey(key));
  std::string backend, physical;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result rows,
                        tx.Exec("DELETE FROM storage.objects WHERE namespace = $1 AND key = $2 "
                                "RETURNING backend, physical_key, version",
                                {ns, key}));
    if (rows.empty()) return absl::NotFoundError(absl::StrCat("object ", Subject(ns, key), " not found"));
    backend = rows[0].Text(0);
    physical = rows[0].Text(1);
    v1::ObjectDeleted event;
    event.set_namespace_(ns);
    event.set_key(key);
    event.set_version(rows[0].Int(2));
    return outbox_.Enqueue(tx, kObjectTopic,
                           events::MakeEnvelope("cloudflux/storage-adapter", "objects/" + Subject(ns, key),
                                                Subject(ns, key), event, clock_));
  }));
  auto it = backends_.find(backend);
  if (it != backends_.end()) {
    absl::Status removed = it->second->Delete(physical);
    if (!removed.ok()) {
      core::LogWarn("deleted object's bytes not removed",
                    {{"physical_key", physical}, {"error", std::string(removed.message())}});
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ListObjectsResponse> StorageCore::List(const v1::ListObjectsRequest& request) {
  CF_RETURN_IF_ERROR(ValidateNamespace(request.namespace_()));
  if (request.prefix().size() > kMaxKeyBytes) return absl::InvalidArgumentError("prefix is too long");
  if (request.delimiter().size() > 16) return absl::InvalidArgumentError("delimiter is too long");
  CF_ASSIGN_OR_RETURN(server::PageCursor cursor,
                      server::ParsePage(request.page(), kDefaultPageSize, kMaxPageSize));
  const int page_size = cursor.size;
  std::string after = std::move(cursor.after);
  const std::string& prefix = request.prefix();
  const std::string& delimiter = request.delimiter();
  v1::ListObjectsResponse out;
  // `after` is where the listing resumes (and the next page token): the last
  // key returned, or a rolled-up prefix followed by the largest code point.
  auto fetch = [&](int limit) {
    return pool_.Exec(absl::StrCat("SELECT ", kColumns,
                                   " FROM storage.objects WHERE namespace = $1 AND "
                                   "starts_with(key, $2) AND key COLLATE \"C\" > $3 COLLATE \"C\" "
                                   "ORDER BY key COLLATE \"C\" LIMIT $4"),
                      {request.namespace_(), prefix, after, std::to_string(limit)});
  };
  int emitted = 0;
  while (emitted < page_size) {
    int batch = page_size - emitted;
    CF_ASSIGN_OR_RETURN(db::Result rows, fetch(batch));
    bool rolled_up = false;
    for (const auto& row : rows) {
      std::string key = row.Text(1);
      size_t cut = delimiter.empty() ? std::string::npos : key.find(delimiter, prefix.size());
      if (cut != std::string::npos) {
        std::string common = key.substr(0, cut + delimiter.size());
        out.add_common_prefixes(common);
        ++emitted;
        after = common + kMaxUtf8;  // skip every other key under it
        rolled_up = true;
        break;
      }
      *out.add_objects() = InfoFromRow(row);
      ++emitted;
      after = key;
    }
    if (!rolled_up && static_cast<int>(rows.size()) < batch) break;  // exhausted
  }
  out.mutable_page()->set_total_size(-1);
  if (emitted >= page_size) {
    CF_ASSIGN_OR_RETURN(db::Result next, fetch(1));
    if (!next.empty()) out.mutable_page()->set_next_page_token(server::PageToken(after));
  }
  return out;
}

v1::ListBackendsResponse StorageCore::Backends() {
  v1::ListBackendsResponse out;
  for (const auto& [name, store] : backends_) {
    auto* b = out.add_backends();
    b->set_name(name);
    b->set_provider(store->provider());
    absl::Status s = store->Ping();
    b->set_healthy(s.ok());
    b->set_error(std::string(s.message()));
    b->set_is_default(name == default_backend_);
  }
  return out;
}

absl::Status StorageCore::PingBackends() {
  for (const auto& [name, store] : backends_) {
    CF_RETURN_IF_ERROR(core::Annotate(store->Ping(), "backend " + name));
  }
  return absl::OkStatus();
}

}  // namespace cloudflux::storage
