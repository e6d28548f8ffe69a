#pragma once
// The ids of the migration service's records (jobs, replication rules, sync
// pairs) are UUIDs: an id given by a client is checked and put in canonical
// form before any query.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/uuid.h"

namespace cloudflux::migration {

// `what` names the record in the error: "a migration", "a sync pair".
inline absl::StatusOr<std::string> CanonicalId(const std::string& id, const char* what) {
  auto uuid = core::ParseUuid(id);
  if (!uuid.has_value()) return absl::InvalidArgumentError(absl::StrCat("'", id, "' is not ", what, " id"));
  return core::UuidToString(*uuid);
}

}  // namespace cloudflux::migration
