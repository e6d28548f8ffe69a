#pragma once
// The price catalog (proto/cloudflux/pricing/v1/pricing.proto), loaded from
// its JSON data file and validated, with lookups by cloud and class.
// Gigabytes are 2^30 bytes and a month is 30 days throughout.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cloudflux/pricing/v1/pricing.pb.h"

namespace cloudflux::pricing {

using cloudflux::common::v1::CloudProvider;
using cloudflux::common::v1::StorageTier;
using ClassPrice = cloudflux::pricing::v1::StorageClassPrice;

inline constexpr double kBytesPerGb = 1024.0 * 1024.0 * 1024.0;
inline constexpr double kDaysPerMonth = 30.0;

// A managed auto-tiering class resolved: storage price per GB-month by days
// idle, the monitoring fee per object and month, the size below which
// objects are neither monitored nor tiered.
struct ManagedTiers {
  std::vector<std::pair<int, double>> tiers;  // (after_idle_days, $/GB-month), ascending
  double fee_per_object_month = 0;
  int64_t min_monitored_bytes = 0;
  // The storage price after `idle_days` without a read, for `size` bytes.
  double PriceAfterIdle(int64_t size, double idle_days) const;
  // The expected price when reads arrive at `reads_per_day` (Poisson: the
  // share of time idle for at least k days is exp(-rate * k)).
  double ExpectedPrice(int64_t size, double reads_per_day) const;
  // The average expected price over the next `days` for an object idle for
  // `idle_days` now: it keeps ageing until its next read, after which the
  // long-run price above applies.
  double ExpectedPriceFrom(int64_t size, double reads_per_day, double idle_days, double days) const;
  bool Monitored(int64_t size) const { return size >= min_monitored_bytes; }
};

// Whether a tier's classes are archives (ARCHIVE, ARCHIVE_FLEXIBLE): on the
// clouds that restore before a read (ArchiveNeedsRestore in the storage
// adapter), an object there is read only after RestoreObject.
inline bool IsArchiveTier(StorageTier tier) {
  return tier == cloudflux::common::v1::STORAGE_TIER_ARCHIVE ||
         tier == cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE;
}

class PriceCatalog {
 public:
  // Reads and validates the file; INVALID_ARGUMENT naming the entry and
  // field that is wrong, NOT_FOUND when the file cannot be read.
  static absl::StatusOr<PriceCatalog> Load(const std::string& path);
  // The same from JSON text; `origin` names it in errors.
  static absl::StatusOr<PriceCatalog> Parse(const std::string& json, const std::string& origin);
  static absl::StatusOr<PriceCatalog> FromProto(cloudflux::pricing::v1::PriceCatalog proto);

  const cloudflux::pricing::v1::PriceCatalog& proto() const { return proto_; }
  const std::vector<const ClassPrice*>& classes() const { return classes_; }
  // nullptr when absent.
  const ClassPrice* Find(CloudProvider cloud, const std::string& storage_class) const;
  // The cloud's class for a tier (the first listed), or nullptr.
  const ClassPrice* ForTier(CloudProvider cloud, StorageTier tier) const;
  // Egress per GB out of `from`; 0 for the same cloud.
  double EgressPerGb(CloudProvider from, CloudProvider to) const;
  // The managed auto-tiering fee entry by name, or nullptr.
  const cloudflux::pricing::v1::ManagedTieringFee* Managed(const std::string& name) const;
  // The tiers of a managed class (managed_tiering set), else nullptr.
  const ManagedTiers* TiersOf(const ClassPrice& cls) const;

 private:
  cloudflux::pricing::v1::PriceCatalog proto_;
  std::vector<const ClassPrice*> classes_;
  std::vector<std::pair<const ClassPrice*, ManagedTiers>> managed_;
};

// The size a class bills for an object of `size` bytes, in GB (managed
// classes bill the object's own size).
double BillableGb(const ClassPrice& c, int64_t size);
// "AWS/STANDARD_IA"
std::string ClassName(const ClassPrice& c);

// The repository's config/price_catalog.json, compiled in.
const char* DefaultPriceCatalogJson();
// The catalog at `path`, or the built-in one when `path` is empty (the
// services' --price_catalog).
absl::StatusOr<PriceCatalog> LoadCatalogOrDefault(const std::string& path);

// "local=aws,s3=aws,gcs=gcp,azure=azure": which cloud's prices apply to the
// objects of each storage backend. INVALID_ARGUMENT naming the bad entry.
absl::StatusOr<std::map<std::string, CloudProvider>> ParseBackendClouds(const std::string& spec);

}  // namespace cloudflux::pricing
