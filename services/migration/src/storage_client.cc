#include "storage_client.h"

#include "absl/strings/str_cat.h"
#include "cloudflux/core/status.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/server/grpc_status.h"

namespace cloudflux::migration {

namespace sv1 = cloudflux::storage::v1;

StorageClient::StorageClient(std::shared_ptr<grpc::Channel> channel, Authorize authorize)
    : stub_(sv1::StorageService::NewStub(std::move(channel))), authorize_(std::move(authorize)) {}

absl::StatusOr<sv1::ListObjectsResponse> StorageClient::List(const std::string& ns, const std::string& prefix,
                                                             const std::string& token, int page_size) {
  auto ctx = server::MakeClientContext(absl::Seconds(30));
  CF_RETURN_IF_ERROR(authorize_(*ctx));
  sv1::ListObjectsRequest request;
  request.set_namespace_(ns);
  request.set_prefix(prefix);
  request.mutable_page()->set_page_size(page_size);
  request.mutable_page()->set_page_token(token);
  sv1::ListObjectsResponse response;
  CF_RETURN_IF_ERROR(server::FromGrpcStatus(stub_->ListObjects(ctx.get(), request, &response)));
  return response;
}

absl::StatusOr<sv1::ObjectInfo> StorageClient::Head(const std::string& ns, const std::string& key) {
  auto ctx = server::MakeClientContext(absl::Seconds(30));
  CF_RETURN_IF_ERROR(authorize_(*ctx));
  sv1::HeadObjectRequest request;
  request.set_namespace_(ns);
  request.set_key(key);
  sv1::ObjectInfo info;
  CF_RETURN_IF_ERROR(server::FromGrpcStatus(stub_->HeadObject(ctx.get(), request, &info)));
  return info;
}

absl::StatusOr<sv1::VerifyObjectResponse> StorageClient::Verify(const std::string& ns, const std::string& key,
                                                               int64_t version, absl::Duration timeout) {
  auto ctx = server::MakeClientContext(timeout);
  CF_RETURN_IF_ERROR(authorize_(*ctx));
  sv1::VerifyObjectRequest request;
  request.set_namespace_(ns);
  request.set_key(key);
  request.set_version(version);
  sv1::VerifyObjectResponse response;
  CF_RETURN_IF_ERROR(server::FromGrpcStatus(stub_->VerifyObject(ctx.get(), request, &response)));
  return response;
}

absl::StatusOr<std::vector<sv1::Backend>> StorageClient::Backends() {
  auto ctx = server::MakeClientContext(absl::Seconds(10));
  CF_RETURN_IF_ERROR(authorize_(*ctx));
  sv1::ListBackendsResponse response;
  CF_RETURN_IF_ERROR(server::FromGrpcStatus(stub_->ListBackends(ctx.get(), {}, &response)));
  return std::vector<sv1::Backend>(response.backends().begin(), response.backends().end());
}

absl::Status StorageClient::Delete(const std::string& ns, const std::string& key, int64_t version) {
  sv1::DeleteObjectRequest request;
  request.set_namespace_(ns);
  request.set_key(key);
  request.set_version(version);
  return DeleteObject(request);
}

absl::Status StorageClient::DeleteReplica(const std::string& ns, const std::string& key,
                                         const std::string& backend) {
  sv1::DeleteObjectRequest request;
  request.set_namespace_(ns);
  request.set_key(key);
  request.set_replica_backend(backend);
  return DeleteObject(request);
}

absl::Status StorageClient::DeleteObject(const sv1::DeleteObjectRequest& request) {
  auto ctx = server::MakeClientContext(absl::Seconds(30));
  CF_RETURN_IF_ERROR(authorize_(*ctx));
  sv1::DeleteObjectResponse response;
  return server::FromGrpcStatus(stub_->DeleteObject(ctx.get(), request, &response));
}

absl::StatusOr<sv1::ObjectInfo> StorageClient::Replicate(const std::string& ns, const std::string& key,
                                                         const std::string& backend,
                                                         cloudflux::common::v1::StorageTier tier,
                                                         absl::Duration timeout, bool* unchanged) {
  sv1::CopyObjectRequest request;
  request.set_source_namespace(ns);
  request.set_source_key(key);
  request.set_backend(backend);
  request.set_tier(tier);
  request.set_replica(true);
  sv1::CopyObjectProgress last;
  CF_ASSIGN_OR_RETURN(sv1::ObjectInfo info, CopyObject(request, timeout, nullptr, &last));
  if (unchanged != nullptr) *unchanged = last.unchanged();
  return info;
}

absl::StatusOr<sv1::ObjectInfo> StorageClient::CopyObject(const sv1::CopyObjectRequest& request,
                                                          absl::Duration timeout,
                                                          const std::function<void(int64_t)>& progress,
                                                          sv1::CopyObjectProgress* last) {
  sv1::CopyObjectProgress ignored;
  if (last == nullptr) last = &ignored;
  auto ctx = server::MakeClientContext(timeout);
  CF_RETURN_IF_ERROR(authorize_(*ctx));
  auto reader = stub_->CopyObject(ctx.get(), request);
  sv1::CopyObjectProgress p;
  bool finished = false;
  while (reader->Read(&p)) {
    if (progress) progress(p.bytes_copied());
    if (p.has_object()) {
      *last = p;
      finished = true;
    }
  }
  CF_RETURN_IF_ERROR(server::FromGrpcStatus(reader->Finish()));
  if (!finished) {
    return absl::UnavailableError(
        absl::StrCat("the copy of ", request.source_namespace(), "/", request.source_key(), " ended without a result"));
  }
  return last->object();
}

absl::StatusOr<sv1::ObjectInfo> StorageClient::Copy(const std::string& ns, const std::string& key,
                                                    int64_t version, const std::string& to_namespace,
                                                    const std::string& backend,
                                                    cloudflux::common::v1::StorageTier tier, absl::Duration timeout,
                                                    const std::function<void(int64_t)>& progress, int64_t* resumed,
                                                    int64_t max_bytes_per_second, bool verify,
                                                    const std::string& pace_group) {
  sv1::CopyObjectRequest request;
  request.set_verify(verify);
  request.set_pace_group(pace_group);
  request.set_source_namespace(ns);
  request.set_source_key(key);
  request.set_source_version(version);
  request.set_namespace_(to_namespace);
  request.set_backend(backend);
  request.set_tier(tier);
  request.set_max_bytes_per_second(max_bytes_per_second);
  sv1::CopyObjectProgress last;
  CF_ASSIGN_OR_RETURN(sv1::ObjectInfo info, CopyObject(request, timeout, progress, &last));
  if (resumed != nullptr) *resumed = last.resumed_bytes();
  return info;
}

}  // namespace cloudflux::migration
