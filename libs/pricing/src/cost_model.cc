#include "cloudflux/pricing/cost_model.h"

#include <algorithm>

namespace cloudflux::pricing {

std::vector<CostBreakdown> PriceCandidates(const PriceCatalog& catalog, int64_t size,
                                           const Placement& current, const Usage& usage,
                                           double horizon_days, const Constraints& constraints) {
  std::vector<CostBreakdown> out;
  const double gb = static_cast<double>(size) / kBytesPerGb;
  for (const ClassPrice* cls : catalog.classes()) {
    bool is_current = cls == current.cls;
    if (!is_current) {
      if (constraints.max_first_byte_latency_ms > 0 &&
          cls->first_byte_latency_ms() > constraints.max_first_byte_latency_ms) {
        continue;
      }
      if (!constraints.allowed_clouds.empty() && constraints.allowed_clouds.count(cls->cloud()) == 0) continue;
      if (!constraints.allowed_tiers.empty() && constraints.allowed_tiers.count(cls->tier()) == 0) continue;
      if (constraints.opt_in_tiers.count(cls->tier()) > 0 && constraints.allowed_tiers.count(cls->tier()) == 0) {
        continue;
      }
      if (constraints.same_cloud_only && current.cls != nullptr && cls->cloud() != current.cls->cloud()) continue;
      if (constraints.tier_classes_only && catalog.ForTier(cls->cloud(), cls->tier()) != cls) continue;
    }
    CostBreakdown b;
    b.cls = cls;
    b.is_current = is_current;
    b.storage = BillableGb(*cls, size) * cls->storage_per_gb_month() * horizon_days / kDaysPerMonth;
    if (const ManagedTiers* managed = catalog.TiersOf(*cls); managed != nullptr) {
      // Auto-tiering: the expected tier price at this read rate, plus the
      // monitoring fee.
      double per_day = horizon_days > 0 ? usage.reads / horizon_days : 0;
      // Entering the class counts as an access; the current placement goes
      // on from where its tiering has got to.
      double idle = is_current ? std::max(0.0, current.idle_days) : 0;
      b.storage = gb * managed->ExpectedPriceFrom(size, per_day, idle, horizon_days) * horizon_days /
                  kDaysPerMonth;
      if (managed->Monitored(size)) b.storage += managed->fee_per_object_month * horizon_days / kDaysPerMonth;
    }
    b.requests = usage.reads * cls->read_per_1000() / 1000 + usage.writes * cls->write_per_1000() / 1000;
    b.retrieval = usage.bytes_read / kBytesPerGb * cls->retrieval_per_gb();
    if (current.cls == nullptr) {
      // A new object: writing it is part of the price of each class (request
      // prices outweigh storage for small objects), and so is the class's
      // minimum duration beyond the horizon.
      b.move_requests = cls->write_per_1000() / 1000;
      double beyond = cls->min_storage_days() - horizon_days;
      if (beyond > 0) {
        b.min_duration_commit = BillableGb(*cls, size) * cls->storage_per_gb_month() * beyond / kDaysPerMonth;
      }
    } else if (!is_current) {
      const ClassPrice& from = *current.cls;
      // The copy: read the source once, write the target once.
      b.move_egress = gb * catalog.EgressPerGb(from.cloud(), cls->cloud());
      b.move_requests = from.read_per_1000() / 1000 + cls->write_per_1000() / 1000;
      b.move_retrieval = gb * from.retrieval_per_gb();
      double left = from.min_storage_days() - current.days_in_class;
      if (left > 0) {
        b.early_deletion = BillableGb(from, size) * from.storage_per_gb_month() * left / kDaysPerMonth;
      }
      double beyond = cls->min_storage_days() - horizon_days;
      if (beyond > 0) {
        b.min_duration_commit = BillableGb(*cls, size) * cls->storage_per_gb_month() * beyond / kDaysPerMonth;
      }
    }
    b.total = b.storage + b.requests + b.retrieval + b.move();
    b.monthly = horizon_days > 0 ? (b.storage + b.requests + b.retrieval) * kDaysPerMonth / horizon_days : 0;
    out.push_back(b);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const CostBreakdown& a, const CostBreakdown& b) { return a.total < b.total; });
  return out;
}

}  // namespace cloudflux::pricing
