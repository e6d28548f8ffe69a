#pragma once
// The price catalog (proto/cloudflux/pricing/v1/pricing.proto), loaded from
// its JSON data file and validated, with lookups by cloud and class.
// Gigabytes are 2^30 bytes and a month is 30 days throughout.

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

class PriceCatalog {
 public:
  // Reads and validates the file; INVALID_ARGUMENT naming the entry and
  // field that is wrong, NOT_FOUND when the file cannot be read.
  static absl::StatusOr<PriceCatalog> Load(const std::string& path);
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

 private:
  cloudflux::pricing::v1::PriceCatalog proto_;
  std::vector<const ClassPrice*> classes_;
};

// The size a class bills for an object of `size` bytes, in GB.
double BillableGb(const ClassPrice& c, int64_t size);
// "AWS/STANDARD_IA"
std::string ClassName(const ClassPrice& c);

}  // namespace cloudflux::pricing
