#include "tiers.h"

#include <array>
#include <iterator>

namespace cloudflux::storage {
namespace {

using cloudflux::common::v1::CloudProvider;
using cloudflux::common::v1::StorageTier;

// The tiers, in the order of each row's classes.
constexpr StorageTier kTiers[] = {
    cloudflux::common::v1::STORAGE_TIER_HOT,  cloudflux::common::v1::STORAGE_TIER_WARM,
    cloudflux::common::v1::STORAGE_TIER_COLD, cloudflux::common::v1::STORAGE_TIER_ARCHIVE,
    cloudflux::common::v1::STORAGE_TIER_AUTO, cloudflux::common::v1::STORAGE_TIER_ARCHIVE_FLEXIBLE};
constexpr size_t kTierCount = std::size(kTiers);

struct Row {
  CloudProvider provider;
  std::array<const char*, kTierCount> classes;  // one per kTiers entry (nullptr: none)
};

constexpr Row kTable[] = {
    {cloudflux::common::v1::CLOUD_PROVIDER_AWS,
     {"STANDARD", "STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE", "INTELLIGENT_TIERING", "GLACIER"}},
    {cloudflux::common::v1::CLOUD_PROVIDER_AZURE, {"Hot", "Cool", "Cold", "Archive", nullptr, nullptr}},
    {cloudflux::common::v1::CLOUD_PROVIDER_GCP, {"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", nullptr, nullptr}},
};

// The tier's position in kTiers (HOT's for one not there).
size_t Index(StorageTier tier) {
  for (size_t i = 0; i < kTierCount; ++i) {
    if (kTiers[i] == tier) return i;
  }
  return 0;
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
  if (provider == cloudflux::common::v1::CLOUD_PROVIDER_AWS && storage_class.empty()) {
    return cloudflux::common::v1::STORAGE_TIER_HOT;  // S3 omits the header for STANDARD
  }
  for (const Row& row : kTable) {
    if (row.provider != provider) continue;
    for (size_t i = 0; i < kTierCount; ++i) {
      if (row.classes[i] != nullptr && storage_class == row.classes[i]) return kTiers[i];
    }
  }
  return std::nullopt;
}

}  // namespace cloudflux::storage
