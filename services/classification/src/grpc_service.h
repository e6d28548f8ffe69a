#pragma once
// gRPC adapter of the Classifier; database work runs on the executor.

#include "classifier.h"
#include "cloudflux/classification/v1/classification.grpc.pb.h"
#include "cloudflux/server/executor.h"

namespace cloudflux::classification {

class ClassificationGrpcService final
    : public cloudflux::classification::v1::ClassificationService::CallbackService {
 public:
  ClassificationGrpcService(Classifier& classifier, server::BlockingExecutor& executor)
      : classifier_(classifier), executor_(executor) {}

  grpc::ServerUnaryReactor* Classify(grpc::CallbackServerContext* context,
                                     const cloudflux::classification::v1::ClassifyRequest* request,
                                     cloudflux::classification::v1::Classification* response) override {
    return server::FinishUnaryOn(executor_, context, response,
                                 [this, request] { return classifier_.Classify(*request); });
  }

 private:
  Classifier& classifier_;
  server::BlockingExecutor& executor_;
};

}  // namespace cloudflux::classification
