#pragma once
// gRPC adapter of the Classifier; database work runs on the executor.

#include "classifier.h"
#include "cloudflux/classification/v1/classification.grpc.pb.h"
#include "cloudflux/core/status.h"
#include "cloudflux/server/executor.h"

namespace cloudflux::classification {

class ClassificationGrpcService final
    : public cloudflux::classification::v1::ClassificationService::CallbackService {
 public:
  ClassificationGrpcService(Classifier& classifier, PolicyStore& policies,
                            server::BlockingExecutor& executor)
      : classifier_(classifier), policies_(policies), executor_(executor) {}

  grpc::ServerUnaryReactor* Classify(grpc::CallbackServerContext* context,
                                     const cloudflux::classification::v1::ClassifyRequest* request,
                                     cloudflux::classification::v1::Classification* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return classifier_.Classify(*request); });
  }
  grpc::ServerUnaryReactor* ClassifyBatch(grpc::CallbackServerContext* context,
                                          const cloudflux::classification::v1::ClassifyBatchRequest* request,
                                          cloudflux::classification::v1::ClassifyBatchResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request, deadline = Deadline(context)] {
      return classifier_.ClassifyBatch(*request, deadline);
    });
  }
  grpc::ServerUnaryReactor* GetDistribution(grpc::CallbackServerContext* context,
                                            const cloudflux::classification::v1::AnalyticsRequest* request,
                                            cloudflux::classification::v1::Distribution* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return classifier_.GetDistribution(*request); });
  }
  grpc::ServerUnaryReactor* GetCostBreakdown(grpc::CallbackServerContext* context,
                                             const cloudflux::classification::v1::AnalyticsRequest* request,
                                             cloudflux::classification::v1::CostBreakdown* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request, deadline = Deadline(context)] {
      return classifier_.GetCostBreakdown(*request, deadline);
    });
  }
  grpc::ServerUnaryReactor* GetPotentialSavings(
      grpc::CallbackServerContext* context, const cloudflux::classification::v1::PotentialSavingsRequest* request,
      cloudflux::classification::v1::PotentialSavings* response) override {
    return server::FinishUnaryOn(executor_, context, response, [this, request, deadline = Deadline(context)] {
      return classifier_.GetPotentialSavings(*request, deadline);
    });
  }
  grpc::ServerUnaryReactor* CreatePolicy(grpc::CallbackServerContext* context,
                                         const cloudflux::classification::v1::Policy* request,
                                         cloudflux::classification::v1::Policy* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return policies_.Create(*request); });
  }
  grpc::ServerUnaryReactor* UpdatePolicy(grpc::CallbackServerContext* context,
                                         const cloudflux::classification::v1::Policy* request,
                                         cloudflux::classification::v1::Policy* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return policies_.Update(*request); });
  }
  grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext* context,
                                      const cloudflux::classification::v1::PolicyRef* request,
                                      cloudflux::classification::v1::Policy* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return policies_.Get(*request); });
  }
  grpc::ServerUnaryReactor* DeletePolicy(
      grpc::CallbackServerContext* context, const cloudflux::classification::v1::PolicyRef* request,
      cloudflux::classification::v1::DeletePolicyResponse* response) override {
    return server::FinishUnaryOn(
        executor_, context, response,
        [this, request]() -> absl::StatusOr<cloudflux::classification::v1::DeletePolicyResponse> {
          CF_RETURN_IF_ERROR(policies_.Delete(*request));
          return cloudflux::classification::v1::DeletePolicyResponse();
        });
  }
  grpc::ServerUnaryReactor* ListPolicies(
      grpc::CallbackServerContext* context,
      const cloudflux::classification::v1::ListPoliciesRequest* request,
      cloudflux::classification::v1::ListPoliciesResponse* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return policies_.List(*request); });
  }

 private:
  static absl::Time Deadline(grpc::CallbackServerContext* context) {
    return absl::FromChrono(context->deadline());
  }

  Classifier& classifier_;
  PolicyStore& policies_;
  server::BlockingExecutor& executor_;
};

}  // namespace cloudflux::classification
