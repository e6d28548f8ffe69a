#include "cloudflux/pricing/catalog.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace cloudflux {
extern const char kDefaultPriceCatalog[];
}

namespace cloudflux::pricing {

namespace v1 = cloudflux::pricing::v1;
using cloudflux::common::v1::CloudProvider_Name;

std::string ClassName(const ClassPrice& c) {
  std::string cloud = CloudProvider_Name(c.cloud());
  if (cloud.rfind("CLOUD_PROVIDER_", 0) == 0) cloud = cloud.substr(15);
  return absl::StrCat(cloud, "/", c.storage_class());
}

double BillableGb(const ClassPrice& c, int64_t size) {
  return static_cast<double>(std::max(size, c.min_billable_bytes()) + c.per_object_overhead_bytes()) /
         kBytesPerGb;
}

namespace {

absl::Status Bad(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("price catalog: ", where, ": ", what));
}

absl::Status CheckSource(const std::string& where, const std::string& source, const std::string& as_of) {
  static const std::regex kDate(R"(^\d{4}-\d{2}-\d{2}$)");
  if (source.empty()) return Bad(where, "source is required");
  if (!std::regex_match(as_of, kDate)) return Bad(where, "as_of must be a YYYY-MM-DD date");
  return absl::OkStatus();
}

bool IsCloud(CloudProvider c) {
  return c == cloudflux::common::v1::CLOUD_PROVIDER_AWS ||
         c == cloudflux::common::v1::CLOUD_PROVIDER_AZURE ||
         c == cloudflux::common::v1::CLOUD_PROVIDER_GCP ||
         c == cloudflux::common::v1::CLOUD_PROVIDER_LOCAL;
}

}  // namespace

double ManagedTiers::PriceAfterIdle(int64_t size, double idle_days) const {
  if (!Monitored(size)) return tiers.front().second;
  double price = tiers.front().second;
  for (const auto& [after, p] : tiers) {
    if (idle_days >= after) price = p;
  }
  return price;
}

double ManagedTiers::ExpectedPrice(int64_t size, double reads_per_day) const {
  if (!Monitored(size)) return tiers.front().second;
  double price = 0;
  for (size_t i = 0; i < tiers.size(); ++i) {
    double from = std::exp(-reads_per_day * tiers[i].first);
    double to = i + 1 < tiers.size() ? std::exp(-reads_per_day * tiers[i + 1].first) : 0;
    price += tiers[i].second * (from - to);
  }
  return price;
}

double ManagedTiers::ExpectedPriceFrom(int64_t size, double reads_per_day, double idle_days,
                                       double days) const {
  if (!Monitored(size) || days <= 0) return tiers.front().second;
  const double settled = ExpectedPrice(size, reads_per_day);
  const int n = std::max(1, static_cast<int>(days));
  // Day t (0..n-1) is still quiet with probability q^t, q = exp(-rate), and
  // then priced by its tier at idle_days + t; otherwise at the settled price.
  // The tiers cut [0, n) into runs of one price: sum q^t over each in
  // closed form.
  const double q = std::exp(-reads_per_day);
  auto geometric = [&](double a, double b) {  // sum of q^t for integer t in [a, b)
    if (b <= a) return 0.0;
    if (q >= 1) return b - a;
    return (std::pow(q, a) - std::pow(q, b)) / (1 - q);
  };
  double quiet_total = geometric(0, n), quiet_priced = 0;
  for (size_t i = 0; i < tiers.size(); ++i) {
    double from = std::max(0.0, std::ceil(tiers[i].first - idle_days));
    double to = i + 1 < tiers.size() ? std::max(0.0, std::ceil(tiers[i + 1].first - idle_days)) : n;
    quiet_priced += tiers[i].second * geometric(std::min<double>(from, n), std::min<double>(to, n));
  }
  return (quiet_priced + settled * (n - quiet_total)) / n;
}

absl::StatusOr<PriceCatalog> PriceCatalog::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read price catalog ", path));
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<PriceCatalog> PriceCatalog::Parse(const std::string& json, const std::string& origin) {
  v1::PriceCatalog proto;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, &proto);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("price catalog ", origin, ": ", std::string(parsed.message())));
  }
  return FromProto(std::move(proto));
}

absl::StatusOr<PriceCatalog> PriceCatalog::FromProto(v1::PriceCatalog proto) {
  if (proto.currency().empty()) return Bad("catalog", "currency is required");
  if (proto.classes().empty()) return Bad("catalog", "no storage classes");
  std::set<std::pair<int, std::string>> seen;
  for (int i = 0; i < proto.classes_size(); ++i) {
    const ClassPrice& c = proto.classes(i);
    std::string where = absl::StrCat("classes[", i, "] ", ClassName(c));
    if (!IsCloud(c.cloud())) return Bad(where, "cloud must be AWS, AZURE, GCP or LOCAL");
    if (c.storage_class().empty()) return Bad(where, "storage_class is required");
    if (!seen.insert({c.cloud(), c.storage_class()}).second) return Bad(where, "listed twice");
    if (c.tier() == cloudflux::common::v1::STORAGE_TIER_UNSPECIFIED ||
        !cloudflux::common::v1::StorageTier_IsValid(c.tier())) {
      return Bad(where, "tier must be HOT, WARM, COLD or ARCHIVE");
    }
    for (auto [name, value] : {std::pair{"storage_per_gb_month", c.storage_per_gb_month()},
                               std::pair{"retrieval_per_gb", c.retrieval_per_gb()},
                               std::pair{"write_per_1000", c.write_per_1000()},
                               std::pair{"read_per_1000", c.read_per_1000()}}) {
      if (!(value >= 0) || value > 1000) return Bad(where, absl::StrCat(name, " must be 0..1000"));
    }
    if (c.storage_per_gb_month() <= 0) return Bad(where, "storage_per_gb_month must be positive");
    if (c.min_storage_days() < 0 || c.min_storage_days() > 3650) return Bad(where, "min_storage_days must be 0..3650");
    if (c.min_billable_bytes() < 0 || c.per_object_overhead_bytes() < 0) {
      return Bad(where, "sizes must not be negative");
    }
    if (c.first_byte_latency_ms() <= 0) return Bad(where, "first_byte_latency_ms must be positive");
    if (auto s = CheckSource(where, c.source(), c.as_of()); !s.ok()) return s;
  }
  for (int i = 0; i < proto.egress_size(); ++i) {
    const auto& e = proto.egress(i);
    std::string where = absl::StrCat("egress[", i, "]");
    if (!IsCloud(e.from())) return Bad(where, "from must be a cloud");
    if (!(e.per_gb() >= 0)) return Bad(where, "per_gb must not be negative");
    if (auto s = CheckSource(where, e.source(), e.as_of()); !s.ok()) return s;
  }
  for (int i = 0; i < proto.managed_tiering_size(); ++i) {
    const auto& m = proto.managed_tiering(i);
    std::string where = absl::StrCat("managed_tiering[", i, "] ", m.name());
    if (m.name().empty()) return Bad(where, "name is required");
    if (!(m.per_1000_objects_month() >= 0)) return Bad(where, "fee must not be negative");
    if (auto s = CheckSource(where, m.source(), m.as_of()); !s.ok()) return s;
  }
  PriceCatalog out;
  out.proto_ = std::move(proto);
  for (const auto& c : out.proto_.classes()) out.classes_.push_back(&c);
  for (const ClassPrice* c : out.classes_) {
    if (c->managed_tiering().empty()) continue;
    std::string where = "class " + ClassName(*c);
    const v1::ManagedTieringFee* fee = out.Managed(c->managed_tiering());
    if (fee == nullptr) return Bad(where, "managed_tiering '" + c->managed_tiering() + "' is not listed");
    if (fee->tiers().empty() || fee->tiers(0).after_idle_days() != 0) {
      return Bad(where, "its managed tiers must start at after_idle_days 0");
    }
    ManagedTiers m;
    m.fee_per_object_month = fee->per_1000_objects_month() / 1000;
    m.min_monitored_bytes = fee->min_monitored_bytes();
    for (const auto& t : fee->tiers()) {
      const ClassPrice* priced = out.Find(c->cloud(), t.priced_as());
      if (priced == nullptr) return Bad(where, "managed tier priced as unknown class '" + t.priced_as() + "'");
      if (!m.tiers.empty() && t.after_idle_days() <= m.tiers.back().first) {
        return Bad(where, "managed tiers must have increasing after_idle_days");
      }
      m.tiers.emplace_back(t.after_idle_days(), priced->storage_per_gb_month());
    }
    out.managed_.emplace_back(c, std::move(m));
  }
  return out;
}

const ClassPrice* PriceCatalog::Find(CloudProvider cloud, const std::string& storage_class) const {
  for (const ClassPrice* c : classes_) {
    if (c->cloud() == cloud && c->storage_class() == storage_class) return c;
  }
  return nullptr;
}

const ClassPrice* PriceCatalog::ForTier(CloudProvider cloud, StorageTier tier) const {
  for (const ClassPrice* c : classes_) {
    if (c->cloud() == cloud && c->tier() == tier) return c;
  }
  return nullptr;
}

double PriceCatalog::EgressPerGb(CloudProvider from, CloudProvider to) const {
  if (from == to) return 0;
  for (const auto& e : proto_.egress()) {
    if (e.from() == from) return e.per_gb();
  }
  return 0;
}

const ManagedTiers* PriceCatalog::TiersOf(const ClassPrice& cls) const {
  for (const auto& [c, m] : managed_) {
    if (c == &cls) return &m;
  }
  return nullptr;
}

const v1::ManagedTieringFee* PriceCatalog::Managed(const std::string& name) const {
  for (const auto& m : proto_.managed_tiering()) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

const char* DefaultPriceCatalogJson() { return kDefaultPriceCatalog; }

absl::StatusOr<PriceCatalog> LoadCatalogOrDefault(const std::string& path) {
  return path.empty() ? PriceCatalog::Parse(kDefaultPriceCatalog, "(built in)") : PriceCatalog::Load(path);
}

absl::StatusOr<std::map<std::string, CloudProvider>> ParseBackendClouds(const std::string& spec) {
  static const std::map<std::string, CloudProvider> kClouds = {
      {"aws", cloudflux::common::v1::CLOUD_PROVIDER_AWS},
      {"azure", cloudflux::common::v1::CLOUD_PROVIDER_AZURE},
      {"gcp", cloudflux::common::v1::CLOUD_PROVIDER_GCP}};
  std::map<std::string, CloudProvider> out;
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

}  // namespace cloudflux::pricing
