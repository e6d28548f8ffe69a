#include "backends_config.h"

#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/core/status.h"

namespace cloudflux::storage {

namespace v1 = cloudflux::storage::v1;

absl::StatusOr<v1::BackendsConfig> ReadBackendsConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read backends file ", path));
  std::stringstream text;
  text << in.rdbuf();
  v1::BackendsConfig config;
  google::protobuf::util::JsonParseOptions options;
  auto parsed = google::protobuf::util::JsonStringToMessage(text.str(), &config, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("backends file ", path, ": ", std::string(parsed.message())));
  }
  return config;
}

namespace {

absl::StatusOr<std::string> Secret(const v1::BackendConfig& b) {
  if (!b.secret_access_key().empty()) return b.secret_access_key();
  if (b.secret_access_key_file().empty()) return std::string();
  std::ifstream in(b.secret_access_key_file());
  if (!in) {
    return absl::NotFoundError(absl::StrCat("backend ", b.name(), ": cannot read secret_access_key_file ",
                                            b.secret_access_key_file()));
  }
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(text.str()));
}

}  // namespace

absl::StatusOr<std::map<std::string, std::unique_ptr<ObjectStore>>> MakeBackends(
    const v1::BackendsConfig& config) {
  static const std::regex kName("^[a-z0-9][a-z0-9-]{0,62}$");
  std::map<std::string, std::unique_ptr<ObjectStore>> out;
  for (const v1::BackendConfig& b : config.backends()) {
    if (!std::regex_match(b.name(), kName)) {
      return absl::InvalidArgumentError(
          absl::StrCat("backend name '", b.name(), "' must match [a-z0-9][a-z0-9-]*"));
    }
    if (out.count(b.name()) > 0) {
      return absl::InvalidArgumentError(absl::StrCat("backend '", b.name(), "' is configured twice"));
    }
    std::unique_ptr<ObjectStore> store;
    if (b.kind() == "local") {
      if (b.root().empty()) return absl::InvalidArgumentError(absl::StrCat("backend ", b.name(), ": root is required"));
      CF_ASSIGN_OR_RETURN(store, MakeLocalStore(b.name(), b.root()));
    } else if (b.kind() == "s3" || b.kind() == "gcs") {
      S3Options o;
      o.name = b.name();
      o.provider = b.kind() == "gcs" ? cloudflux::common::v1::CLOUD_PROVIDER_GCP
                                     : cloudflux::common::v1::CLOUD_PROVIDER_AWS;
      o.endpoint = b.endpoint();
      if (o.endpoint.empty() && b.kind() == "gcs") o.endpoint = "https://storage.googleapis.com";
      if (o.endpoint.empty()) {
        o.endpoint = absl::StrCat("https://s3.", b.region().empty() ? "us-east-1" : b.region(),
                                  ".amazonaws.com");
      }
      o.region = b.region().empty() ? (b.kind() == "gcs" ? "auto" : "us-east-1") : b.region();
      o.bucket = b.bucket();
      o.virtual_host_style = b.virtual_host_style();
      o.access_key_id = b.access_key_id();
      CF_ASSIGN_OR_RETURN(o.secret_access_key, Secret(b));
      if (b.multipart_threshold() > 0) o.multipart_threshold = b.multipart_threshold();
      if (b.part_size() > 0) o.part_size = b.part_size();
      if (b.parallel_parts() > 0) o.parallel_parts = b.parallel_parts();
      if (b.timeout_seconds() > 0) o.timeout = absl::Seconds(b.timeout_seconds());
      if (b.max_single_copy() > 0) o.max_single_copy = b.max_single_copy();
      CF_ASSIGN_OR_RETURN(store, MakeS3Store(std::move(o)));
    } else if (b.kind() == "azure") {
      AzureOptions o;
      o.name = b.name();
      o.endpoint = b.endpoint();
      o.account = b.access_key_id();
      CF_ASSIGN_OR_RETURN(o.account_key, Secret(b));
      o.container = b.bucket();
      if (b.multipart_threshold() > 0) o.multipart_threshold = b.multipart_threshold();
      if (b.part_size() > 0) o.part_size = b.part_size();
      if (b.parallel_parts() > 0) o.parallel_parts = b.parallel_parts();
      if (b.timeout_seconds() > 0) o.timeout = absl::Seconds(b.timeout_seconds());
      CF_ASSIGN_OR_RETURN(store, MakeAzureStore(std::move(o)));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("backend ", b.name(), ": unknown kind '", b.kind(),
                                                     "' (local, s3, gcs, azure)"));
    }
    out[b.name()] = std::move(store);
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::unique_ptr<ObjectStore>>> LoadBackends(
    const std::string& data_dir, const std::string& backends_file) {
  v1::BackendsConfig config;
  v1::BackendConfig* local = config.add_backends();
  local->set_name("local");
  local->set_kind("local");
  local->set_root(data_dir);
  if (!backends_file.empty()) {
    CF_ASSIGN_OR_RETURN(v1::BackendsConfig more, ReadBackendsConfig(backends_file));
    config.MergeFrom(more);
  }
  return MakeBackends(config);
}

}  // namespace cloudflux::storage
