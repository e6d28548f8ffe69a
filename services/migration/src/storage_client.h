#pragma once
// StorageClient: what the migration service asks of the storage adapter
// (which owns the catalog and the backends): listings, one object's
// catalog entry, the backends, and relocations (CopyObject onto the same
// key: the bytes go to the target backend/tier and the catalog follows).
// Every call carries the service account's token. Thread-safe.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"

namespace cloudflux::migration {

class StorageClient {
 public:
  using Authorize = std::function<absl::Status(grpc::ClientContext&)>;
  StorageClient(std::shared_ptr<grpc::Channel> channel, Authorize authorize);

  // One page of objects under ns/prefix (`token` from the previous page).
  absl::StatusOr<cloudflux::storage::v1::ListObjectsResponse> List(const std::string& ns, const std::string& prefix,
                                                                   const std::string& token, int page_size);
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Head(const std::string& ns, const std::string& key);
  absl::StatusOr<std::vector<cloudflux::storage::v1::Backend>> Backends();
  // Copies ns/key (if still at `version`) to backend/tier: onto itself (a
  // relocation: same key and version, the old bytes removed) when
  // `to_namespace` is empty, else to to_namespace/key. `progress` sees the
  // bytes copied so far. Returns the catalog entry at the target, and in
  // `resumed` the bytes an interrupted copy had stored there already. A
  // streamed copy sends at most `max_bytes_per_second` (0 = no limit). With
  // `verify`, the target's bytes are read back and hashed before the
  // catalog points at them (DATA_LOSS, nothing changed, when they differ).
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Copy(const std::string& ns, const std::string& key,
                                                          int64_t version, const std::string& to_namespace,
                                                          const std::string& backend,
                                                          cloudflux::common::v1::StorageTier tier,
                                                          absl::Duration timeout,
                                                          const std::function<void(int64_t)>& progress,
                                                          int64_t* resumed = nullptr, int64_t max_bytes_per_second = 0,
                                                          bool verify = false, const std::string& pace_group = "");
  // Reads ns/key's stored bytes back and hashes them (`version` 0 = the
  // current one).
  absl::StatusOr<cloudflux::storage::v1::VerifyObjectResponse> Verify(const std::string& ns, const std::string& key,
                                                                      int64_t version, absl::Duration timeout);
  // Keeps a replica of ns/key's current version on backend/tier (storage's
  // replicas); *unchanged when it was current and whole already. Returns
  // the object, with its replicas.
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> Replicate(const std::string& ns, const std::string& key,
                                                               const std::string& backend,
                                                               cloudflux::common::v1::StorageTier tier,
                                                               absl::Duration timeout, bool* unchanged);
  // Removes ns/key's replica on `backend`.
  absl::Status DeleteReplica(const std::string& ns, const std::string& key, const std::string& backend);
  // Deletes ns/key if it is still at `version`.
  absl::Status Delete(const std::string& ns, const std::string& key, int64_t version);

  // One CopyObject call as given, run to its end; `last` (if set) gets the
  // final message.
  absl::StatusOr<cloudflux::storage::v1::ObjectInfo> CopyObject(
      const cloudflux::storage::v1::CopyObjectRequest& request, absl::Duration timeout,
      const std::function<void(int64_t)>& progress, cloudflux::storage::v1::CopyObjectProgress* last = nullptr);
  absl::Status DeleteObject(const cloudflux::storage::v1::DeleteObjectRequest& request);

 private:
  std::unique_ptr<cloudflux::storage::v1::StorageService::Stub> stub_;
  Authorize authorize_;
};

}  // namespace cloudflux::migration
