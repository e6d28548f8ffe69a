#pragma once
// ArtifactStore: model artifacts kept through the storage adapter (it owns
// the catalog and the backends), in the reserved namespace kModelNamespace.
// Uploads declare their size and end with a SHA-256 trailer; downloads are
// checked against the hash the registry recorded. Thread-safe.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"

namespace cloudflux::prediction {

class ArtifactStore {
 public:
  // `authorize` sets a call's credentials (the service account's token).
  ArtifactStore(std::shared_ptr<grpc::Channel> storage, std::function<absl::Status(grpc::ClientContext&)> authorize,
                absl::Duration timeout = absl::Seconds(60));

  // Stores `bytes` at kModelNamespace/`key`; returns what the adapter stored.
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Put(const std::string& key, const std::string& bytes);
  // The bytes at kModelNamespace/`key`; DATA_LOSS unless they hash to `sha256`.
  absl::StatusOr<std::string> Get(const std::string& key, const std::string& sha256);

 private:
  std::unique_ptr<cloudflux::storage::v1::StorageService::Stub> stub_;
  std::function<absl::Status(grpc::ClientContext&)> authorize_;
  absl::Duration timeout_;
};

}  // namespace cloudflux::prediction
