#pragma once
// The cost model: what one object costs in each candidate (cloud, class)
// over a horizon, given its size, where it is now and for how long, and the
// reads and writes expected — storage, requests, retrieval, and for a move
// the egress, the requests and retrieval of the copy, the early-deletion
// charge for leaving the current class before its minimum duration, and
// the minimum duration the new class commits to. A managed auto-tiering
// class (S3 Intelligent-Tiering) is priced at its expected tier for the
// expected read rate plus its monitoring fee. Candidates come back cheapest
// first, each with its breakdown.

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cloudflux/pricing/catalog.h"

namespace cloudflux::pricing {

// Expected use over the horizon.
struct Usage {
  double reads = 0;       // GET requests
  double bytes_read = 0;  // bytes those reads return
  double writes = 0;      // PUTs (overwrites)
};

struct Placement {
  const ClassPrice* cls = nullptr;
  double days_in_class = 0;  // how long the object has been there
  // Days without a read in a managed class (where its tiering has got to).
  double idle_days = 0;
};

// What may be chosen.
struct Constraints {
  int64_t max_first_byte_latency_ms = 0;  // 0 = any
  std::set<CloudProvider> allowed_clouds;  // empty = any
  std::set<StorageTier> allowed_tiers;     // empty = any
  bool same_cloud_only = false;
  // Only the class each tier stands for in its cloud (PriceCatalog::ForTier):
  // objects are moved by tier, so other classes of a tier (S3
  // Intelligent-Tiering beside Standard) cannot be reached.
  bool tier_classes_only = false;
  // Tiers chosen only where allowed_tiers names them (opt-in). By default
  // ARCHIVE_FLEXIBLE: restored in hours, with retrieval fees that a burst of
  // reads after a quiet spell makes expensive (bench/RESULTS.md: the counts
  // rule with it is 0.76x Intelligent-Tiering on backups but 1.16x on
  // datasets idle for weeks, then read). Empty = none held back.
  std::set<StorageTier> opt_in_tiers = {cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE};
};

struct CostBreakdown {
  const ClassPrice* cls = nullptr;
  bool is_current = false;
  // Over the horizon.
  double storage = 0;
  double requests = 0;
  double retrieval = 0;
  // One-time, for a move (0 when staying).
  double move_egress = 0;
  double move_requests = 0;
  double move_retrieval = 0;
  double early_deletion = 0;      // leaving the current class before its minimum
  double min_duration_commit = 0;  // the new class's minimum beyond the horizon
  double total = 0;                // all of the above
  double monthly = 0;              // storage + requests + retrieval per 30 days
  double move() const {
    return move_egress + move_requests + move_retrieval + early_deletion + min_duration_commit;
  }
};

// Every eligible candidate (the current placement always included, even if
// it no longer meets the constraints), cheapest total first.
std::vector<CostBreakdown> PriceCandidates(const PriceCatalog& catalog, int64_t size,
                                           const Placement& current, const Usage& usage,
                                           double horizon_days, const Constraints& constraints);

}  // namespace cloudflux::pricing
