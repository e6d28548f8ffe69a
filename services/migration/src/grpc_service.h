#pragma once
// gRPC adapter of MigrationCore; planning and database work run on the executor.

#include "cloudflux/migration/v1/migration.grpc.pb.h"
#include "cloudflux/server/executor.h"
#include "migration_core.h"

namespace cloudflux::migration {

class MigrationGrpcService final : public cloudflux::migration::v1::MigrationService::CallbackService {
 public:
  MigrationGrpcService(MigrationCore& core, server::BlockingExecutor& executor) : core_(core), executor_(executor) {}

  grpc::ServerUnaryReactor* EstimateMigration(grpc::CallbackServerContext* context,
                                              const cloudflux::migration::v1::EstimateMigrationRequest* request,
                                              cloudflux::migration::v1::MigrationEstimate* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return core_.Estimate(*request); });
  }
  grpc::ServerUnaryReactor* CreateMigration(grpc::CallbackServerContext* context,
                                            const cloudflux::migration::v1::CreateMigrationRequest* request,
                                            cloudflux::migration::v1::Migration* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.Create(*request, "api"); });
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

 private:
  MigrationCore& core_;
  server::BlockingExecutor& executor_;
};

}  // namespace cloudflux::migration
