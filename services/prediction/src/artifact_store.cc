#include "artifact_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/status.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/server/grpc_status.h"
#include "history_store.h"

namespace cloudflux::prediction {

namespace sv1 = cloudflux::storage::v1;

ArtifactStore::ArtifactStore(std::shared_ptr<grpc::Channel> storage,
                             std::function<absl::Status(grpc::ClientContext&)> authorize, absl::Duration timeout)
    : stub_(sv1::StorageService::NewStub(std::move(storage))), authorize_(std::move(authorize)), timeout_(timeout) {}

absl::StatusOr<sv1::ObjectInfo> ArtifactStore::Put(const std::string& key, const std::string& bytes) {
  auto ctx = server::MakeClientContext(timeout_);
  CF_RETURN_IF_ERROR(authorize_(*ctx));
  sv1::ObjectInfo info;
  auto writer = stub_->PutObject(ctx.get(), &info);
  sv1::PutObjectRequest header;
  header.mutable_header()->set_namespace_(kModelNamespace);
  header.mutable_header()->set_key(key);
  header.mutable_header()->set_content_type("application/octet-stream");
  header.mutable_header()->set_size(static_cast<int64_t>(bytes.size()));
  bool sent = writer->Write(header);
  constexpr size_t kChunk = 1 << 20;
  for (size_t at = 0; sent && at < bytes.size(); at += kChunk) {
    sv1::PutObjectRequest chunk;
    chunk.set_chunk(bytes.substr(at, std::min(kChunk, bytes.size() - at)));
    sent = writer->Write(chunk);
  }
  if (sent) {
    sv1::PutObjectRequest trailer;
    trailer.mutable_trailer()->set_size(static_cast<int64_t>(bytes.size()));
    trailer.mutable_trailer()->set_sha256(core::Sha256Hex(bytes));
    writer->Write(trailer);
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return core::Annotate(server::FromGrpcStatus(s), absl::StrCat("storing model artifact ", key));
  return info;
}

absl::StatusOr<std::string> ArtifactStore::Get(const std::string& key, const std::string& sha256) {
  auto ctx = server::MakeClientContext(timeout_);
  CF_RETURN_IF_ERROR(authorize_(*ctx));
  sv1::GetObjectRequest request;
  request.set_namespace_(kModelNamespace);
  request.set_key(key);
  auto reader = stub_->GetObject(ctx.get(), request);
  std::string bytes;
  sv1::GetObjectResponse part;
  while (reader->Read(&part)) {
    if (part.has_chunk()) bytes += part.chunk();
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return core::Annotate(server::FromGrpcStatus(s), absl::StrCat("reading model artifact ", key));
  if (core::Sha256Hex(bytes) != sha256) {
    return absl::DataLossError(absl::StrCat("model artifact ", key, " does not hash to the registry's SHA-256"));
  }
  return bytes;
}

}  // namespace cloudflux::prediction
