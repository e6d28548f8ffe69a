#include "grpc_service.h"

#include <atomic>

namespace cloudflux::storage {

namespace v1 = cloudflux::storage::v1;
using server::FinishUnaryOn;

namespace {

class PutReactor final : public grpc::ServerReadReactor<v1::PutObjectRequest> {
 public:
  PutReactor(StorageCore& core, server::BlockingExecutor& executor, v1::ObjectInfo* response)
      : core_(core), executor_(executor), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    executor_.Run([this, ok] { Handle(ok); });
  }

  void OnCancel() override { cancelled_ = true; }

  void OnDone() override {
    upload_.reset();  // removes the bytes of an unfinished upload
    delete this;
  }

 private:
  void Handle(bool ok) {
    if (cancelled_) return Fail(absl::CancelledError("upload cancelled"));
    if (!ok) {  // the client finished sending
      if (upload_ == nullptr) {
        return Fail(absl::InvalidArgumentError("the stream ended before its header"));
      }
      auto info = upload_->Finish();
      upload_.reset();
      if (!info.ok()) return Fail(info.status());
      *response_ = std::move(*info);
      return Finish(grpc::Status::OK);
    }
    if (upload_ == nullptr) {
      if (!request_.has_header()) {
        return Fail(absl::InvalidArgumentError("the first message must be the header"));
      }
      auto upload = core_.BeginPut(request_.header());
      if (!upload.ok()) return Fail(upload.status());
      upload_ = std::move(*upload);
    } else if (request_.has_header()) {
      return Fail(absl::InvalidArgumentError("only the first message may be a header"));
    } else {
      absl::Status written = upload_->Write(request_.chunk());
      if (!written.ok()) return Fail(written);
    }
    StartRead(&request_);
  }

  void Fail(const absl::Status& status) {
    upload_.reset();
    Finish(server::ToGrpcStatus(status));
  }

  StorageCore& core_;
  server::BlockingExecutor& executor_;
  v1::ObjectInfo* response_;
  v1::PutObjectRequest request_;
  std::unique_ptr<StorageCore::Upload> upload_;
  std::atomic<bool> cancelled_{false};
};

class GetReactor final : public grpc::ServerWriteReactor<v1::GetObjectResponse> {
 public:
  GetReactor(StorageCore& core, server::BlockingExecutor& executor, const v1::GetObjectRequest* request)
      : executor_(executor) {
    executor_.Run([this, &core, request] {
      auto opened = core.OpenGet(*request);
      if (!opened.ok()) return Finish(server::ToGrpcStatus(opened.status()));
      *response_.mutable_info() = std::move(opened->first);
      reader_ = std::move(opened->second);
      StartWrite(&response_);
    });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    executor_.Run([this] {
      absl::Status read = reader_->Read(kReadChunkBytes, response_.mutable_chunk());
      if (!read.ok()) return Finish(server::ToGrpcStatus(read));
      if (response_.chunk().empty()) return Finish(grpc::Status::OK);
      StartWrite(&response_);
    });
  }

  void OnDone() override { delete this; }

 private:
  server::BlockingExecutor& executor_;
  v1::GetObjectResponse response_;
  std::unique_ptr<ObjectReader> reader_;
};

}  // namespace

grpc::ServerReadReactor<v1::PutObjectRequest>* StorageGrpcService::PutObject(
    grpc::CallbackServerContext* context, v1::ObjectInfo* response) {
  return new PutReactor(core_, executor_, response);
}

grpc::ServerWriteReactor<v1::GetObjectResponse>* StorageGrpcService::GetObject(
    grpc::CallbackServerContext* context, const v1::GetObjectRequest* request) {
  return new GetReactor(core_, executor_, request);
}

grpc::ServerUnaryReactor* StorageGrpcService::HeadObject(grpc::CallbackServerContext* context,
                                                         const v1::HeadObjectRequest* request,
                                                         v1::ObjectInfo* response) {
  return FinishUnaryOn(executor_, context, response,
                       [=, this] { return core_.Head(request->namespace_(), request->key()); });
}

grpc::ServerUnaryReactor* StorageGrpcService::DeleteObject(grpc::CallbackServerContext* context,
                                                           const v1::DeleteObjectRequest* request,
                                                           v1::DeleteObjectResponse* response) {
  return FinishUnaryOn(executor_, context, response,
                       [=, this] { return core_.Delete(request->namespace_(), request->key()); });
}

grpc::ServerUnaryReactor* StorageGrpcService::ListObjects(grpc::CallbackServerContext* context,
                                                          const v1::ListObjectsRequest* request,
                                                          v1::ListObjectsResponse* response) {
  return FinishUnaryOn(executor_, context, response, [=, this] { return core_.List(*request); });
}

grpc::ServerUnaryReactor* StorageGrpcService::ListBackends(grpc::CallbackServerContext* context,
                                                           const v1::ListBackendsRequest* request,
                                                           v1::ListBackendsResponse* response) {
  return FinishUnaryOn(executor_, context, response, [=, this] {
    return absl::StatusOr<v1::ListBackendsResponse>(core_.Backends());
  });
}

}  // namespace cloudflux::storage
