#pragma once
// gRPC adapter of PredictionCore; database and model work runs on the executor.

#include "cloudflux/prediction/v1/prediction.grpc.pb.h"
#include "cloudflux/server/executor.h"
#include "prediction_core.h"

namespace cloudflux::prediction {

class PredictionGrpcService final : public cloudflux::prediction::v1::PredictionService::CallbackService {
 public:
  PredictionGrpcService(PredictionCore& core, server::BlockingExecutor& executor)
      : core_(core), executor_(executor) {}

  grpc::ServerUnaryReactor* Forecast(grpc::CallbackServerContext* context,
                                     const cloudflux::prediction::v1::ForecastRequest* request,
                                     cloudflux::prediction::v1::ObjectForecast* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return core_.Forecast(*request); });
  }
  grpc::ServerUnaryReactor* ForecastBatch(grpc::CallbackServerContext* context,
                                          const cloudflux::prediction::v1::ForecastBatchRequest* request,
                                          cloudflux::prediction::v1::ForecastBatchResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.ForecastBatch(*request); });
  }
  grpc::ServerUnaryReactor* RecommendTier(grpc::CallbackServerContext* context,
                                          const cloudflux::prediction::v1::RecommendTierRequest* request,
                                          cloudflux::prediction::v1::RecommendTierResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.RecommendTier(*request); });
  }
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const cloudflux::prediction::v1::ListModelsRequest* request,
                                       cloudflux::prediction::v1::ListModelsResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request] { return core_.ListModels(*request); });
  }
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const cloudflux::prediction::v1::GetModelRequest* request,
                                     cloudflux::prediction::v1::Model* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.GetModel(request->version()); });
  }
  grpc::ServerUnaryReactor* Train(grpc::CallbackServerContext* context,
                                  const cloudflux::prediction::v1::TrainRequest* /*request*/,
                                  cloudflux::prediction::v1::Model* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this] { return core_.Train("api", "requested through the API"); });
  }
  grpc::ServerUnaryReactor* PromoteModel(grpc::CallbackServerContext* context,
                                         const cloudflux::prediction::v1::PromoteModelRequest* request,
                                         cloudflux::prediction::v1::Model* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return core_.Promote(request->version()); });
  }
  grpc::ServerUnaryReactor* RollbackModel(grpc::CallbackServerContext* context,
                                          const cloudflux::prediction::v1::RollbackModelRequest* /*request*/,
                                          cloudflux::prediction::v1::Model* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this] { return core_.Rollback(); });
  }

 private:
  PredictionCore& core_;
  server::BlockingExecutor& executor_;
};

}  // namespace cloudflux::prediction
