#pragma once
// The one table between CloudFlux tiers and each cloud's storage classes.
//
//   tier     AWS S3        Azure Blob   GCS
//   HOT      STANDARD      Hot          STANDARD
//   WARM     STANDARD_IA   Cool         NEARLINE
//   COLD     GLACIER_IR    Cold         COLDLINE
//   ARCHIVE  DEEP_ARCHIVE  Archive      ARCHIVE
//   AUTO     INTELLIGENT_TIERING   -     -
//   ARCHIVE_FLEXIBLE  GLACIER      -     -

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "cloudflux/common/v1/common.pb.h"

namespace cloudflux::storage {

// The provider's class name for `tier` (unspecified = HOT); empty for local.
std::string StorageClassFor(cloudflux::common::v1::CloudProvider provider,
                            cloudflux::common::v1::StorageTier tier);

// FAILED_PRECONDITION for a tier the provider has no class for (AUTO and
// ARCHIVE_FLEXIBLE on Azure and GCS), naming `backend`.
absl::Status CheckTierOn(cloudflux::common::v1::CloudProvider provider, cloudflux::common::v1::StorageTier tier,
                         const std::string& backend);

// Whether the provider's archive classes (pricing::IsArchiveTier) must be
// restored before they can be read (AWS, Azure; GCS's Archive is read
// directly).
bool ArchiveNeedsRestore(cloudflux::common::v1::CloudProvider provider);

// The tier a provider's class name stands for; nullopt for unknown names.
std::optional<cloudflux::common::v1::StorageTier> TierForStorageClass(
    cloudflux::common::v1::CloudProvider provider, const std::string& storage_class);

}  // namespace cloudflux::storage
