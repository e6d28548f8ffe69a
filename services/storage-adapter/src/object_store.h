#pragma once
// ObjectStore: one backend (local disk, S3, GCS, Azure Blob).
// Physical keys are chosen by the service, never by clients.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cloudflux/common/v1/common.pb.h"

namespace cloudflux::storage {

// What an upload in parts has stored, enough for another writer (another
// process) to go on with it (ObjectStore::ResumeWrite): parts 1..n, every
// one `part_size` bytes, with the ETags the store gave them. The stream
// continues at byte n * part_size.
struct UploadProgress {
  std::string upload_id;
  int64_t part_size = 0;
  std::vector<std::string> etags;
  int64_t bytes() const { return part_size * static_cast<int64_t>(etags.size()); }
};

// Streams one new object into the backend. Nothing is visible until Commit
// succeeds; Abort (or destruction without Commit) removes what was written.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  // The whole stream's size, when known before the first Write. A writer
  // that uploads in parts then cuts anything over one part into parts, so
  // that the upload can be resumed.
  virtual void ExpectSize(int64_t size) {}
  // The size of the parts this writer stores, 0 when it cannot be resumed.
  virtual int64_t PartSize() const { return 0; }
  // The longest prefix of the stream the store holds as finished parts;
  // nullopt while there is none or when the writer cannot be resumed.
  virtual std::optional<UploadProgress> Progress() { return std::nullopt; }
  // Stops, keeping what the store holds for ResumeWrite. Writers that
  // cannot be resumed abort.
  virtual void Suspend() { Abort(); }
  virtual absl::Status Write(std::string_view data) = 0;
  // `parts` in order, as one Write of their concatenation (a received chunk
  // in the pieces gRPC holds it in). Stores that can hand them to the
  // kernel at once (local disk) override this.
  virtual absl::Status WriteParts(const std::vector<std::string_view>& parts) {
    for (std::string_view part : parts) {
      absl::Status written = Write(part);
      if (!written.ok()) return written;
    }
    return absl::OkStatus();
  }
  // Makes the object durable and visible under its physical key.
  virtual absl::Status Commit() = 0;
  virtual void Abort() = 0;
};

// Bytes of an object in memory that a reader hands over: `data` stays
// valid as long as some copy of `owner` lives, whatever the reader does next.
struct Chunk {
  const char* data = nullptr;
  size_t size = 0;
  std::shared_ptr<const void> owner;
};

// Reads a byte range of an object sequentially.
class ObjectReader {
 public:
  virtual ~ObjectReader() = default;
  // Up to `max` bytes as a Chunk, which the caller may keep (to send it)
  // while it reads on; size 0 means the range is done. Backends hand over
  // the buffers they read into, without a copy.
  virtual absl::StatusOr<Chunk> ReadChunk(size_t max) = 0;
  // Up to `max` bytes copied into `out`; an empty `out` means the range is done.
  absl::Status Read(size_t max, std::string* out) {
    absl::StatusOr<Chunk> chunk = ReadChunk(max);
    if (!chunk.ok()) return chunk.status();
    out->assign(chunk->data, chunk->size);
    return absl::OkStatus();
  }
};

// How to make an archived object readable (ObjectStore::Restore).
struct RestoreOptions {
  int days = 7;  // S3: how long the restored copy stays readable
  enum class Priority { kStandard, kHigh, kBulk } priority = Priority::kStandard;
  // Azure: the online tier the blob is rehydrated into.
  cloudflux::common::v1::StorageTier online_tier = cloudflux::common::v1::STORAGE_TIER_HOT;
};

// Whether an object's bytes can be read now (ObjectStore::ReadStateOf).
struct ReadState {
  enum class State { kReadable, kNeedsRestore, kRestoring } state = State::kReadable;
  std::optional<absl::Time> readable_until = std::nullopt;  // S3: when a restored copy goes away
};

struct RestoreResult {
  enum class State { kReadable, kStarted, kInProgress } state = State::kReadable;
  bool tier_changed = false;  // the object left its archive tier for options.online_tier
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  virtual const std::string& name() const = 0;
  virtual cloudflux::common::v1::CloudProvider provider() const = 0;
  virtual absl::StatusOr<std::unique_ptr<ObjectWriter>> StartWrite(
      const std::string& physical_key, cloudflux::common::v1::StorageTier tier) = 0;
  // `length` 0 = to the end. The caller has checked the range.
  virtual absl::StatusOr<std::unique_ptr<ObjectReader>> OpenRead(const std::string& physical_key,
                                                                 int64_t offset,
                                                                 int64_t length) = 0;
  // Goes on with an upload of which `progress` was stored: the first Write
  // is the stream's byte progress.bytes(). NOT_FOUND when the store no
  // longer holds the upload or those parts (start again);
  // UNIMPLEMENTED for stores that cannot resume.
  virtual absl::StatusOr<std::unique_ptr<ObjectWriter>> ResumeWrite(
      const std::string& physical_key, cloudflux::common::v1::StorageTier tier,
      const UploadProgress& progress) {
    return absl::UnimplementedError(name() + " cannot resume uploads");
  }
  // The size of a stored (committed) object; NOT_FOUND when there is none.
  // UNIMPLEMENTED for stores that cannot resume uploads (nothing asks them).
  virtual absl::StatusOr<int64_t> StoredSize(const std::string& physical_key) {
    return absl::UnimplementedError(name() + " cannot resume uploads");
  }
  // Deleting a missing object is OK.
  virtual absl::Status Delete(const std::string& physical_key) = 0;
  // Changes a stored object's storage class in place. UNIMPLEMENTED when the
  // store cannot do it for this object (the caller rewrites it instead).
  virtual absl::Status SetTier(const std::string& physical_key,
                               cloudflux::common::v1::StorageTier tier, int64_t size) = 0;
  // Copies `from` to the new physical key `to` with `tier` inside the store,
  // without the bytes passing through this process. UNIMPLEMENTED when the
  // store cannot (the caller streams the copy instead).
  virtual absl::Status CopyWithin(const std::string& from, const std::string& to,
                                  cloudflux::common::v1::StorageTier tier, int64_t size) = 0;
  // Makes an archived object readable. The default, for stores whose
  // archive is read directly (local disk, GCS), has nothing to do.
  virtual absl::StatusOr<RestoreResult> Restore(const std::string& physical_key,
                                                const RestoreOptions& options) {
    return RestoreResult{};
  }
  // Removes what a crashed writer left of an upload to `physical_key` that
  // never completed (S3/GCS multipart uploads and their parts; Azure drops
  // uncommitted blocks itself, local temp files are removed at start).
  // UNIMPLEMENTED when the store cannot list them (the bucket's
  // AbortIncompleteMultipartUpload lifecycle rule is then the only cleanup).
  virtual absl::Status AbortIncompleteWrites(const std::string& physical_key) { return absl::OkStatus(); }
  // Whether the object can be read now: one in an archive class needs a
  // restore first, and one may be running (S3 restore, Azure rehydration).
  // The default, for stores that read their archives directly (local disk,
  // GCS), is readable.
  virtual absl::StatusOr<ReadState> ReadStateOf(const std::string& physical_key) { return ReadState{}; }
  // Whether restores run in the background after the object has left its
  // archive class (Azure: the blob's tier changes at once, rehydration
  // takes hours), so a non-archived object may not be readable yet.
  virtual bool RestoresAfterTierChange() const { return false; }
  virtual absl::Status Ping() = 0;
};

// The local-disk backend under `root`: writes go to root/.tmp, are fsynced,
// then renamed into root/objects (and the directory fsynced), so a crash
// never leaves a visible partial object. Thread-safe.
absl::StatusOr<std::unique_ptr<ObjectStore>> MakeLocalStore(std::string name, std::string root);

// S3 (provider AWS) or Google Cloud Storage's XML API with HMAC keys
// (provider GCP): AWS Signature V4, path- or virtual-host-style addressing,
// one PUT up to `multipart_threshold`, above it a multipart upload of
// `part_size` parts, `parallel_parts` at a time (aborted on failure); the
// tier's storage class header; ranged GETs. Thread-safe.
struct S3Options {
  std::string name;
  cloudflux::common::v1::CloudProvider provider = cloudflux::common::v1::CLOUD_PROVIDER_AWS;
  std::string endpoint;  // scheme://host[:port]
  std::string region = "us-east-1";
  std::string bucket;
  bool virtual_host_style = false;
  std::string access_key_id;
  std::string secret_access_key;
  int64_t multipart_threshold = 16 << 20;
  int64_t part_size = 8 << 20;
  int parallel_parts = 4;
  // Copies inside the bucket up to this size are one copy request (S3's
  // limit); larger ones a multipart upload of UploadPartCopy ranges of at
  // least part_size (and few enough for 10,000 parts).
  int64_t max_single_copy = int64_t{5} << 30;
  absl::Duration timeout = absl::Seconds(120);
};
absl::StatusOr<std::unique_ptr<ObjectStore>> MakeS3Store(S3Options options);

// Azure Blob Storage's REST API with Shared Key authorization: block blobs,
// one Put Blob up to `multipart_threshold`, above it Put Block of
// `part_size` blocks, `parallel_parts` at a time, then Put Block List (an
// abandoned upload's uncommitted blocks are never visible; Azure discards
// them after a week); the tier's access tier (x-ms-access-tier); Set Blob
// Tier; Copy Blob inside the account; ranged GETs. The endpoint is
// https://<account>.blob.core.windows.net by default; any other endpoint
// (the azurite emulator) carries the account as the first path segment.
struct AzureOptions {
  std::string name;
  std::string endpoint;  // empty = https://<account>.blob.core.windows.net
  std::string account;
  std::string account_key;  // base64, as the portal shows it
  std::string container;
  int64_t multipart_threshold = 16 << 20;
  int64_t part_size = 8 << 20;
  int parallel_parts = 4;
  absl::Duration timeout = absl::Seconds(120);
};
absl::StatusOr<std::unique_ptr<ObjectStore>> MakeAzureStore(AzureOptions options);

struct HttpResponse;

// The ETag of an UploadPartCopy answer (<CopyPartResult><ETag>), or the
// error it carries (S3 may answer 200 with an <Error> body). Exposed for
// tests.
absl::StatusOr<std::string> CopyPartEtag(const std::string& store, const HttpResponse& r,
                                         const std::string& what);

// S3's restore request and what its answer means (exposed for tests): the
// RestoreRequest XML, and 202 started, 200 readable (a restored copy exists;
// its days were extended), 409 RestoreAlreadyInProgress in progress;
// anything else an error.
std::string S3RestoreBody(const RestoreOptions& options);
absl::StatusOr<RestoreResult> S3RestoreAnswer(const std::string& store, const HttpResponse& r,
                                              const std::string& physical_key);

// What an Azure Get Blob Properties answer says of reading the blob:
// x-ms-archive-status rehydrate-pending-to-* is a rehydration still running,
// x-ms-access-tier Archive otherwise needs one.
ReadState AzureReadState(const HttpResponse& head);

// What an S3 HEAD answer says of reading the object: GLACIER / DEEP_ARCHIVE
// (x-amz-storage-class) or an Intelligent-Tiering archive access tier
// (x-amz-archive-status) needs a restore unless x-amz-restore says one is
// running (ongoing-request="true") or done (ongoing-request="false",
// expiry-date=...: readable until then).
ReadState S3ReadState(const HttpResponse& head);

// The Shared Key string-to-sign of a Blob service request (exposed for
// tests): `headers` as sent (any case), `path` the URL path as sent (percent-
// encoded), `query` decoded name/value pairs.
std::string SharedKeyStringToSign(const std::string& method, const std::string& account,
                                  const std::string& path,
                                  const std::vector<std::pair<std::string, std::string>>& query,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  size_t content_length);

}  // namespace cloudflux::storage
