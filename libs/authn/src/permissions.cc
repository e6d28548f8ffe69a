#include "cloudflux/authn/permissions.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cloudflux::authn {

bool IsKnownRole(std::string_view role) {
  return role == kRoleAdmin || role == kRoleOperator || role == kRoleViewer || role == kRoleService;
}

bool IsReservedNamespace(std::string_view ns) { return ns.substr(0, 10) == "cloudflux-"; }

absl::Status CheckNamespaceWrite(std::string_view ns, const std::vector<std::string>* roles) {
  if (roles == nullptr || !IsReservedNamespace(ns)) return absl::OkStatus();
  for (const auto& r : *roles) {
    if (r == kRoleService || r == kRoleAdmin) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat("namespace '", std::string(ns),
                                                  "' is reserved to the suite's services: only the service and "
                                                  "admin roles may change its objects"));
}

void PermissionTable::Allow(std::string method, std::set<std::string> roles) {
  roles.insert(kRoleAdmin);  // admin may do everything
  allowed_[std::move(method)] = std::move(roles);
}

void PermissionTable::AllowPublic(std::string method) { public_.insert(std::move(method)); }

bool PermissionTable::IsPublic(std::string_view method) const { return public_.count(method) > 0; }

bool PermissionTable::IsListed(std::string_view method) const {
  return IsPublic(method) || allowed_.find(method) != allowed_.end();
}

absl::Status PermissionTable::Check(std::string_view method,
                                    const std::vector<std::string>& roles) const {
  if (IsPublic(method)) return absl::OkStatus();
  auto it = allowed_.find(method);
  if (it == allowed_.end()) {
    return absl::PermissionDeniedError(absl::StrCat("method ", std::string(method), " is not open to any role"));
  }
  for (const auto& role : roles) {
    if (it->second.count(role) > 0) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "roles [", absl::StrJoin(roles, ","), "] may not call ", std::string(method), "; allowed: ",
      absl::StrJoin(it->second, ",")));
}

std::vector<std::string> PermissionTable::Methods() const {
  std::vector<std::string> out(public_.begin(), public_.end());
  for (const auto& [m, r] : allowed_) out.push_back(m);
  return out;
}

namespace {

PermissionTable BuildDefault() {
  PermissionTable t;
  const std::set<std::string> read = {kRoleOperator, kRoleViewer};
  const std::set<std::string> operate = {kRoleOperator};
  const std::set<std::string> admin_only = {};

  // --- cloudflux.diagnostics.v1 (served by every binary)
  t.Allow("/cloudflux.diagnostics.v1.Diagnostics/GetServerInfo", read);
  t.Allow("/cloudflux.diagnostics.v1.Diagnostics/Echo", operate);

  // --- cloudflux.auth.v1
  const std::string auth = "/cloudflux.auth.v1.AuthService/";
  t.AllowPublic(auth + "IssueToken");
  t.AllowPublic(auth + "GetJwks");
  // Revoking a token proves possession of it; RFC 7009 clients hold no other.
  t.AllowPublic(auth + "RevokeToken");
  t.Allow(auth + "IntrospectToken", read);
  t.Allow(auth + "CreatePrincipal", admin_only);
  t.Allow(auth + "GetPrincipal", admin_only);
  t.Allow(auth + "ListPrincipals", admin_only);
  t.Allow(auth + "SetPrincipalDisabled", admin_only);
  t.Allow(auth + "SetRoles", admin_only);
  t.Allow(auth + "CreateApiKey", admin_only);
  t.Allow(auth + "ListApiKeys", admin_only);
  t.Allow(auth + "RevokeApiKey", admin_only);
  t.Allow(auth + "RotateSigningKey", admin_only);
  t.Allow(auth + "ListAuditEvents", admin_only);

  // --- cloudflux.storage.v1
  const std::string storage = "/cloudflux.storage.v1.StorageService/";
  t.Allow(storage + "PutObject", operate);
  t.Allow(storage + "DeleteObject", operate);
  t.Allow(storage + "CopyObject", operate);
  t.Allow(storage + "SetTier", operate);
  t.Allow(storage + "RestoreObject", operate);
  t.Allow(storage + "VerifyObject", operate);  // reads whole objects back: a cost
  t.Allow(storage + "GetObject", read);
  t.Allow(storage + "HeadObject", read);
  t.Allow(storage + "ListObjects", read);
  t.Allow(storage + "ListBackends", read);

  // --- cloudflux.classification.v1
  const std::string classification = "/cloudflux.classification.v1.ClassificationService/";
  t.Allow(classification + "Classify", operate);  // may publish decisions
  t.Allow(classification + "ClassifyBatch", operate);
  t.Allow(classification + "GetDistribution", read);
  t.Allow(classification + "GetCostBreakdown", read);
  t.Allow(classification + "GetPotentialSavings", read);
  t.Allow(classification + "CreatePolicy", operate);
  t.Allow(classification + "UpdatePolicy", operate);
  t.Allow(classification + "DeletePolicy", operate);
  t.Allow(classification + "GetPolicy", read);
  t.Allow(classification + "ListPolicies", read);

  // --- cloudflux.prediction.v1
  const std::string prediction = "/cloudflux.prediction.v1.PredictionService/";
  t.Allow(prediction + "Forecast", read);
  t.Allow(prediction + "ForecastBatch", read);
  t.Allow(prediction + "RecommendTier", read);
  t.Allow(prediction + "ListModels", read);
  t.Allow(prediction + "GetModel", read);
  t.Allow(prediction + "Train", operate);
  t.Allow(prediction + "PromoteModel", admin_only);
  t.Allow(prediction + "RollbackModel", admin_only);

  // --- cloudflux.migration.v1
  const std::string migration = "/cloudflux.migration.v1.MigrationService/";
  t.Allow(migration + "EstimateMigration", read);
  t.Allow(migration + "CreateMigration", operate);
  t.Allow(migration + "GetMigration", read);
  t.Allow(migration + "ListMigrations", read);
  t.Allow(migration + "PauseMigration", operate);
  t.Allow(migration + "ResumeMigration", operate);
  t.Allow(migration + "CancelMigration", operate);
  t.Allow(migration + "RollbackMigration", operate);
  t.Allow(migration + "SetBandwidth", operate);
  t.Allow(migration + "ListMigrationObjects", read);
  t.Allow(migration + "WatchMigration", read);
  t.Allow(migration + "SetPlacementPolicy", operate);
  t.Allow(migration + "GetPlacementPolicy", read);
  t.Allow(migration + "ListPlacementPolicies", read);
  t.Allow(migration + "DeletePlacementPolicy", operate);
  t.Allow(migration + "CreateReplicationRule", operate);
  t.Allow(migration + "GetReplicationRule", read);
  t.Allow(migration + "ListReplicationRules", read);
  t.Allow(migration + "SyncReplicationRule", operate);
  t.Allow(migration + "DeleteReplicationRule", operate);
  t.Allow(migration + "CreateSyncPair", operate);
  t.Allow(migration + "GetSyncPair", read);
  t.Allow(migration + "ListSyncPairs", read);
  t.Allow(migration + "DeleteSyncPair", operate);
  t.Allow(migration + "RunSync", operate);
  return t;
}

}  // namespace

const PermissionTable& DefaultPermissions() {
  static const PermissionTable* table = new PermissionTable(BuildDefault());
  return *table;
}

}  // namespace cloudflux::authn
