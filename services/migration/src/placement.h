#pragma once
// PlacementLoop: closes observe -> predict -> decide -> move. The
// classification service's move decisions (TierDecided, topic
// cloudflux.classification.decisions) for namespaces whose placement policy
// is enabled are kept, the newest per object, in migration.decisions
// (claimed exactly once per message, events::ClaimMessages). Each round
// (RunOnce) turns the waiting decisions of every enabled policy, inside its
// maintenance window and while its daily byte and cost budgets last, into
// migrations (origin "placement", one per target, up to batch_objects
// decisions each; a batch over the budget is halved until it fits).
// Thread-safe.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/batch_ingest.h"
#include "cloudflux/events/kafka.h"
#include "cloudflux/migration/v1/migration.pb.h"
#include "migration_core.h"

namespace cloudflux::migration {

inline constexpr char kDecisionTopic[] = "cloudflux.classification.decisions";

class PlacementLoop {
 public:
  PlacementLoop(db::Pool& pool, MigrationCore& core, const core::Clock& clock = core::SystemClock::Get())
      : pool_(pool), core_(core), clock_(clock) {}

  absl::StatusOr<events::IngestCounts> ApplyMessages(const std::vector<events::ConsumedMessage>& messages);
  // One round over every enabled policy; returns the migrations started.
  absl::StatusOr<int> RunOnce();

  absl::StatusOr<cloudflux::migration::v1::PlacementPolicy> Set(const cloudflux::migration::v1::PlacementPolicy& p);
  absl::StatusOr<cloudflux::migration::v1::PlacementPolicy> Get(const std::string& ns);
  absl::StatusOr<cloudflux::migration::v1::ListPlacementPoliciesResponse> List();
  absl::Status Delete(const std::string& ns);

 private:
  // Starts the migrations of one namespace's waiting decisions.
  absl::StatusOr<int> RunPolicy(const cloudflux::migration::v1::PlacementPolicy& policy);

  db::Pool& pool_;
  MigrationCore& core_;
  const core::Clock& clock_;
};

}  // namespace cloudflux::migration
