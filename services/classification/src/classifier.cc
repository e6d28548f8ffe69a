#include "classifier.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cloudflux/classification/v1/events.pb.h"
#include "cloudflux/core/status.h"

namespace cloudflux {
extern const char kDefaultPriceCatalog[];
}

namespace cloudflux::classification {

namespace v1 = cloudflux::classification::v1;
using cloudflux::common::v1::CloudProvider;

const char* DefaultPriceCatalogJson() { return kDefaultPriceCatalog; }

absl::StatusOr<std::map<std::string, pricing::CloudProvider>> ParseBackendClouds(const std::string& spec) {
  static const std::map<std::string, CloudProvider> kClouds = {
      {"aws", cloudflux::common::v1::CLOUD_PROVIDER_AWS},
      {"azure", cloudflux::common::v1::CLOUD_PROVIDER_AZURE},
      {"gcp", cloudflux::common::v1::CLOUD_PROVIDER_GCP}};
  std::map<std::string, pricing::CloudProvider> out;
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    std::string backend(absl::StripAsciiWhitespace(kv.first));
    std::string cloud = absl::AsciiStrToLower(absl::StripAsciiWhitespace(kv.second));
    auto it = kClouds.find(cloud);
    if (backend.empty() || it == kClouds.end()) {
      return absl::InvalidArgumentError(absl::StrCat("backend_clouds entry '", entry,
                                                     "' must be <backend>=aws|azure|gcp"));
    }
    if (!out.emplace(backend, it->second).second) {
      return absl::InvalidArgumentError(absl::StrCat("backend_clouds names '", backend, "' twice"));
    }
  }
  return out;
}

absl::StatusOr<v1::Classification> Classifier::Classify(const v1::ClassifyRequest& request) {
  if (request.namespace_().empty() || request.key().empty()) {
    return absl::InvalidArgumentError("namespace and key are required");
  }
  if (request.namespace_().size() > 63 || request.key().size() > 1024) {
    return absl::InvalidArgumentError("namespace or key too long");
  }
  if (request.max_first_byte_latency_ms() < 0) {
    return absl::InvalidArgumentError("max_first_byte_latency_ms must not be negative");
  }
  const absl::Time now = clock_.Now();
  CF_ASSIGN_OR_RETURN(ObjectStats s, stats_.Get(request.namespace_(), request.key(), now));
  auto cloud = options_.backend_clouds.find(s.backend);
  if (cloud == options_.backend_clouds.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backend '", s.backend, "' has no cloud in --backend_clouds, so its prices are unknown"));
  }
  const pricing::ClassPrice* current = catalog_.ForTier(cloud->second, s.tier);
  if (current == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the price catalog has no class for ", CloudProvider_Name(cloud->second), " tier ",
                     cloudflux::common::v1::StorageTier_Name(s.tier)));
  }
  auto days = [&](std::optional<absl::Time> since) {
    return since.has_value() ? std::max(0.0, absl::ToDoubleHours(now - *since) / 24) : 0.0;
  };
  absl::Time written = s.created.value_or(s.placed.value_or(now));
  pricing::AccessStats stats{.size = s.size,
                             .age_days = days(written),
                             .days_in_class = days(s.placed.value_or(written)),
                             .reads_1d = s.reads_1d,
                             .reads_7d = s.reads_7d,
                             .reads_30d = s.reads_30d,
                             .reads_90d = s.reads_90d,
                             .days_since_last_read = days(s.last_read.value_or(written))};
  absl::Time idle_since = std::max(s.placed.value_or(written), s.last_read.value_or(written));
  pricing::Placement placement{current, stats.days_in_class, days(idle_since)};
  CF_ASSIGN_OR_RETURN(std::optional<v1::Policy> rule, policies_.ForObject(s.ns, s.key));
  pricing::TierPolicy policy =
      rule.has_value() ? PolicyStore::Apply(*rule, options_.policy) : options_.policy;
  // Decisions stay within the object's cloud (its backend's).
  policy.constraints.allowed_clouds = {cloud->second};
  // The caller's latency need, else the policy's, else the default.
  if (request.max_first_byte_latency_ms() > 0) {
    policy.constraints.max_first_byte_latency_ms = request.max_first_byte_latency_ms();
  } else if (policy.constraints.max_first_byte_latency_ms == 0) {
    policy.constraints.max_first_byte_latency_ms = options_.default_max_latency_ms;
  }
  pricing::Decision d = pricing::Decide(catalog_, stats, placement, policy);

  v1::Classification out;
  out.set_namespace_(s.ns);
  out.set_key(s.key);
  out.set_version(s.version);
  out.set_backend(s.backend);
  out.set_cloud(d.target->cloud());
  out.set_storage_class(d.target->storage_class());
  out.set_tier(d.target->tier());
  out.set_move(d.move);
  out.set_current_monthly_cost(d.current_monthly);
  out.set_target_monthly_cost(d.target_monthly);
  out.set_saving(d.saving);
  out.set_horizon_days(policy.horizon_days);
  out.set_expected_reads(d.expected.reads);
  out.set_reason(d.reason);
  if (rule.has_value()) out.set_policy(absl::StrCat(rule->namespace_(), "/", rule->prefix()));
  for (const auto& c : d.candidates) {
    v1::Candidate* x = out.add_candidates();
    x->set_cloud(c.cls->cloud());
    x->set_storage_class(c.cls->storage_class());
    x->set_tier(c.cls->tier());
    x->set_current(c.is_current);
    x->set_monthly_cost(c.monthly);
    x->set_total_cost(c.total);
    x->set_storage_cost(c.storage);
    x->set_request_cost(c.requests);
    x->set_retrieval_cost(c.retrieval);
    x->set_move_cost(c.move());
    x->set_early_deletion_cost(c.early_deletion);
  }
  if (request.publish() && d.move) {
    v1::TierDecided event;
    event.set_namespace_(s.ns);
    event.set_key(s.key);
    event.set_version(s.version);
    event.set_from_backend(s.backend);
    event.set_from_cloud(current->cloud());
    event.set_from_storage_class(current->storage_class());
    event.set_from_tier(current->tier());
    event.set_to_cloud(d.target->cloud());
    event.set_to_storage_class(d.target->storage_class());
    event.set_to_tier(d.target->tier());
    event.set_expected_saving(d.saving);
    event.set_horizon_days(policy.horizon_days);
    event.set_reason(d.reason);
    std::string subject = absl::StrCat(s.ns, "/", s.key);
    CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) {
      return outbox_.Enqueue(tx, kDecisionTopic,
                             events::MakeEnvelope("cloudflux/classification", "objects/" + subject, subject,
                                                  event, clock_));
    }));
    out.set_published(true);
  }
  return out;
}

}  // namespace cloudflux::classification
