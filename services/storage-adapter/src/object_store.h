#pragma once
// ObjectStore: one backend (local disk today; S3, Azure Blob and GCS next).
// Physical keys are chosen by the service, never by clients.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cloudflux/common/v1/common.pb.h"

namespace cloudflux::storage {

// Streams one new object into the backend. Nothing is visible until Commit
// succeeds; Abort (or destruction without Commit) removes what was written.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  virtual absl::Status Write(std::string_view data) = 0;
  // Makes the object durable and visible under its physical key.
  virtual absl::Status Commit() = 0;
  virtual void Abort() = 0;
};

// Reads a byte range of an object sequentially.
class ObjectReader {
 public:
  virtual ~ObjectReader() = default;
  // Up to `max` bytes into `out`; an empty `out` means the range is done.
  virtual absl::Status Read(size_t max, std::string* out) = 0;
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
  // Deleting a missing object is OK.
  virtual absl::Status Delete(const std::string& physical_key) = 0;
  virtual absl::Status Ping() = 0;
};

// The local-disk backend under `root`: writes go to root/.tmp, are fsynced,
// then renamed into root/objects (and the directory fsynced), so a crash
// never leaves a visible partial object. Thread-safe.
absl::StatusOr<std::unique_ptr<ObjectStore>> MakeLocalStore(std::string name, std::string root);

}  // namespace cloudflux::storage
