#pragma once
// Builds the configured backends from a BackendsConfig JSON file
// (proto/cloudflux/storage/v1/config.proto). Every error names the backend
// and the field; secrets never appear in messages.

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cloudflux/storage/v1/config.pb.h"
#include "object_store.h"

namespace cloudflux::storage {

absl::StatusOr<cloudflux::storage::v1::BackendsConfig> ReadBackendsConfig(const std::string& path);

absl::StatusOr<std::map<std::string, std::unique_ptr<ObjectStore>>> MakeBackends(
    const cloudflux::storage::v1::BackendsConfig& config);

// The service's backends: "local" under `data_dir`, then those of
// `backends_file` (none when it is empty), all through MakeBackends.
absl::StatusOr<std::map<std::string, std::unique_ptr<ObjectStore>>> LoadBackends(
    const std::string& data_dir, const std::string& backends_file);

}  // namespace cloudflux::storage
