#pragma once
// gRPC adapter of MigrationCore; planning and database work run on the executor.

#include <grpcpp/alarm.h>

#include <mutex>

#include "cloudflux/migration/v1/migration.grpc.pb.h"
#include "cloudflux/core/status.h"
#include "cloudflux/server/executor.h"
#include "migration_core.h"
#include "placement.h"
#include "replication.h"
#include "sync.h"

namespace cloudflux::migration {

// WatchMigration: an update now, then one every interval (a gRPC alarm; the
// database work runs on the executor) until the job ends, the client goes
// away or the server stops.
class WatchReactor final : public grpc::ServerWriteReactor<cloudflux::migration::v1::MigrationUpdate> {
 public:
  WatchReactor(MigrationCore& core, server::BlockingExecutor& executor,
               const cloudflux::migration::v1::WatchMigrationRequest& request);
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override { delete this; }

 private:
  void Poll();
  void End(const grpc::Status& status);

  MigrationCore& core_;
  server::BlockingExecutor& executor_;
  std::string id_;
  absl::Duration interval_;
  MigrationCore::FailureCursor cursor_;
  int64_t last_bytes_ = -1;
  absl::Time last_at_;
  cloudflux::migration::v1::MigrationUpdate update_;
  grpc::Alarm alarm_;
  std::mutex mu_;
  bool cancelled_ = false, ended_ = false;
};

class MigrationGrpcService final : public cloudflux::migration::v1::MigrationService::CallbackService {
 public:
  MigrationGrpcService(MigrationCore& core, PlacementLoop& placement, ReplicationLoop& replication, SyncPairs& syncs,
                       server::BlockingExecutor& executor)
      : core_(core), placement_(placement), replication_(replication), syncs_(syncs), executor_(executor) {}

  grpc::ServerUnaryReactor* EstimateMigration(grpc::CallbackServerContext* context,
                                              const cloudflux::migration::v1::EstimateMigrationRequest* request,
                                              cloudflux::migration::v1::MigrationEstimate* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return core_.Estimate(*request); });
  }
  grpc::ServerUnaryReactor* CreateMigration(grpc::CallbackServerContext* context,
                                            const cloudflux::migration::v1::CreateMigrationRequest* request,
                                            cloudflux::migration::v1::Migration* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.Create(*request, MigrationCore::CreateOptions{}); });
  }
  grpc::ServerUnaryReactor* GetMigration(grpc::CallbackServerContext* context,
                                         const cloudflux::migration::v1::GetMigrationRequest* request,
                                         cloudflux::migration::v1::Migration* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return core_.Get(request->id()); });
  }
  grpc::ServerUnaryReactor* ListMigrations(grpc::CallbackServerContext* context,
                                           const cloudflux::migration::v1::ListMigrationsRequest* request,
                                           cloudflux::migration::v1::ListMigrationsResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return core_.List(*request); });
  }
  grpc::ServerUnaryReactor* PauseMigration(grpc::CallbackServerContext* context,
                                           const cloudflux::migration::v1::MigrationRef* request,
                                           cloudflux::migration::v1::Migration* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return core_.Pause(request->id()); });
  }
  grpc::ServerUnaryReactor* ResumeMigration(grpc::CallbackServerContext* context,
                                            const cloudflux::migration::v1::MigrationRef* request,
                                            cloudflux::migration::v1::Migration* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.Resume(request->id()); });
  }
  grpc::ServerUnaryReactor* CancelMigration(grpc::CallbackServerContext* context,
                                            const cloudflux::migration::v1::MigrationRef* request,
                                            cloudflux::migration::v1::Migration* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.Cancel(request->id()); });
  }
  grpc::ServerUnaryReactor* RollbackMigration(grpc::CallbackServerContext* context,
                                              const cloudflux::migration::v1::MigrationRef* request,
                                              cloudflux::migration::v1::Migration* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.Rollback(request->id()); });
  }
  grpc::ServerUnaryReactor* SetBandwidth(grpc::CallbackServerContext* context,
                                         const cloudflux::migration::v1::SetBandwidthRequest* request,
                                         cloudflux::migration::v1::Migration* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.SetBandwidth(*request); });
  }
  grpc::ServerUnaryReactor* ListMigrationObjects(
      grpc::CallbackServerContext* context, const cloudflux::migration::v1::ListMigrationObjectsRequest* request,
      cloudflux::migration::v1::ListMigrationObjectsResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.ListObjects(*request); });
  }

  grpc::ServerWriteReactor<cloudflux::migration::v1::MigrationUpdate>* WatchMigration(
      grpc::CallbackServerContext* context, const cloudflux::migration::v1::WatchMigrationRequest* request) override {
    return new WatchReactor(core_, executor_, *request);
  }
  grpc::ServerUnaryReactor* SetPlacementPolicy(grpc::CallbackServerContext* context,
                                               const cloudflux::migration::v1::PlacementPolicy* request,
                                               cloudflux::migration::v1::PlacementPolicy* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return placement_.Set(*request); });
  }
  grpc::ServerUnaryReactor* GetPlacementPolicy(grpc::CallbackServerContext* context,
                                               const cloudflux::migration::v1::PlacementPolicyRef* request,
                                               cloudflux::migration::v1::PlacementPolicy* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return placement_.Get(request->namespace_()); });
  }
  grpc::ServerUnaryReactor* ListPlacementPolicies(
      grpc::CallbackServerContext* context, const cloudflux::migration::v1::ListPlacementPoliciesRequest* /*request*/,
      cloudflux::migration::v1::ListPlacementPoliciesResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this] { return placement_.List(); });
  }
  grpc::ServerUnaryReactor* DeletePlacementPolicy(
      grpc::CallbackServerContext* context, const cloudflux::migration::v1::PlacementPolicyRef* request,
      cloudflux::migration::v1::DeletePlacementPolicyResponse* response) override {
    return server::FinishUnaryOn(
        executor_, context, response,
        [this, request]() -> absl::StatusOr<cloudflux::migration::v1::DeletePlacementPolicyResponse> {
          CF_RETURN_IF_ERROR(placement_.Delete(request->namespace_()));
          return cloudflux::migration::v1::DeletePlacementPolicyResponse();
        });
  }

  grpc::ServerUnaryReactor* CreateReplicationRule(grpc::CallbackServerContext* context,
                                                  const cloudflux::migration::v1::ReplicationRule* request,
                                                  cloudflux::migration::v1::ReplicationRule* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return replication_.Create(*request); });
  }
  grpc::ServerUnaryReactor* GetReplicationRule(grpc::CallbackServerContext* context,
                                               const cloudflux::migration::v1::ReplicationRuleRef* request,
                                               cloudflux::migration::v1::ReplicationRule* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return replication_.Get(request->id()); });
  }
  grpc::ServerUnaryReactor* ListReplicationRules(
      grpc::CallbackServerContext* context, const cloudflux::migration::v1::ListReplicationRulesRequest* /*request*/,
      cloudflux::migration::v1::ListReplicationRulesResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this] { return replication_.List(); });
  }
  grpc::ServerUnaryReactor* SyncReplicationRule(grpc::CallbackServerContext* context,
                                                const cloudflux::migration::v1::ReplicationRuleRef* request,
                                                cloudflux::migration::v1::ReplicationRule* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return replication_.Sync(request->id()); });
  }
  grpc::ServerUnaryReactor* DeleteReplicationRule(grpc::CallbackServerContext* context,
                                                  const cloudflux::migration::v1::DeleteReplicationRuleRequest* request,
                                                  cloudflux::migration::v1::ReplicationRule* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return replication_.Delete(request->id(), request->drop_replicas()); });
  }

  grpc::ServerUnaryReactor* CreateSyncPair(grpc::CallbackServerContext* context,
                                           const cloudflux::migration::v1::SyncPair* request,
                                           cloudflux::migration::v1::SyncPair* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return syncs_.Create(*request); });
  }
  grpc::ServerUnaryReactor* GetSyncPair(grpc::CallbackServerContext* context,
                                        const cloudflux::migration::v1::SyncPairRef* request,
                                        cloudflux::migration::v1::SyncPair* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return syncs_.Get(request->id()); });
  }
  grpc::ServerUnaryReactor* ListSyncPairs(grpc::CallbackServerContext* context,
                                          const cloudflux::migration::v1::ListSyncPairsRequest* /*request*/,
                                          cloudflux::migration::v1::ListSyncPairsResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this] { return syncs_.List(); });
  }
  grpc::ServerUnaryReactor* DeleteSyncPair(grpc::CallbackServerContext* context,
                                           const cloudflux::migration::v1::SyncPairRef* request,
                                           cloudflux::migration::v1::SyncPair* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return syncs_.Delete(request->id()); });
  }
  grpc::ServerUnaryReactor* RunSync(grpc::CallbackServerContext* context,
                                    const cloudflux::migration::v1::RunSyncRequest* request,
                                    cloudflux::migration::v1::SyncRun* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, context, request] {
      return syncs_.Run(*request, absl::FromChrono(context->deadline()), [context] { return context->IsCancelled(); });
    });
  }

 private:
  MigrationCore& core_;
  PlacementLoop& placement_;
  ReplicationLoop& replication_;
  SyncPairs& syncs_;
  server::BlockingExecutor& executor_;
};

}  // namespace cloudflux::migration
