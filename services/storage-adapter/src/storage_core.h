#pragma once
// StorageCore: the storage adapter's logic apart from gRPC. Validates
// requests, streams bytes into a backend while hashing them, and keeps the
// catalog (schema `storage`) and the object events (outbox) in step.
// Thread-safe; an Upload belongs to one call.

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/storage/v1/storage.pb.h"
#include "object_store.h"

namespace cloudflux::storage {

inline constexpr char kObjectTopic[] = "cloudflux.storage.objects";
inline constexpr size_t kMaxKeyBytes = 1024;

absl::Status ValidateNamespace(const std::string& ns);
absl::Status ValidateKey(const std::string& key);

class StorageCore {
 public:
  StorageCore(db::Pool& pool, std::map<std::string, std::unique_ptr<ObjectStore>> backends,
              std::string default_backend, const core::Clock& clock = core::SystemClock::Get());

  // One object being written: bytes go to the backend as they arrive and
  // into a running SHA-256. Destroying it without Finish removes the bytes.
  class Upload {
   public:
    ~Upload();
    absl::Status Write(std::string_view chunk);
    // Checks the hash, makes the bytes durable, then writes the catalog row
    // and ObjectCreated together. On any failure nothing stays behind.
    absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Finish();

   private:
    friend class StorageCore;
    StorageCore* core_ = nullptr;
    cloudflux::storage::v1::PutObjectHeader header_;
    ObjectStore* store_ = nullptr;
    std::string physical_key_;
    std::unique_ptr<ObjectWriter> writer_;
    core::Sha256 hash_;
    int64_t size_ = 0;
    bool finished_ = false;
  };

  absl::StatusOr<std::unique_ptr<Upload>> BeginPut(
      const cloudflux::storage::v1::PutObjectHeader& header);
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Head(const std::string& ns,
                                                          const std::string& key);
  // The object's info and a reader of the requested range.
  absl::StatusOr<std::pair<cloudflux::storage::v1::ObjectInfo, std::unique_ptr<ObjectReader>>>
  OpenGet(const cloudflux::storage::v1::GetObjectRequest& request);
  absl::Status Delete(const std::string& ns, const std::string& key);
  absl::StatusOr<cloudflux::storage::v1::ListObjectsResponse> List(
      const cloudflux::storage::v1::ListObjectsRequest& request);
  cloudflux::storage::v1::ListBackendsResponse Backends();
  // OK while every backend answers.
  absl::Status PingBackends();

 private:
  db::Pool& pool_;
  std::map<std::string, std::unique_ptr<ObjectStore>> backends_;
  std::string default_backend_;
  const core::Clock& clock_;
  events::Outbox outbox_{"storage"};
};

}  // namespace cloudflux::storage
