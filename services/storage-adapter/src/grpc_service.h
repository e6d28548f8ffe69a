#pragma once
// gRPC adapter of StorageCore. Streams hold at most a few chunks per call
// (an upload receives the next chunk while writing one; a download reads the
// next chunk while sending one), so memory per call is bounded whatever the
// object size. Blocking work (disk, database) runs on the executor, not on
// gRPC's threads. GetObject and PutObject are registered raw
// (grpc::ByteBuffer) so that chunks are sent from the readers' own buffers
// and written from the slices gRPC received them in; their messages on the
// wire are those of the proto.

#include "cloudflux/server/executor.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "read_recorder.h"
#include "storage_core.h"

namespace cloudflux::storage {

inline constexpr size_t kReadChunkBytes = 1 << 20;

class StorageGrpcService final
    : public cloudflux::storage::v1::StorageService::WithRawCallbackMethod_PutObject<
          cloudflux::storage::v1::StorageService::WithRawCallbackMethod_GetObject<
              cloudflux::storage::v1::StorageService::CallbackService>> {
 public:
  // Every GetObject that opened its object is counted in `reads`.
  StorageGrpcService(StorageCore& core, server::BlockingExecutor& executor, ReadRecorder& reads)
      : core_(core), executor_(executor), reads_(reads) {}

  grpc::ServerReadReactor<grpc::ByteBuffer>* PutObject(grpc::CallbackServerContext* context,
                                                       grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* GetObject(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* HeadObject(grpc::CallbackServerContext* context,
                                       const cloudflux::storage::v1::HeadObjectRequest* request,
                                       cloudflux::storage::v1::ObjectInfo* response) override;
  grpc::ServerUnaryReactor* DeleteObject(grpc::CallbackServerContext* context,
                                         const cloudflux::storage::v1::DeleteObjectRequest* request,
                                         cloudflux::storage::v1::DeleteObjectResponse* response) override;
  grpc::ServerUnaryReactor* ListObjects(grpc::CallbackServerContext* context,
                                        const cloudflux::storage::v1::ListObjectsRequest* request,
                                        cloudflux::storage::v1::ListObjectsResponse* response) override;
  grpc::ServerWriteReactor<cloudflux::storage::v1::CopyObjectProgress>* CopyObject(
      grpc::CallbackServerContext* context,
      const cloudflux::storage::v1::CopyObjectRequest* request) override;
  grpc::ServerUnaryReactor* SetTier(grpc::CallbackServerContext* context,
                                    const cloudflux::storage::v1::SetTierRequest* request,
                                    cloudflux::storage::v1::ObjectInfo* response) override;
  grpc::ServerUnaryReactor* RestoreObject(grpc::CallbackServerContext* context,
                                          const cloudflux::storage::v1::RestoreObjectRequest* request,
                                          cloudflux::storage::v1::RestoreObjectResponse* response) override;
  grpc::ServerUnaryReactor* VerifyObject(grpc::CallbackServerContext* context,
                                         const cloudflux::storage::v1::VerifyObjectRequest* request,
                                         cloudflux::storage::v1::VerifyObjectResponse* response) override;
  grpc::ServerUnaryReactor* ListBackends(grpc::CallbackServerContext* context,
                                         const cloudflux::storage::v1::ListBackendsRequest* request,
                                         cloudflux::storage::v1::ListBackendsResponse* response) override;

 private:
  StorageCore& core_;
  server::BlockingExecutor& executor_;
  ReadRecorder& reads_;
};

}  // namespace cloudflux::storage
