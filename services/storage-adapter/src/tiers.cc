#include "tiers.h"

#include <array>

namespace cloudflux::storage {
namespace {

using cloudflux::common::v1::CloudProvider;
using cloudflux::common::v1::StorageTier;

struct Row {
  CloudProvider provider;
  std::array<const char*, 6> classes;  // HOT, WARM, COLD, ARCHIVE, AUTO, ARCHIVE_FLEXIBLE (nullptr: none)
};

constexpr Row kTable[] = {
    {cloudflux::common::v1::CLOUD_PROVIDER_AWS,
     {"STANDARD", "STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE", "INTELLIGENT_TIERING", "GLACIER"}},
    {cloudflux::common::v1::CLOUD_PROVIDER_AZURE, {"Hot", "Cool", "Cold", "Archive", nullptr, nullptr}},
    {cloudflux::common::v1::CLOUD_PROVIDER_GCP, {"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", nullptr, nullptr}},
};

int Index(StorageTier tier) {
  switch (tier) {
    case cloudflux::common::v1::STORAGE_TIER_WARM: return 1;
    case cloudflux::common::v1::STORAGE_TIER_COLD: return 2;
    case cloudflux::common::v1::STORAGE_TIER_ARCHIVE: return 3;
    case cloudflux::common::v1::STORAGE_TIER_AUTO: return 4;
    case cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE: return 5;
    default: return 0;
  }
}

}  // namespace

std::string StorageClassFor(CloudProvider provider, StorageTier tier) {
  for (const Row& row : kTable) {
    if (row.provider != provider) continue;
    const char* name = row.classes[Index(tier)];
    return name != nullptr ? name : row.classes[0];  // refused before (CheckTierOn)
  }
  return "";
}

absl::Status CheckTierOn(CloudProvider provider, StorageTier tier, const std::string& backend) {
  for (const Row& row : kTable) {
    if (row.provider == provider && row.classes[Index(tier)] == nullptr) {
      return absl::FailedPreconditionError("backend '" + backend + "' (" +
                                           cloudflux::common::v1::CloudProvider_Name(provider) +
                                           ") has no class for " + cloudflux::common::v1::StorageTier_Name(tier));
    }
  }
  return absl::OkStatus();
}

bool ArchiveNeedsRestore(CloudProvider provider) {
  return provider == cloudflux::common::v1::CLOUD_PROVIDER_AWS || provider == cloudflux::common::v1::CLOUD_PROVIDER_AZURE;
}

std::optional<StorageTier> TierForStorageClass(CloudProvider provider,
                                               const std::string& storage_class) {
  static constexpr StorageTier kTiers[] = {
      cloudflux::common::v1::STORAGE_TIER_HOT, cloudflux::common::v1::STORAGE_TIER_WARM,
      cloudflux::common::v1::STORAGE_TIER_COLD, cloudflux::common::v1::STORAGE_TIER_ARCHIVE,
      cloudflux::common::v1::STORAGE_TIER_AUTO, cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE};
  if (provider == cloudflux::common::v1::CLOUD_PROVIDER_AWS && storage_class.empty()) {
    return cloudflux::common::v1::STORAGE_TIER_HOT;  // S3 omits the header for STANDARD
  }
  for (const Row& row : kTable) {
    if (row.provider != provider) continue;
    for (int i = 0; i < static_cast<int>(row.classes.size()); ++i) {
      if (row.classes[i] != nullptr && storage_class == row.classes[i]) return kTiers[i];
    }
  }
  return std::nullopt;
}

}  // namespace cloudflux::storage
