#pragma once
// Classifier: one object's placement decision — its access statistics, the
// price catalog, the policy of its namespace/prefix and its latency need
// through pricing::Decide — and, when
// asked, the TierDecided event for a recommended move (outbox, topic
// cloudflux.classification.decisions). Thread-safe.

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "access_stats.h"
#include "policies.h"
#include "cloudflux/classification/v1/classification.pb.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/outbox.h"
#include "cloudflux/pricing/decide.h"

namespace cloudflux::classification {

inline constexpr char kDecisionTopic[] = "cloudflux.classification.decisions";

// The repository's config/price_catalog.json, compiled in.
const char* DefaultPriceCatalogJson();

// "local=aws,s3=aws,gcs=gcp,azure=azure": which cloud's prices apply to the
// objects of each storage backend. INVALID_ARGUMENT naming the bad entry.
absl::StatusOr<std::map<std::string, pricing::CloudProvider>> ParseBackendClouds(const std::string& spec);

struct ClassifierOptions {
  std::map<std::string, pricing::CloudProvider> backend_clouds;
  int64_t default_max_latency_ms = 1000;
  pricing::TierPolicy policy;  // horizon, hysteresis, minimum age; constraints set per object
};

class Classifier {
 public:
  Classifier(db::Pool& pool, AccessStatsStore& stats, PolicyStore& policies,
             const pricing::PriceCatalog& catalog, ClassifierOptions options,
             const core::Clock& clock = core::SystemClock::Get())
      : pool_(pool),
        stats_(stats),
        policies_(policies),
        catalog_(catalog),
        options_(std::move(options)),
        clock_(clock) {}

  absl::StatusOr<cloudflux::classification::v1::Classification> Classify(
      const cloudflux::classification::v1::ClassifyRequest& request);

 private:
  db::Pool& pool_;
  AccessStatsStore& stats_;
  PolicyStore& policies_;
  const pricing::PriceCatalog& catalog_;
  ClassifierOptions options_;
  const core::Clock& clock_;
  events::Outbox outbox_{"classification"};
};

}  // namespace cloudflux::classification
