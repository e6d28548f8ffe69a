#include "tiers.h"

#include <array>

namespace cloudflux::storage {
namespace {

using cloudflux::common::v1::CloudProvider;
using cloudflux::common::v1::StorageTier;

struct Row {
  CloudProvider provider;
  std::array<const char*, 4> classes;  // HOT, WARM, COLD, ARCHIVE
};

constexpr Row kTable[] = {
    {cloudflux::common::v1::CLOUD_PROVIDER_AWS,
     {"STANDARD", "STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE"}},
    {cloudflux::common::v1::CLOUD_PROVIDER_AZURE, {"Hot", "Cool", "Cold", "Archive"}},
    {cloudflux::common::v1::CLOUD_PROVIDER_GCP, {"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"}},
};

int Index(StorageTier tier) {
  switch (tier) {
    case cloudflux::common::v1::STORAGE_TIER_WARM: return 1;
    case cloudflux::common::v1::STORAGE_TIER_COLD: return 2;
    case cloudflux::common::v1::STORAGE_TIER_ARCHIVE: return 3;
    default: return 0;
  }
}

}  // namespace

std::string StorageClassFor(CloudProvider provider, StorageTier tier) {
  for (const Row& row : kTable) {
    if (row.provider == provider) return row.classes[Index(tier)];
  }
  return "";
}

std::optional<StorageTier> TierForStorageClass(CloudProvider provider,
                                               const std::string& storage_class) {
  static constexpr StorageTier kTiers[] = {
      cloudflux::common::v1::STORAGE_TIER_HOT, cloudflux::common::v1::STORAGE_TIER_WARM,
      cloudflux::common::v1::STORAGE_TIER_COLD, cloudflux::common::v1::STORAGE_TIER_ARCHIVE};
  if (provider == cloudflux::common::v1::CLOUD_PROVIDER_AWS && storage_class == "GLACIER") {
    return cloudflux::common::v1::STORAGE_TIER_ARCHIVE;
  }
  if (provider == cloudflux::common::v1::CLOUD_PROVIDER_AWS && storage_class.empty()) {
    return cloudflux::common::v1::STORAGE_TIER_HOT;  // S3 omits the header for STANDARD
  }
  for (const Row& row : kTable) {
    if (row.provider != provider) continue;
    for (int i = 0; i < 4; ++i) {
      if (storage_class == row.classes[i]) return kTiers[i];
    }
  }
  return std::nullopt;
}

}  // namespace cloudflux::storage
