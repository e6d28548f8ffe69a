#include "storage_core.h"
#include "tiers.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <unistd.h>

#include <iterator>
#include <regex>
#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"
#include "cloudflux/pricing/catalog.h"
#include "cloudflux/server/paging.h"
#include "cloudflux/storage/v1/events.pb.h"

namespace cloudflux::storage {

namespace v1 = cloudflux::storage::v1;
using cloudflux::common::v1::StorageTier;
using google::protobuf::util::TimeUtil;

namespace {

// Payload of a copy's ABORTED status: its source was moved while it waited
// for another copy of the same bytes (see CopyOnce).
constexpr absl::string_view kSourceMoved = "cloudflux.storage/source-moved";

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

constexpr size_t kCopyChunkBytes = 1 << 20;
constexpr int64_t kCopyProgressEvery = 8 << 20;
// Copies up to this size are never resumed (S3's smallest part).
constexpr int64_t kMinResumableBytes = 5 << 20;

}  // namespace

cloudflux::events::v1::EventEnvelope ObjectEventEnvelope(const std::string& ns,
                                                         const std::string& key,
                                                         const google::protobuf::Message& event,
                                                         const core::Clock& clock) {
  std::string subject = Subject(ns, key);
  return events::MakeEnvelope("cloudflux/storage-adapter", "objects/" + subject, subject, event,
                              clock);
}

StorageCore::StorageCore(db::Pool& pool, std::map<std::string, std::unique_ptr<ObjectStore>> backends,
                         std::string default_backend, std::string instance_id,
                         const core::Clock& clock)
    : pool_(pool),
      backends_(std::move(backends)),
      default_backend_(std::move(default_backend)),
      instance_id_(std::move(instance_id)),
      clock_(clock) {}

absl::StatusOr<ObjectStore*> StorageCore::Backend(const std::string& name) {
  auto it = backends_.find(name);
  if (it == backends_.end()) {
    return absl::NotFoundError(absl::StrCat("backend '", name.substr(0, 64), "' is not configured"));
  }
  return it->second.get();
}

absl::StatusOr<ObjectStore*> StorageCore::StoreOf(const v1::ObjectInfo& object) {
  auto it = backends_.find(object.backend());
  if (it == backends_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("object ", Subject(object.namespace_(), object.key()),
                                                      " is on backend '", object.backend(),
                                                      "', which is not configured here"));
  }
  return it->second.get();
}

absl::StatusOr<std::string> StorageCore::ReservePhysicalKey(const std::string& backend) {
  // Physical names are ours: a fresh one per write, so an overwrite never
  // touches the bytes readers may be streaming.
  std::string id = core::NewId();
  std::string physical = absl::StrCat("objects/", id.substr(id.size() - 2), "/", id);
  CF_RETURN_IF_ERROR(pool_
                         .Exec("INSERT INTO storage.pending_bytes (backend, physical_key, "
                               "instance_id) VALUES ($1, $2, $3)",
                               {backend, physical, instance_id_})
                         .status());
  return physical;
}

void StorageCore::GiveUpBytes(const std::string& backend, const std::string& physical_key) {
  absl::Status marked = pool_
                            .Exec("UPDATE storage.pending_bytes SET instance_id = NULL, created_at = "
                                  "'-infinity' WHERE backend = $1 AND physical_key = $2",
                                  {backend, physical_key})
                            .status();
  if (!marked.ok()) {
    core::LogWarn("bytes to remove not recorded; the orphan sweep finds them when this instance stops",
                  {{"backend", backend}, {"physical_key", physical_key}, {"error", std::string(marked.message())}});
  }
}

absl::Status StorageCore::Heartbeat() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return pool_
      .Exec("UPDATE storage.instances SET heartbeat_at = now(), host = $2 WHERE instance_id = $1",
            {instance_id_, std::string(host)})
      .status();
}

void StorageCore::ExportMetrics(prometheus::Registry& registry) {
  copy_sent_bytes_ = &prometheus::BuildCounter()
                          .Name("cloudflux_storage_copy_sent_bytes_total")
                          .Help("Bytes streamed by copies between backends to their targets.")
                          .Register(registry)
                          .Add({});
  copy_resumed_bytes_ = &prometheus::BuildCounter()
                             .Name("cloudflux_storage_copy_resumed_bytes_total")
                             .Help("Bytes an interrupted copy had stored at its target that the "
                                   "copy resuming it did not send again.")
                             .Register(registry)
                             .Add({});
  verified_bytes_ = &prometheus::BuildCounter()
                        .Name("cloudflux_storage_verified_bytes_total")
                        .Help("Bytes read back from a store to check them against the catalog's SHA-256 "
                              "(VerifyObject, and copies that read their target back).")
                        .Register(registry)
                        .Add({});
  replica_reads_ = &prometheus::BuildCounter()
                        .Name("cloudflux_storage_replica_reads_total")
                        .Help("Reads that failed over from an object's own backend to a replica, by the "
                              "replica's backend.")
                        .Register(registry);
}

void StorageCore::RemoveBytes(const std::string& backend, const std::string& physical_key) {
  // Only bytes still pending, taken from any writer first: bytes a catalog
  // transaction has taken (an answer lost after its commit, or another
  // writer of the same upload) are an object's, and stay.
  auto taken = pool_.Exec("UPDATE storage.pending_bytes SET instance_id = NULL WHERE backend = $1 AND "
                          "physical_key = $2 RETURNING 1",
                          {backend, physical_key});
  if (taken.ok() && taken->empty()) return;
  auto it = backends_.find(backend);
  absl::Status removed = !taken.ok()             ? taken.status()
                         : it == backends_.end() ? absl::NotFoundError("backend " + backend + " is not configured")
                                                 : it->second->Delete(physical_key);
  if (removed.ok()) {
    removed = pool_
                  .Exec("DELETE FROM storage.pending_bytes WHERE backend = $1 AND physical_key = $2",
                        {backend, physical_key})
                  .status();
  }
  if (!removed.ok()) {
    core::LogWarn("bytes not removed; the sweeper retries",
                  {{"backend", backend},
                   {"physical_key", physical_key},
                   {"error", std::string(removed.message())}});
  }
}

void StorageCore::RetireBytes(const std::string& backend, const std::string& physical_key) {
  retired_.Run([this, backend, physical_key] { RemoveBytes(backend, physical_key); });
}

absl::StatusOr<std::unique_ptr<StorageCore::Upload>> StorageCore::BeginPut(
    const v1::PutObjectHeader& header) {
  CF_RETURN_IF_ERROR(ValidateNamespace(header.namespace_()));
  CF_RETURN_IF_ERROR(ValidateKey(header.key()));
  std::string backend = header.backend().empty() ? default_backend_ : header.backend();
  CF_ASSIGN_OR_RETURN(ObjectStore * store, Backend(backend));
  if (!cloudflux::common::v1::StorageTier_IsValid(header.tier())) {
    return absl::InvalidArgumentError("unknown tier");
  }
  CF_RETURN_IF_ERROR(CheckTierOn(store->provider(), header.tier(), backend));
  CF_RETURN_IF_ERROR(core::ValidateLabel(header.content_type(), "content_type", 256));
  if (header.has_if_version() && header.if_version() < 0) {
    return absl::InvalidArgumentError("if_version must not be negative");
  }
  if (header.has_size() && header.size() < 0) {
    return absl::InvalidArgumentError("size must not be negative");
  }
  if (!header.expected_sha256().empty()) {
    static const std::regex kHex(R"(^[0-9a-f]{64}$)");
    if (!std::regex_match(header.expected_sha256(), kHex)) {
      return absl::InvalidArgumentError("expected_sha256 must be 64 lowercase hex characters");
    }
  }
  size_t metadata_bytes = 0;
  for (const auto& [k, v] : header.metadata()) {
    metadata_bytes += k.size() + v.size();
    if (k.empty()) return absl::InvalidArgumentError("a metadata name is empty");
    CF_RETURN_IF_ERROR(core::ValidateLabel(k, "a metadata name", kMaxMetadataBytes));
    CF_RETURN_IF_ERROR(core::ValidateLabel(v, "a metadata value", kMaxMetadataBytes));
  }
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
  upload->store_ = store;
  CF_ASSIGN_OR_RETURN(upload->physical_key_, ReservePhysicalKey(backend));
  auto writer = store->StartWrite(upload->physical_key_, upload->header_.tier());
  if (!writer.ok()) {
    RemoveBytes(backend, upload->physical_key_);
    return writer.status();
  }
  upload->writer_ = std::move(*writer);
  return upload;
}

StorageCore::Upload::~Upload() {
  if (!finished_ && writer_ != nullptr) {
    writer_->Abort();
    core_->RemoveBytes(header_.backend(), physical_key_);
  }
}

absl::Status StorageCore::Upload::WriteParts(const std::vector<std::string_view>& parts) {
  if (finished_) return absl::FailedPreconditionError("upload already finished");
  if (header_.has_size()) {
    int64_t incoming = 0;
    for (std::string_view part : parts) incoming += static_cast<int64_t>(part.size());
    if (size_ + incoming > header_.size()) {
      return absl::OutOfRangeError(absl::StrCat("more bytes than the declared size of ",
                                                header_.size(), "; nothing was stored"));
    }
  }
  for (std::string_view part : parts) {
    hash_.Update(part);
    size_ += static_cast<int64_t>(part.size());
  }
  return writer_->WriteParts(parts);
}

absl::Status StorageCore::Upload::CheckWhole(const v1::PutObjectTrailer* trailer,
                                             const std::string& sha) const {
  if (!header_.has_size() && trailer == nullptr) {
    return absl::InvalidArgumentError(
        "the upload ended without a declared size (header.size) or a trailer, so it cannot be "
        "told from a dropped one; nothing was stored");
  }
  if (header_.has_size() && size_ != header_.size()) {
    return absl::DataLossError(absl::StrCat("received ", size_, " of the ", header_.size(),
                                            " bytes declared; nothing was stored"));
  }
  if (trailer != nullptr && trailer->size() != size_) {
    return absl::DataLossError(absl::StrCat("received ", size_, " bytes, the trailer says ",
                                            trailer->size(), "; nothing was stored"));
  }
  for (const std::string* expected : {&header_.expected_sha256(),
                                      trailer != nullptr ? &trailer->sha256() : nullptr}) {
    if (expected != nullptr && !expected->empty() && *expected != sha) {
      return absl::DataLossError(absl::StrCat("SHA-256 mismatch: received ", sha, ", expected ",
                                              *expected, "; nothing was stored"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ObjectInfo> StorageCore::Upload::Finish(const v1::PutObjectTrailer* trailer) {
  if (finished_) return absl::FailedPreconditionError("upload already finished");
  finished_ = true;
  std::string sha = hash_.HexDigest();
  absl::Status whole = CheckWhole(trailer, sha);
  absl::Status stored = whole.ok() ? writer_->Commit() : whole;
  if (!stored.ok()) {
    writer_->Abort();
    core_->RemoveBytes(header_.backend(), physical_key_);
    return stored;
  }
  return core_->CatalogNew(header_, *store_, {physical_key_, sha, size_, false});
}

absl::StatusOr<v1::ObjectInfo> StorageCore::CatalogNew(const v1::PutObjectHeader& header,
                                                       ObjectStore& store,
                                                       const StoredCopy& bytes) {
  v1::PutObjectHeader metadata_only;
  *metadata_only.mutable_metadata() = header.metadata();
  std::string metadata_json;
  (void)google::protobuf::util::MessageToJsonString(metadata_only, &metadata_json);
  v1::ObjectInfo info;
  std::string replaced_backend, replaced_physical;
  absl::Status catalogued = pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    // One statement: claim the pending write (gone if a sweeper judged this
    // process dead: then the bytes may be gone too), lock and read the
    // version being replaced (`old` is referenced by the upsert's WHERE so
    // that it runs, and locks, before the upsert changes the row), upsert,
    // and record the replaced bytes for removal.
    CF_ASSIGN_OR_RETURN(
        db::Result rows,
        tx.Exec(absl::StrCat(
                    "WITH claimed AS (DELETE FROM storage.pending_bytes WHERE backend = $3 AND "
                    "physical_key = $4 AND instance_id IS NOT NULL RETURNING 1), "
                    "old AS (SELECT backend, physical_key, version FROM storage.objects WHERE "
                    "namespace = $1 AND key = $2 FOR UPDATE), "
                    "o AS (INSERT INTO storage.objects AS o (namespace, key, backend, physical_key, "
                    "tier, size, sha256, etag, content_type, metadata) SELECT $1, $2, $3, $4, $5, "
                    "$6, $7, $8, $9, coalesce(($10::jsonb)->'metadata', '{}') WHERE EXISTS (SELECT "
                    "1 FROM claimed) AND (SELECT count(*) FROM old) < 2 AND ($11::bigint IS NULL OR "
                    "coalesce((SELECT version FROM old), 0) = $11) ON CONFLICT (namespace, key) DO "
                    "UPDATE SET version = o.version + 1, backend = EXCLUDED.backend, physical_key = EXCLUDED.physical_key, tier = "
                    "EXCLUDED.tier, size = EXCLUDED.size, sha256 = EXCLUDED.sha256, etag = "
                    "EXCLUDED.etag, content_type = EXCLUDED.content_type, metadata = "
                    "EXCLUDED.metadata, updated_at = now() WHERE $11::bigint IS NULL OR o.version = $11 "
                    "RETURNING *), "
                    "gone AS (INSERT INTO storage.pending_bytes (backend, physical_key) SELECT "
                    "backend, physical_key FROM old WHERE EXISTS (SELECT 1 FROM claimed) ON "
                    "CONFLICT DO NOTHING) "
                    "SELECT ", kColumns, ", (SELECT backend FROM old), (SELECT physical_key FROM old) FROM o"),
                {header.namespace_(), header.key(), store.name(), bytes.physical_key,
                 std::to_string(static_cast<int>(header.tier())), std::to_string(bytes.size),
                 bytes.sha256, "\"" + bytes.sha256.substr(0, 32) + "\"", header.content_type(),
                 metadata_json,
                 db::OptionalParam(header.has_if_version() ? std::optional<int64_t>(header.if_version())
                                                           : std::nullopt)}));
    if (rows.empty() && header.has_if_version()) {
      // The condition, or an abandoned write: the object's version tells.
      CF_ASSIGN_OR_RETURN(db::Result at, tx.Exec("SELECT version FROM storage.objects WHERE namespace = $1 AND "
                                                 "key = $2",
                                                 {header.namespace_(), header.key()}));
      const int64_t version = at.empty() ? 0 : at[0].Int(0);
      if (version != header.if_version()) {
        return absl::AbortedError(absl::StrCat(
            "object ", Subject(header.namespace_(), header.key()),
            version == 0 ? " does not exist" : absl::StrCat(" is at version ", version),
            header.if_version() == 0 ? ", and the write was to create it"
                                     : absl::StrCat(", not ", header.if_version()),
            "; nothing was stored"));
      }
    }
    if (rows.empty()) {
      return absl::AbortedError(
          "the write was abandoned: this process was taken for dead and its pending bytes "
          "removed; retry the upload");
    }
    info = InfoFromRow(rows[0]);
    if (!rows[0].IsNull(13)) {
      replaced_backend = rows[0].Text(13);
      replaced_physical = rows[0].Text(14);
    }
    v1::ObjectCreated event;
    *event.mutable_object() = info;
    event.set_overwrite(!replaced_physical.empty());
    return outbox_.Enqueue(tx, kObjectTopic,
                           ObjectEventEnvelope(info.namespace_(), info.key(), event, clock_));
  });
  if (!catalogued.ok()) {
    RemoveBytes(store.name(), bytes.physical_key);  // no orphan
    return catalogued;
  }
  // The old version may live on another backend.
  if (!replaced_physical.empty()) RetireBytes(replaced_backend, replaced_physical);
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

absl::StatusOr<v1::ObjectInfo> StorageCore::HeadWithReadState(const std::string& ns,
                                                              const std::string& key) {
  // Azure rehydrates for up to 15 hours after a blob's tier has changed.
  constexpr absl::Duration kRestoreWindow = absl::Hours(24);
  CF_ASSIGN_OR_RETURN(v1::ObjectInfo info, Head(ns, key));
  CF_ASSIGN_OR_RETURN(std::vector<v1::Replica> replicas, Replicas(ns, key, info.version()));
  *info.mutable_replicas() = {replicas.begin(), replicas.end()};
  auto store = StoreOf(info);
  if (!store.ok()) return info;  // a backend no longer configured: the catalog's answer
  bool archived = pricing::IsArchiveTier(info.tier());
  bool leaving = (*store)->RestoresAfterTierChange() &&
                 absl::Now() - absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(info.updated())) <
                     kRestoreWindow;
  if (!archived && !leaving) return info;
  CF_ASSIGN_OR_RETURN(ReadState state, (*store)->ReadStateOf(info.physical_key()));
  v1::RestoreStatus* restore = info.mutable_restore();
  switch (state.state) {
    case ReadState::State::kReadable: restore->set_state(v1::RESTORE_STATE_READABLE); break;
    case ReadState::State::kNeedsRestore: restore->set_state(v1::RESTORE_STATE_NEEDED); break;
    case ReadState::State::kRestoring: restore->set_state(v1::RESTORE_STATE_IN_PROGRESS); break;
  }
  if (state.readable_until.has_value()) {
    *restore->mutable_readable_until() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(*state.readable_until));
  }
  return info;
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
  // The object's own bytes first, then (looked up only if they fail) the
  // same version where a relocation has just moved it, and its replicas: a
  // read fails over to the next copy when one cannot be opened or fails,
  // mid-stream too (the copies hold the same bytes, so the next one goes on
  // at the same offset).
  auto elsewhere = [this, ns = info.namespace_(), key = info.key(), version = info.version(), sha = info.sha256(),
                    backend = info.backend(), physical = info.physical_key()] {
    std::vector<FailoverReader::Source> out;
    auto now = Head(ns, key);
    if (now.ok() && now->version() == version && now->sha256() == sha &&
        (now->backend() != backend || now->physical_key() != physical)) {
      if (auto it = backends_.find(now->backend()); it != backends_.end()) {
        out.push_back({it->second.get(), now->backend(), now->physical_key(), /*replica=*/false});
      }
    }
    auto found = Replicas(ns, key, version);
    if (!found.ok()) {
      core::LogWarn("replicas not looked up", {{"object", Subject(ns, key)},
                                               {"error", std::string(found.status().message())}});
      return out;
    }
    for (const v1::Replica& r : *found) {
      if (auto it = backends_.find(r.backend()); it != backends_.end()) {
        out.push_back({it->second.get(), r.backend(), r.physical_key()});
      }
    }
    return out;
  };
  std::vector<FailoverReader::Source> sources;
  auto own = StoreOf(info);
  if (own.ok()) {
    sources.push_back({*own, info.backend(), info.physical_key(), /*replica=*/false});
  } else {
    sources = elsewhere();
    if (sources.empty()) return own.status();
  }
  const int64_t length = request.length() > 0 ? request.length() : info.size() - request.offset();
  auto reader = std::make_unique<FailoverReader>(
      std::move(sources), own.ok() ? std::function<std::vector<FailoverReader::Source>()>(elsewhere) : nullptr,
      request.offset(), length,
      [this, subject = Subject(info.namespace_(), info.key())](const FailoverReader::Source& from,
                                                               const FailoverReader::Source& to,
                                                               const absl::Status& why) {
        if (!to.replica) {
          core::LogInfo("the object moved during the read; reading on from its new place",
                        {{"object", subject}, {"from", from.backend}, {"to", to.backend}});
          return;
        }
        if (replica_reads_ != nullptr) replica_reads_->Add({{"backend", to.backend}}).Increment();
        core::LogWarn("read failed over to a replica", {{"object", subject},
                                                         {"from", from.backend},
                                                         {"to", to.backend},
                                                         {"error", std::string(why.message())}});
      });
  CF_RETURN_IF_ERROR(reader->OpenFrom(0, absl::OkStatus()));
  return std::pair{std::move(info), std::unique_ptr<ObjectReader>(std::move(reader))};
}

FailoverReader::FailoverReader(std::vector<Source> sources, std::function<std::vector<Source>()> more,
                               int64_t offset, int64_t length, OnFailover on_failover)
    : sources_(std::move(sources)),
      more_(std::move(more)),
      offset_(offset),
      length_(length),
      on_failover_(std::move(on_failover)) {}

bool FailoverReader::LoadMore() {
  if (!more_) return false;
  std::vector<Source> extra = std::exchange(more_, nullptr)();
  const bool any = !extra.empty();
  sources_.insert(sources_.end(), std::make_move_iterator(extra.begin()), std::make_move_iterator(extra.end()));
  return any;
}

absl::Status FailoverReader::OpenFrom(size_t i, absl::Status why) {
  for (; i < sources_.size() || LoadMore(); ++i) {
    const Source& s = sources_[i];
    auto opened = s.store->OpenRead(s.physical_key, offset_ + done_, length_ - done_);
    if (opened.ok()) {
      if (!why.ok() && on_failover_) on_failover_(sources_[at_], s, why);
      // Chunks already handed out may point into the old reader's buffers.
      if (current_ != nullptr) retired_.push_back(std::move(current_));
      current_ = std::move(*opened);
      at_ = i;
      return absl::OkStatus();
    }
    why = opened.status();
    at_ = i;
  }
  return why;
}

absl::StatusOr<Chunk> FailoverReader::ReadChunk(size_t max) {
  if (done_ >= length_) return Chunk{};
  for (;;) {
    absl::StatusOr<Chunk> chunk = current_->ReadChunk(max);
    if (chunk.ok()) {
      done_ += static_cast<int64_t>(chunk->size);
      return chunk;
    }
    if (at_ + 1 >= sources_.size() && !LoadMore()) return chunk.status();
    CF_RETURN_IF_ERROR(OpenFrom(at_ + 1, chunk.status()));
  }
}

absl::StatusOr<std::vector<v1::Replica>> StorageCore::Replicas(const std::string& ns, const std::string& key,
                                                               int64_t version) {
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec("SELECT backend, physical_key, tier, version, (extract(epoch FROM created_at) * "
                                 "1000000)::bigint FROM storage.replicas WHERE namespace = $1 AND key = $2 AND "
                                 "version = $3 ORDER BY backend",
                                 {ns, key, std::to_string(version)}));
  std::vector<v1::Replica> out;
  for (const auto& row : rows) {
    v1::Replica& r = out.emplace_back();
    r.set_backend(row.Text(0));
    r.set_physical_key(row.Text(1));
    r.set_tier(static_cast<StorageTier>(row.Int(2)));
    r.set_version(row.Int(3));
    *r.mutable_created() = TimeUtil::MicrosecondsToTimestamp(row.Int(4));
  }
  return out;
}

absl::Status StorageCore::Delete(const std::string& ns, const std::string& key, int64_t version) {
  CF_RETURN_IF_ERROR(ValidateNamespace(ns));
  CF_RETURN_IF_ERROR(ValidateKey(key));
  if (version < 0) return absl::InvalidArgumentError("version must not be negative");
  std::string backend, physical;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result rows,
                        tx.Exec("WITH d AS (DELETE FROM storage.objects WHERE namespace = $1 AND "
                                "key = $2 AND ($3 = 0 OR version = $3) RETURNING backend, physical_key, version), "
                                "p AS (INSERT INTO storage.pending_bytes (backend, physical_key) SELECT backend, "
                                "physical_key FROM d ON CONFLICT DO NOTHING) SELECT * FROM d",
                                {ns, key, std::to_string(version)}));
    if (rows.empty() && version != 0) {
      CF_ASSIGN_OR_RETURN(db::Result current, tx.Exec("SELECT version FROM storage.objects WHERE namespace = $1 "
                                                      "AND key = $2",
                                                      {ns, key}));
      if (!current.empty()) {
        return absl::AbortedError(absl::StrCat("object ", Subject(ns, key), " is at version ", current[0].Int(0),
                                               ", not ", version, "; nothing deleted"));
      }
    }
    if (rows.empty()) return absl::NotFoundError(absl::StrCat("object ", Subject(ns, key), " not found"));
    backend = rows[0].Text(0);
    physical = rows[0].Text(1);
    v1::ObjectDeleted event;
    event.set_namespace_(ns);
    event.set_key(key);
    event.set_version(rows[0].Int(2));
    return outbox_.Enqueue(tx, kObjectTopic, ObjectEventEnvelope(ns, key, event, clock_));
  }));
  RetireBytes(backend, physical);
  return absl::OkStatus();
}

absl::StatusOr<v1::ListObjectsResponse> StorageCore::List(const v1::ListObjectsRequest& request) {
  CF_RETURN_IF_ERROR(ValidateNamespace(request.namespace_()));
  CF_RETURN_IF_ERROR(core::ValidatePrefix(request.prefix()));
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
  // Keys are in the "C" collation: byte order, the primary key's order.
  auto fetch = [&](int limit) {
    return pool_.Exec(absl::StrCat("SELECT ", kColumns,
                                   " FROM storage.objects WHERE namespace = $1 AND "
                                   "starts_with(key, $2) AND key > $3 ORDER BY key LIMIT $4"),
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

absl::StatusOr<std::pair<std::string, int64_t>> StorageCore::HashStored(ObjectStore& store,
                                                                        const std::string& physical_key,
                                                                        int64_t size,
                                                                        const std::function<bool()>& progress) {
  core::Sha256 hash;
  int64_t read = 0;
  if (size > 0) {  // an empty object has no range to read
    CF_ASSIGN_OR_RETURN(auto reader, store.OpenRead(physical_key, 0, 0));
    int64_t asked = 0;
    while (true) {
      CF_ASSIGN_OR_RETURN(Chunk chunk, reader->ReadChunk(kCopyChunkBytes));
      if (chunk.size == 0) break;
      hash.Update(std::string_view(chunk.data, chunk.size));
      read += static_cast<int64_t>(chunk.size);
      if (verified_bytes_ != nullptr) verified_bytes_->Increment(static_cast<double>(chunk.size));
      if (progress != nullptr && read - asked >= kCopyProgressEvery) {
        asked = read;
        if (!progress()) return absl::CancelledError("verification cancelled");
      }
    }
  }
  return std::make_pair(hash.HexDigest(), read);
}

absl::StatusOr<StorageCore::StoredCopy> StorageCore::CopyBytes(const v1::ObjectInfo& source,
                                                               ObjectStore& from, ObjectStore& to,
                                                               StorageTier tier,
                                                               const CopyProgress& progress, const CopyLimits& limits) {
  absl::StatusOr<StoredCopy> copy = WriteCopy(source, from, to, tier, progress, limits);
  if (!copy.ok() || !limits.verify) return copy;
  const int64_t total = source.size();
  auto hashed = HashStored(to, copy->physical_key, total, [&] {
    return progress == nullptr ||
           progress({.copied = total, .total = total, .resumed = 0, .server_side = copy->server_side});
  });
  if (hashed.ok() && hashed->first == source.sha256() && hashed->second == total) return copy;
  RemoveBytes(to.name(), copy->physical_key);
  if (!hashed.ok()) {
    return core::Annotate(hashed.status(), absl::StrCat("the copy of ", Subject(source.namespace_(), source.key()),
                                                        " could not be read back from ", to.name()));
  }
  core::LogWarn("a copy read back from its target does not match the catalog; removed",
                {{"object", Subject(source.namespace_(), source.key())},
                 {"backend", to.name()},
                 {"sha256", hashed->first},
                 {"bytes", std::to_string(hashed->second)}});
  return absl::DataLossError(absl::StrCat("the copy of ", Subject(source.namespace_(), source.key()), " on ",
                                          to.name(), " reads back as ", hashed->second, " bytes with SHA-256 ",
                                          hashed->first, ", not the catalog's ", total, " bytes with ",
                                          source.sha256(), "; it was removed and nothing changed"));
}

absl::StatusOr<StorageCore::StoredCopy> StorageCore::WriteCopy(const v1::ObjectInfo& source,
                                                               ObjectStore& from, ObjectStore& to,
                                                               StorageTier tier,
                                                               const CopyProgress& progress, const CopyLimits& limits) {
  const int64_t total = source.size();
  if (&from == &to) {
    CF_ASSIGN_OR_RETURN(std::string physical, ReservePhysicalKey(to.name()));
    if (progress != nullptr && !progress({.copied = 0, .total = total, .server_side = true})) {
      RemoveBytes(to.name(), physical);
      return absl::CancelledError("copy cancelled");
    }
    absl::Status copied = to.CopyWithin(source.physical_key(), physical, tier, total);
    if (copied.ok()) return StoredCopy{physical, source.sha256(), total, true};
    RemoveBytes(to.name(), physical);
    if (!absl::IsUnimplemented(copied)) return copied;
  }
  // No store resumes an object of one part (S3's smallest is 5 MiB): small
  // copies skip the lookup.
  std::optional<ResumePoint> resume;
  if (total <= kMinResumableBytes) return StreamCopy(source, from, to, tier, progress, std::nullopt, limits);
  CF_ASSIGN_OR_RETURN(resume, ClaimResumable(source, to, tier));
  return StreamCopy(source, from, to, tier, progress, std::move(resume), limits);
}

absl::StatusOr<StorageCore::StoredCopy> StorageCore::StreamCopy(const v1::ObjectInfo& source,
                                                                ObjectStore& from, ObjectStore& to,
                                                                StorageTier tier,
                                                                const CopyProgress& progress,
                                                                std::optional<ResumePoint> resume,
                                                                const CopyLimits& limits) {
  const int64_t total = source.size();
  std::string physical;
  std::unique_ptr<ObjectWriter> writer;
  auto hash = std::make_unique<core::Sha256>();
  int64_t resumed = 0;
  if (resume.has_value()) {
    // The upload may have been completed before its record could be ended
    // (the process killed in between): the object is then there, whole. Its
    // key is this copy's alone, and an upload is completed only after the
    // whole source has hashed to the catalog's SHA-256.
    auto stored = to.StoredSize(resume->physical_key);
    if (stored.ok() && *stored == total && total > 0) {
      if (progress != nullptr &&
          !progress({.copied = total, .total = total, .resumed = total, .server_side = false})) {
        EndResumable(source, to, tier, /*keep=*/true);  // the next copy finds it again
        return absl::CancelledError("copy cancelled");
      }
      EndResumable(source, to, tier, /*keep=*/false);
      core::LogInfo("an interrupted copy had been completed; nothing left to send",
                    {{"object", Subject(source.namespace_(), source.key())},
                     {"backend", to.name()},
                     {"total_bytes", std::to_string(total)}});
      if (copy_resumed_bytes_ != nullptr) copy_resumed_bytes_->Increment(static_cast<double>(total));
      return StoredCopy{resume->physical_key, source.sha256(), total, false};
    }
    auto resumed_writer = to.ResumeWrite(resume->physical_key, tier, resume->progress);
    bool consistent = resume->progress.bytes() < total ||
                      (resume->progress.bytes() == total && total > 0);
    if (resumed_writer.ok() && consistent && hash->RestoreState(resume->hash_state) &&
        static_cast<int64_t>(hash->bytes()) == resume->progress.bytes()) {
      physical = resume->physical_key;
      writer = std::move(*resumed_writer);
      resumed = resume->progress.bytes();
      core::LogInfo("resuming a copy from the parts already stored",
                    {{"object", Subject(source.namespace_(), source.key())},
                     {"backend", to.name()},
                     {"resumed_bytes", std::to_string(resumed)},
                     {"total_bytes", std::to_string(total)}});
    } else {
      core::LogWarn("an interrupted copy cannot be resumed; copying from the start",
                    {{"object", Subject(source.namespace_(), source.key())},
                     {"backend", to.name()},
                     {"error", resumed_writer.ok() ? "inconsistent record"
                                                   : std::string(resumed_writer.status().message())}});
      EndResumable(source, to, tier, /*keep=*/false);
      GiveUpBytes(to.name(), resume->physical_key);
      hash = std::make_unique<core::Sha256>();
    }
  }
  if (writer == nullptr) {
    CF_ASSIGN_OR_RETURN(physical, ReservePhysicalKey(to.name()));
    auto started = to.StartWrite(physical, tier);
    if (!started.ok()) {
      RemoveBytes(to.name(), physical);
      return started.status();
    }
    writer = std::move(*started);
    writer->ExpectSize(total);
  }
  // Parts already recorded, and the hash's state at each part boundary the
  // stream has passed that is not recorded yet.
  const int64_t part_size = writer->PartSize();
  size_t recorded = resume.has_value() && resumed > 0 ? resume->progress.etags.size() : 0;
  std::map<int64_t, std::string> boundary_states;
  int64_t copied = resumed;
  auto report = [&] {
    return progress == nullptr ||
           progress({.copied = copied, .total = total, .resumed = resumed, .server_side = false});
  };
  // Records what the store holds now, if that is more than was recorded.
  auto record = [&]() -> absl::Status {
    std::optional<UploadProgress> held = writer->Progress();
    if (!held.has_value() || held->etags.size() <= recorded) return absl::OkStatus();
    auto state = boundary_states.find(held->bytes());
    if (state == boundary_states.end()) return absl::OkStatus();
    CF_RETURN_IF_ERROR(RecordResumable(source, to, tier, physical, *held, state->second));
    recorded = held->etags.size();
    boundary_states.erase(boundary_states.begin(), std::next(state));
    return absl::OkStatus();
  };
  bool committing = false;
  auto stream = [&]() -> absl::Status {
    if (!report()) return absl::CancelledError("copy cancelled");
    // Joined while bytes are sent: a copy that waits for its reader or
    // writer is still a member, and its share goes to the others.
    std::unique_ptr<CopyPacers::Member> pace =
        limits.rate > 0 ? pacers_.Join(limits.pace_group, limits.rate) : nullptr;
    if (copied < total) {
      CF_ASSIGN_OR_RETURN(auto reader, from.OpenRead(source.physical_key(), copied, total - copied));
      int64_t reported = copied;
      while (true) {
        size_t want = kCopyChunkBytes;
        if (part_size > 0) {  // stop at part boundaries, to save the hash there
          want = std::min<int64_t>(want, part_size - copied % part_size);
        }
        CF_ASSIGN_OR_RETURN(Chunk chunk, reader->ReadChunk(want));
        if (chunk.size == 0) break;
        std::string_view bytes(chunk.data, chunk.size);  // the reader's own buffer, not a copy
        hash->Update(bytes);
        copied += static_cast<int64_t>(bytes.size());
        CF_RETURN_IF_ERROR(writer->Write(bytes));
        if (copy_sent_bytes_ != nullptr) copy_sent_bytes_->Increment(static_cast<double>(bytes.size()));
        if (pace != nullptr) {  // the bytes sent may not run ahead of the schedule
          pace->Reserve(static_cast<int64_t>(bytes.size()), absl::Now());
          for (absl::Duration wait; (wait = pace->Wait(absl::Now())) > absl::ZeroDuration();) {
            if (!report()) return absl::CancelledError("copy cancelled");
            absl::SleepFor(std::min(absl::Milliseconds(100), wait));
          }
        }
        if (part_size > 0 && copied % part_size == 0 && copied < total) {
          boundary_states[copied] = hash->SaveState();
        }
        if (part_size > 0) CF_RETURN_IF_ERROR(record());
        if (copied - reported >= kCopyProgressEvery) {
          reported = copied;
          if (!report()) return absl::CancelledError("copy cancelled");
        }
      }
    }
    std::string sha = hash->HexDigest();
    if (copied != total || sha != source.sha256()) {
      return absl::DataLossError(absl::StrCat("source bytes do not match the catalog (", copied,
                                              " bytes, SHA-256 ", sha, "; expected ", total,
                                              " bytes, ", source.sha256(), "); nothing was copied"));
    }
    committing = true;
    return writer->Commit();
  };
  absl::Status failed = stream();
  if (!failed.ok()) {
    // Stopped from outside (the client gone, the target unavailable or
    // throttling) with parts recorded: kept for the next copy. Anything else starts over,
    // and so does a resumed upload the store would not complete (it may
    // have lost the upload: s3rver forgets a completed one's parts).
    bool keep = recorded > 0 && !(committing && resumed > 0) &&
                (absl::IsCancelled(failed) || absl::IsUnavailable(failed) || absl::IsDeadlineExceeded(failed) ||
                 absl::IsResourceExhausted(failed));
    if (keep) {
      writer->Suspend();
      EndResumable(source, to, tier, /*keep=*/true);
      core::LogInfo("copy stopped; the parts stored are kept for the next copy",
                    {{"object", Subject(source.namespace_(), source.key())},
                     {"backend", to.name()},
                     {"stored_bytes", std::to_string(static_cast<int64_t>(recorded) * part_size)},
                     {"error", std::string(failed.message())}});
    } else {
      writer->Abort();
      if (recorded > 0) EndResumable(source, to, tier, /*keep=*/false);
      RemoveBytes(to.name(), physical);
    }
    return failed;
  }
  if (recorded > 0) EndResumable(source, to, tier, /*keep=*/false);
  if (copy_resumed_bytes_ != nullptr && resumed > 0) copy_resumed_bytes_->Increment(static_cast<double>(resumed));
  return StoredCopy{physical, source.sha256(), total, false};
}

absl::StatusOr<std::optional<StorageCore::ResumePoint>> StorageCore::ClaimResumable(
    const v1::ObjectInfo& source, ObjectStore& to, StorageTier tier) {
  std::optional<ResumePoint> point;
  std::string busy;
  const std::vector<db::Param> key = {source.backend(), source.physical_key(), to.name(),
                                      std::to_string(static_cast<int>(tier)), instance_id_};
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    point.reset();
    busy.clear();
    // The recorded copy, and whether its writer still runs: a live instance
    // (heartbeat within the orphan grace) that is not an earlier process on
    // this instance's host.
    CF_ASSIGN_OR_RETURN(
        db::Result rows,
        tx.Exec("SELECT u.target_physical_key, u.upload_id, u.part_size, u.etags, u.sha256_state, "
                "u.writer IS NOT NULL AND EXISTS (SELECT 1 FROM storage.instances w, "
                "storage.instances me WHERE w.instance_id = u.writer AND me.instance_id = $5 AND "
                "w.heartbeat_at > now() - make_interval(secs => $6) AND NOT (w.host = me.host AND "
                "w.host <> '' AND w.started_at < me.started_at)), coalesce(u.writer::text, '') "
                "FROM storage.copy_uploads u WHERE u.source_backend = $1 AND "
                "u.source_physical_key = $2 AND u.target_backend = $3 AND u.tier = $4 FOR UPDATE",
                {key[0], key[1], key[2], key[3], key[4], std::to_string(absl::ToDoubleSeconds(orphan_grace_))}));
    if (rows.empty()) return absl::OkStatus();
    if (rows[0].Bool(5) && rows[0].Text(6) != instance_id_) {
      busy = rows[0].Text(6);
      return absl::OkStatus();
    }
    std::string physical = rows[0].Text(0);
    CF_ASSIGN_OR_RETURN(db::Result claimed,
                        tx.Exec("UPDATE storage.pending_bytes SET instance_id = $3 WHERE backend = $1 "
                                "AND physical_key = $2 AND instance_id IS NOT NULL RETURNING 1",
                                {to.name(), physical, instance_id_}));
    if (claimed.empty()) {  // its bytes were given up meanwhile
      return tx.Exec("DELETE FROM storage.copy_uploads WHERE source_backend = $1 AND "
                     "source_physical_key = $2 AND target_backend = $3 AND tier = $4",
                     {key[0], key[1], key[2], key[3]})
          .status();
    }
    CF_RETURN_IF_ERROR(tx.Exec("UPDATE storage.copy_uploads SET writer = $5, updated_at = now() WHERE "
                               "source_backend = $1 AND source_physical_key = $2 AND target_backend = "
                               "$3 AND tier = $4",
                               key)
                           .status());
    ResumePoint p;
    p.physical_key = physical;
    p.progress.upload_id = rows[0].Text(1);
    p.progress.part_size = rows[0].Int(2);
    p.progress.etags = absl::StrSplit(rows[0].Text(3), '\n', absl::SkipEmpty());
    p.hash_state = absl::HexStringToBytes(rows[0].Text(4));
    point = std::move(p);
    return absl::OkStatus();
  }));
  if (!busy.empty()) {
    return absl::UnavailableError(absl::StrCat("a copy of ", Subject(source.namespace_(), source.key()),
                                               " to backend ", to.name(),
                                               " is running in storage instance ", busy,
                                               "; retry when it has ended"));
  }
  return point;
}

absl::Status StorageCore::RecordResumable(const v1::ObjectInfo& source, ObjectStore& to,
                                          StorageTier tier, const std::string& physical_key,
                                          const UploadProgress& progress,
                                          const std::string& hash_state) {
  return pool_
      .Exec("INSERT INTO storage.copy_uploads (source_backend, source_physical_key, target_backend, "
            "tier, target_physical_key, upload_id, part_size, etags, sha256_state, writer) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (source_backend, "
            "source_physical_key, target_backend, tier) DO UPDATE SET target_physical_key = "
            "EXCLUDED.target_physical_key, upload_id = EXCLUDED.upload_id, part_size = "
            "EXCLUDED.part_size, etags = EXCLUDED.etags, sha256_state = EXCLUDED.sha256_state, "
            "writer = EXCLUDED.writer, updated_at = now()",
            {source.backend(), source.physical_key(), to.name(), std::to_string(static_cast<int>(tier)),
             physical_key, progress.upload_id, std::to_string(progress.part_size),
             absl::StrJoin(progress.etags, "\n"), core::HexEncode(hash_state), instance_id_})
      .status();
}

void StorageCore::EndResumable(const v1::ObjectInfo& source, ObjectStore& to, StorageTier tier,
                               bool keep) {
  const std::vector<db::Param> key = {source.backend(), source.physical_key(), to.name(),
                                      std::to_string(static_cast<int>(tier)), instance_id_};
  absl::Status ended =
      pool_
          .Exec(keep ? "UPDATE storage.copy_uploads SET writer = NULL, updated_at = now() WHERE "
                       "source_backend = $1 AND source_physical_key = $2 AND target_backend = $3 "
                       "AND tier = $4 AND writer = $5"
                     : "DELETE FROM storage.copy_uploads WHERE source_backend = $1 AND "
                       "source_physical_key = $2 AND target_backend = $3 AND tier = $4 AND "
                       "(writer = $5 OR writer IS NULL)",
                key)
          .status();
  if (!ended.ok()) {
    // A row left behind is harmless: a later copy finds its bytes gone (or
    // its writer), and the sweeper ends it after --copy_resume_ttl.
    core::LogWarn("the record of a resumable copy was not updated",
                  {{"object", Subject(source.namespace_(), source.key())}, {"error", std::string(ended.message())}});
  }
}

absl::StatusOr<v1::ObjectInfo> StorageCore::Relocate(const v1::ObjectInfo& source, ObjectStore& to,
                                                     StorageTier tier, const CopyProgress& progress,
                                                     const CopyLimits& limits) {
  CF_ASSIGN_OR_RETURN(ObjectStore * from, Backend(source.backend()));
  CF_ASSIGN_OR_RETURN(StoredCopy bytes, CopyBytes(source, *from, to, tier, progress, limits));
  v1::ObjectInfo info;
  absl::Status switched = pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(
        db::Result rows,
        tx.Exec(absl::StrCat(
                    "WITH claimed AS (DELETE FROM storage.pending_bytes WHERE backend = $5 AND "
                    "physical_key = $6 AND instance_id IS NOT NULL RETURNING 1), "
                    "o AS (UPDATE storage.objects SET backend = $5, physical_key = $6, tier = $7, "
                    "updated_at = now() WHERE namespace = $1 AND key = $2 AND version = $3 AND "
                    "physical_key = $4 AND EXISTS (SELECT 1 FROM claimed) RETURNING *), "
                    "gone AS (INSERT INTO storage.pending_bytes (backend, physical_key) SELECT $8, "
                    "$4 FROM o ON CONFLICT DO NOTHING) SELECT ",
                    kColumns, " FROM o"),
                {source.namespace_(), source.key(), std::to_string(source.version()),
                 source.physical_key(), to.name(), bytes.physical_key,
                 std::to_string(static_cast<int>(tier)), source.backend()}));
    if (rows.empty()) {
      return absl::AbortedError(absl::StrCat("object ", Subject(source.namespace_(), source.key()),
                                             " changed while it was being copied; nothing moved"));
    }
    info = InfoFromRow(rows[0]);
    v1::ObjectRelocated event;
    event.set_namespace_(info.namespace_());
    event.set_key(info.key());
    event.set_version(info.version());
    event.set_from_backend(source.backend());
    event.set_from_tier(source.tier());
    event.set_to_backend(info.backend());
    event.set_to_tier(info.tier());
    event.set_size(info.size());
    event.set_server_side(bytes.server_side);
    return outbox_.Enqueue(tx, kObjectTopic,
                           ObjectEventEnvelope(info.namespace_(), info.key(), event, clock_));
  });
  if (!switched.ok()) {
    RemoveBytes(to.name(), bytes.physical_key);
    return switched;
  }
  RetireBytes(source.backend(), source.physical_key());
  return info;
}

absl::StatusOr<v1::ObjectInfo> StorageCore::Copy(const v1::CopyObjectRequest& request,
                                                 const CopyProgress& progress, bool* unchanged) {
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<v1::ObjectInfo> copied = CopyOnce(request, progress, unchanged);
    if (copied.ok() || attempt == 3 || !copied.status().GetPayload(kSourceMoved).has_value()) return copied;
  }
}

absl::StatusOr<v1::ObjectInfo> StorageCore::CopyOnce(const v1::CopyObjectRequest& request,
                                                     const CopyProgress& progress, bool* unchanged) {
  CF_RETURN_IF_ERROR(core::Annotate(ValidateNamespace(request.source_namespace()), "source"));
  CF_RETURN_IF_ERROR(core::Annotate(ValidateKey(request.source_key()), "source"));
  const std::string& ns = request.namespace_().empty() ? request.source_namespace() : request.namespace_();
  const std::string& key = request.key().empty() ? request.source_key() : request.key();
  CF_RETURN_IF_ERROR(core::Annotate(ValidateNamespace(ns), "destination"));
  CF_RETURN_IF_ERROR(core::Annotate(ValidateKey(key), "destination"));
  if (!cloudflux::common::v1::StorageTier_IsValid(request.tier())) {
    return absl::InvalidArgumentError("unknown tier");
  }
  if (request.source_version() < 0) return absl::InvalidArgumentError("source_version must not be negative");
  if (request.max_bytes_per_second() < 0) {
    return absl::InvalidArgumentError("max_bytes_per_second must not be negative");
  }
  CF_ASSIGN_OR_RETURN(v1::ObjectInfo source, Head(request.source_namespace(), request.source_key()));
  if (request.source_version() != 0 && request.source_version() != source.version()) {
    return absl::AbortedError(absl::StrCat("source is at version ", source.version(), ", not ",
                                           request.source_version()));
  }
  const std::string& backend = request.backend().empty() ? source.backend() : request.backend();
  CF_ASSIGN_OR_RETURN(ObjectStore * to, Backend(backend));
  CF_RETURN_IF_ERROR(StoreOf(source).status());
  StorageTier tier = request.tier() == cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED
                         ? source.tier()
                         : request.tier();
  if (request.verify() && pricing::IsArchiveTier(tier) && ArchiveNeedsRestore(to->provider())) {
    return absl::FailedPreconditionError(absl::StrCat("a copy into ", to->name(),
                                                      "'s archive class cannot be read back without a restore: "
                                                      "copy it without verify"));
  }
  CF_RETURN_IF_ERROR(CheckTierOn(to->provider(), tier, to->name()));
  const CopyLimits limits{
      .rate = request.max_bytes_per_second(), .verify = request.verify(), .pace_group = request.pace_group()};
  // One copy of these bytes to this backend and tier at a time in this
  // process, from its first byte to its catalogue entry (a copy whose client
  // has gone may still be sending until its next progress report): two
  // would write the same resumable upload. A second waits for the first to
  // end, then resumes what it left, or, if the first moved the object, starts
  // again from the catalog (kSourceMoved).
  std::string running;  // the slot held, if any
  absl::Cleanup release = [this, &running] {
    if (running.empty()) return;
    {
      std::lock_guard lock(resumable_mu_);
      resumable_running_.erase(running);
    }
    resumable_ended_.notify_all();
  };
  if (source.size() > kMinResumableBytes && backend != source.backend()) {
    const std::string slot = absl::StrCat(source.backend(), std::string(1, '\0'), source.physical_key(),
                                          std::string(1, '\0'), backend, std::string(1, '\0'),
                                          static_cast<int>(tier));
    bool waited = false;
    {
      std::unique_lock lock(resumable_mu_);
      while (!resumable_running_.insert(slot).second) {
        waited = true;
        lock.unlock();
        if (progress != nullptr && !progress(CopyState{.copied = 0, .total = source.size()})) {
          return absl::CancelledError(absl::StrCat("copy of ", Subject(source.namespace_(), source.key()),
                                                   " cancelled while another copy of it to ", backend,
                                                   " was running"));
        }
        lock.lock();
        resumable_ended_.wait_for(lock, std::chrono::milliseconds(100));
      }
    }
    running = slot;
    if (waited) {
      CF_ASSIGN_OR_RETURN(v1::ObjectInfo now, Head(source.namespace_(), source.key()));
      if (now.backend() != source.backend() || now.physical_key() != source.physical_key()) {
        absl::Status moved = absl::AbortedError(absl::StrCat(
            "object ", Subject(source.namespace_(), source.key()), " moved while this copy waited for another"));
        moved.SetPayload(kSourceMoved, absl::Cord());
        return moved;
      }
    }
  }
  if (request.replica()) {
    if (request.has_if_destination_version()) {
      return absl::InvalidArgumentError("if_destination_version is not for a replica");
    }
    if (!request.namespace_().empty() || !request.key().empty()) {
      return absl::InvalidArgumentError("a replica keeps the source's namespace and key: leave them empty");
    }
    if (request.backend().empty() || request.backend() == source.backend()) {
      return absl::InvalidArgumentError(absl::StrCat("a replica needs a backend other than the object's own ('",
                                                     source.backend(), "')"));
    }
    return Replicate(source, *to, tier, progress, limits, unchanged);
  }
  bool relocation = ns == source.namespace_() && key == source.key();
  if (request.has_if_destination_version()) {
    if (request.if_destination_version() < 0) {
      return absl::InvalidArgumentError("if_destination_version must not be negative");
    }
    if (relocation) {
      return absl::InvalidArgumentError("if_destination_version is for a copy to another key (use source_version)");
    }
    // Checked again when the copy is catalogued; here so that a copy that
    // cannot be kept sends nothing.
    auto at = Head(ns, key);
    if (!at.ok() && !absl::IsNotFound(at.status())) return at.status();
    const int64_t version = at.ok() ? at->version() : 0;
    if (version != request.if_destination_version()) {
      return absl::AbortedError(absl::StrCat("destination ", Subject(ns, key),
                                             version == 0 ? " does not exist" : absl::StrCat(" is at version ", version),
                                             ", not ", request.if_destination_version(), "; nothing copied"));
    }
  }
  if (relocation && backend == source.backend()) {
    if (tier == source.tier()) return source;  // already there
    return ChangeTier(source, *to, tier);
  }
  if (relocation) return Relocate(source, *to, tier, progress, limits);
  CF_ASSIGN_OR_RETURN(ObjectStore * from, Backend(source.backend()));
  CF_ASSIGN_OR_RETURN(StoredCopy bytes, CopyBytes(source, *from, *to, tier, progress, limits));
  v1::PutObjectHeader header;
  header.set_namespace_(ns);
  header.set_key(key);
  header.set_backend(backend);
  header.set_tier(tier);
  header.set_content_type(source.content_type());
  *header.mutable_metadata() = source.metadata();
  if (request.has_if_destination_version()) header.set_if_version(request.if_destination_version());
  return CatalogNew(header, *to, bytes);
}

absl::StatusOr<v1::ObjectInfo> StorageCore::Replicate(const v1::ObjectInfo& source, ObjectStore& to,
                                                      StorageTier tier, const CopyProgress& progress,
                                                      const CopyLimits& limits, bool* unchanged) {
  const std::string subject = Subject(source.namespace_(), source.key());
  // Current and whole: nothing to do (the store is asked, so that bytes
  // removed behind the catalog's back are copied again).
  CF_ASSIGN_OR_RETURN(std::vector<v1::Replica> current, Replicas(source.namespace_(), source.key(), source.version()));
  for (const v1::Replica& r : current) {
    if (r.backend() != to.name() || r.tier() != tier) continue;
    auto size = to.StoredSize(r.physical_key());
    if (size.ok() && *size == source.size()) {
      if (unchanged != nullptr) *unchanged = true;
      v1::ObjectInfo info = source;
      *info.mutable_replicas() = {current.begin(), current.end()};
      return info;
    }
    core::LogWarn("replica bytes missing or wrong; copying them again",
                  {{"object", subject}, {"backend", to.name()},
                   {"error", size.ok() ? absl::StrCat("size ", *size) : std::string(size.status().message())}});
  }
  CF_ASSIGN_OR_RETURN(ObjectStore * from, Backend(source.backend()));
  CF_ASSIGN_OR_RETURN(StoredCopy bytes, CopyBytes(source, *from, to, tier, progress, limits));
  std::string replaced;
  absl::Status recorded = pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    // The object must still be at the version copied; its row lock holds
    // off an overwrite or delete (whose trigger removes replicas) until
    // this commits.
    CF_ASSIGN_OR_RETURN(db::Result at, tx.Exec("SELECT version FROM storage.objects WHERE namespace = $1 AND key "
                                               "= $2 FOR SHARE",
                                               {source.namespace_(), source.key()}));
    if (at.empty() || at[0].Int(0) != source.version()) {
      return absl::AbortedError(absl::StrCat("object ", subject, " changed while its replica was being copied; "
                                             "no replica kept"));
    }
    CF_ASSIGN_OR_RETURN(db::Result claimed, tx.Exec("DELETE FROM storage.pending_bytes WHERE backend = $1 AND "
                                                    "physical_key = $2 AND instance_id IS NOT NULL RETURNING 1",
                                                    {to.name(), bytes.physical_key}));
    if (claimed.empty()) {
      return absl::AbortedError("the copy was abandoned: this process was taken for dead and its pending bytes "
                                "removed; retry");
    }
    CF_ASSIGN_OR_RETURN(db::Result old, tx.Exec("SELECT physical_key FROM storage.replicas WHERE namespace = $1 AND "
                                                "key = $2 AND backend = $3 FOR UPDATE",
                                                {source.namespace_(), source.key(), to.name()}));
    if (!old.empty()) {
      replaced = old[0].Text(0);
      CF_RETURN_IF_ERROR(tx.Exec("INSERT INTO storage.pending_bytes (backend, physical_key) VALUES ($1, $2) ON "
                                 "CONFLICT DO NOTHING",
                                 {to.name(), replaced})
                             .status());
    }
    return tx
        .Exec("INSERT INTO storage.replicas (namespace, key, backend, version, physical_key, tier) VALUES ($1, $2, "
              "$3, $4, $5, $6) ON CONFLICT (namespace, key, backend) DO UPDATE SET version = EXCLUDED.version, "
              "physical_key = EXCLUDED.physical_key, tier = EXCLUDED.tier, created_at = now()",
              {source.namespace_(), source.key(), to.name(), std::to_string(source.version()), bytes.physical_key,
               std::to_string(static_cast<int>(tier))})
        .status();
  });
  if (!recorded.ok()) {
    RemoveBytes(to.name(), bytes.physical_key);
    return recorded;
  }
  if (!replaced.empty()) RetireBytes(to.name(), replaced);
  v1::ObjectInfo info = source;
  CF_ASSIGN_OR_RETURN(current, Replicas(source.namespace_(), source.key(), source.version()));
  *info.mutable_replicas() = {current.begin(), current.end()};
  return info;
}

absl::Status StorageCore::DeleteReplica(const std::string& ns, const std::string& key, const std::string& backend) {
  CF_RETURN_IF_ERROR(ValidateNamespace(ns));
  CF_RETURN_IF_ERROR(ValidateKey(key));
  std::string physical;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(db::Result rows,
                        tx.Exec("WITH d AS (DELETE FROM storage.replicas WHERE namespace = $1 AND key = $2 AND "
                                "backend = $3 RETURNING backend, physical_key), p AS (INSERT INTO "
                                "storage.pending_bytes (backend, physical_key) SELECT backend, physical_key FROM d "
                                "ON CONFLICT DO NOTHING) SELECT physical_key FROM d",
                                {ns, key, backend}));
    if (rows.empty()) {
      return absl::NotFoundError(absl::StrCat("object ", Subject(ns, key), " has no replica on '", backend, "'"));
    }
    physical = rows[0].Text(0);
    return absl::OkStatus();
  }));
  RetireBytes(backend, physical);
  return absl::OkStatus();
}

absl::StatusOr<v1::ObjectInfo> StorageCore::SetTier(const v1::SetTierRequest& request) {
  CF_RETURN_IF_ERROR(ValidateNamespace(request.namespace_()));
  CF_RETURN_IF_ERROR(ValidateKey(request.key()));
  if (!cloudflux::common::v1::StorageTier_IsValid(request.tier()) ||
      request.tier() == cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED) {
    return absl::InvalidArgumentError("tier must be HOT, WARM, COLD, ARCHIVE, AUTO or ARCHIVE_FLEXIBLE");
  }
  CF_ASSIGN_OR_RETURN(v1::ObjectInfo source, Head(request.namespace_(), request.key()));
  if (source.tier() == request.tier()) return source;
  CF_ASSIGN_OR_RETURN(ObjectStore * store, StoreOf(source));
  CF_RETURN_IF_ERROR(CheckTierOn(store->provider(), request.tier(), source.backend()));
  return ChangeTier(source, *store, request.tier());
}

absl::StatusOr<v1::ObjectInfo> StorageCore::ChangeTier(const v1::ObjectInfo& source, ObjectStore& store,
                                                       StorageTier tier) {
  absl::Status changed = store.SetTier(source.physical_key(), tier, source.size());
  if (absl::IsUnimplemented(changed)) return Relocate(source, store, tier, nullptr);
  CF_RETURN_IF_ERROR(changed);
  return RecordTier(source, tier);
}

absl::StatusOr<v1::ObjectInfo> StorageCore::RecordTier(const v1::ObjectInfo& source, StorageTier tier) {
  v1::ObjectInfo info;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_ASSIGN_OR_RETURN(
        db::Result rows,
        tx.Exec(absl::StrCat("UPDATE storage.objects SET tier = $4, updated_at = now() WHERE "
                             "namespace = $1 AND key = $2 AND physical_key = $3 RETURNING ",
                             kColumns),
                {source.namespace_(), source.key(), source.physical_key(),
                 std::to_string(static_cast<int>(tier))}));
    if (rows.empty()) {
      return absl::AbortedError(absl::StrCat("object ", Subject(source.namespace_(), source.key()),
                                             " was overwritten or deleted meanwhile"));
    }
    info = InfoFromRow(rows[0]);
    v1::ObjectTierChanged event;
    event.set_namespace_(info.namespace_());
    event.set_key(info.key());
    event.set_version(info.version());
    event.set_backend(info.backend());
    event.set_from_tier(source.tier());
    event.set_to_tier(info.tier());
    event.set_size(info.size());
    return outbox_.Enqueue(tx, kObjectTopic,
                           ObjectEventEnvelope(info.namespace_(), info.key(), event, clock_));
  }));
  return info;
}

absl::StatusOr<v1::VerifyObjectResponse> StorageCore::Verify(const v1::VerifyObjectRequest& request,
                                                             const std::function<bool()>& keep_going) {
  if (request.version() < 0) return absl::InvalidArgumentError("version must not be negative");
  CF_ASSIGN_OR_RETURN(v1::ObjectInfo info, Head(request.namespace_(), request.key()));
  if (request.version() != 0 && request.version() != info.version()) {
    return absl::AbortedError(absl::StrCat("object ", Subject(info.namespace_(), info.key()), " is at version ",
                                           info.version(), ", not ", request.version()));
  }
  CF_ASSIGN_OR_RETURN(ObjectStore * store, StoreOf(info));
  if (pricing::IsArchiveTier(info.tier())) {
    CF_ASSIGN_OR_RETURN(ReadState state, store->ReadStateOf(info.physical_key()));
    if (state.state != ReadState::State::kReadable) {
      return absl::FailedPreconditionError(absl::StrCat("object ", Subject(info.namespace_(), info.key()),
                                                        " is in an archive class: restore it first (RestoreObject)"));
    }
  }
  CF_ASSIGN_OR_RETURN(auto hashed, HashStored(*store, info.physical_key(), info.size(), keep_going));
  v1::VerifyObjectResponse out;
  out.set_sha256(hashed.first);
  out.set_bytes_read(hashed.second);
  out.set_intact(hashed.first == info.sha256() && hashed.second == info.size());
  if (!out.intact()) {
    core::LogWarn("an object's stored bytes do not match the catalog",
                  {{"object", Subject(info.namespace_(), info.key())},
                   {"backend", info.backend()},
                   {"sha256", hashed.first},
                   {"bytes", std::to_string(hashed.second)}});
  }
  *out.mutable_object() = std::move(info);
  return out;
}

absl::StatusOr<v1::RestoreObjectResponse> StorageCore::Restore(const v1::RestoreObjectRequest& request) {
  CF_RETURN_IF_ERROR(ValidateNamespace(request.namespace_()));
  CF_RETURN_IF_ERROR(ValidateKey(request.key()));
  if (request.days() < 0 || request.days() > 365) {
    return absl::InvalidArgumentError(absl::StrCat("days must be 1-365 (0 = 7), not ", request.days()));
  }
  RestoreOptions options;
  if (request.days() > 0) options.days = request.days();
  switch (request.priority()) {
    case v1::RESTORE_PRIORITY_UNSPECIFIED:
    case v1::RESTORE_PRIORITY_STANDARD: options.priority = RestoreOptions::Priority::kStandard; break;
    case v1::RESTORE_PRIORITY_HIGH: options.priority = RestoreOptions::Priority::kHigh; break;
    case v1::RESTORE_PRIORITY_BULK: options.priority = RestoreOptions::Priority::kBulk; break;
    default: return absl::InvalidArgumentError("priority must be STANDARD, HIGH or BULK");
  }
  switch (request.online_tier()) {
    case cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED: break;
    case cloudflux::common::v1::STORAGE_TIER_HOT:
    case cloudflux::common::v1::STORAGE_TIER_WARM:
    case cloudflux::common::v1::STORAGE_TIER_COLD: options.online_tier = request.online_tier(); break;
    default: return absl::InvalidArgumentError("online_tier must be HOT, WARM or COLD");
  }
  CF_ASSIGN_OR_RETURN(v1::ObjectInfo source, Head(request.namespace_(), request.key()));
  CF_ASSIGN_OR_RETURN(ObjectStore * store, StoreOf(source));
  v1::RestoreObjectResponse out;
  out.set_state(v1::RESTORE_STATE_READABLE);
  // Only the archive tiers map to classes that need a restore; an object
  // that left one may still be on its way out (Azure rehydrates for hours).
  if (!pricing::IsArchiveTier(source.tier())) {
    if (store->RestoresAfterTierChange()) {
      CF_ASSIGN_OR_RETURN(ReadState state, store->ReadStateOf(source.physical_key()));
      if (state.state == ReadState::State::kRestoring) out.set_state(v1::RESTORE_STATE_IN_PROGRESS);
    }
    *out.mutable_object() = std::move(source);
    return out;
  }
  CF_ASSIGN_OR_RETURN(RestoreResult restored, store->Restore(source.physical_key(), options));
  switch (restored.state) {
    case RestoreResult::State::kReadable: out.set_state(v1::RESTORE_STATE_READABLE); break;
    case RestoreResult::State::kStarted: out.set_state(v1::RESTORE_STATE_STARTED); break;
    case RestoreResult::State::kInProgress: out.set_state(v1::RESTORE_STATE_IN_PROGRESS); break;
  }
  if (restored.tier_changed) {
    CF_ASSIGN_OR_RETURN(*out.mutable_object(), RecordTier(source, options.online_tier));
  } else {
    *out.mutable_object() = std::move(source);
  }
  core::LogInfo("restore requested", {{"namespace", out.object().namespace_()},
                                      {"key", out.object().key()},
                                      {"state", v1::RestoreState_Name(out.state())}});
  return out;
}

absl::StatusOr<int> StorageCore::SweepOrphans(absl::Duration grace, absl::Duration resume_ttl) {
  CF_RETURN_IF_ERROR(Heartbeat());
  // Copies nobody has gone on with for resume_ttl are given up.
  CF_RETURN_IF_ERROR(
      pool_
          .Exec("WITH old AS (DELETE FROM storage.copy_uploads WHERE updated_at < now() - "
                "make_interval(secs => $1) RETURNING target_backend, target_physical_key) "
                "UPDATE storage.pending_bytes p SET instance_id = NULL, created_at = '-infinity' "
                "FROM old WHERE p.backend = old.target_backend AND p.physical_key = "
                "old.target_physical_key",
                {std::to_string(absl::ToDoubleSeconds(resume_ttl))})
          .status());
  // Writes of dead instances become removals, except stopped copies that a
  // later copy may go on with; removals left behind (their remover failed
  // or died) are retried.
  CF_ASSIGN_OR_RETURN(
      db::Result rows,
      pool_.Exec("WITH dead AS (UPDATE storage.pending_bytes p SET instance_id = NULL, created_at "
                 "= '-infinity' WHERE p.instance_id IS NOT NULL AND p.instance_id <> $1 AND NOT "
                 "EXISTS (SELECT 1 FROM storage.instances i WHERE i.instance_id = p.instance_id "
                 "AND i.heartbeat_at > now() - make_interval(secs => $2)) AND NOT EXISTS (SELECT "
                 "1 FROM storage.copy_uploads c WHERE c.target_backend = p.backend AND "
                 "c.target_physical_key = p.physical_key) RETURNING backend, physical_key) "
                 "SELECT backend, physical_key FROM dead UNION SELECT backend, physical_key FROM "
                 "storage.pending_bytes WHERE instance_id IS NULL AND created_at < now() - "
                 "interval '1 minute' LIMIT 1000",
                 {instance_id_, std::to_string(absl::ToDoubleSeconds(grace))}));
  int removed = 0;
  for (const auto& row : rows) {
    // A writer that died mid-upload may have left parts no object owns.
    if (auto it = backends_.find(row.Text(0)); it != backends_.end()) {
      absl::Status aborted = it->second->AbortIncompleteWrites(row.Text(1));
      if (absl::IsUnimplemented(aborted)) {
        core::LogInfo("the store cannot list incomplete uploads; its lifecycle rule must remove them",
                      {{"backend", row.Text(0)}, {"physical_key", row.Text(1)}});
      } else if (!aborted.ok()) {
        core::LogWarn("incomplete uploads not aborted; the sweeper retries",
                      {{"backend", row.Text(0)}, {"physical_key", row.Text(1)},
                       {"error", std::string(aborted.message())}});
        continue;
      }
    }
    RemoveBytes(row.Text(0), row.Text(1));
    ++removed;
  }
  if (removed > 0) core::LogInfo("removed orphaned bytes", {{"count", std::to_string(removed)}});
  return removed;
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
    b->set_archive_needs_restore(ArchiveNeedsRestore(store->provider()));
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
