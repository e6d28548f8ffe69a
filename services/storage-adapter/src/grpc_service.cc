#include "grpc_service.h"

#include <atomic>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/byte_buffer.h>

#include "cloudflux/authn/permissions.h"
#include "cloudflux/core/status.h"
#include "cloudflux/server/auth_hook.h"

namespace cloudflux::storage {

namespace v1 = cloudflux::storage::v1;
using server::FinishUnaryOn;

namespace {

// The caller's roles (nullopt: no authentication), for the reserved
// namespaces' check.
using Roles = std::optional<std::vector<std::string>>;
Roles RolesOf(const grpc::CallbackServerContext& context) {
  std::optional<server::Principal> who = server::PrincipalOf(context);
  if (!who.has_value()) return std::nullopt;
  return who->roles;
}
absl::Status MayChange(const Roles& roles, std::string_view ns) {
  return authn::CheckNamespaceWrite(ns, roles.has_value() ? &*roles : nullptr);
}

// One received PutObjectRequest: its header, its trailer, or its chunk in
// the pieces of gRPC's own slices.
struct PutPart {
  std::optional<v1::PutObjectHeader> header;
  std::optional<v1::PutObjectTrailer> trailer;
  std::vector<grpc::Slice> chunk;
};

// Decodes a PutObjectRequest. The usual message, a chunk and nothing else
// (its tag, its length, its bytes), is split without copying the bytes; any
// other goes through protobuf.
absl::StatusOr<PutPart> DecodePutPart(grpc::ByteBuffer& message) {
  using google::protobuf::internal::WireFormatLite;
  std::vector<grpc::Slice> slices;
  if (!message.Dump(&slices).ok()) return absl::InvalidArgumentError("malformed PutObjectRequest");
  size_t total = 0;
  for (const grpc::Slice& slice : slices) total += slice.size();
  uint8_t head[16];  // a tag and a length are at most 15 bytes
  size_t have = 0;
  for (const grpc::Slice& slice : slices) {
    size_t n = std::min(sizeof head - have, slice.size());
    std::memcpy(head + have, slice.begin(), n);
    have += n;
    if (have == sizeof head) break;
  }
  google::protobuf::io::CodedInputStream in(head, static_cast<int>(have));
  uint32_t length = 0;
  if (in.ReadTag() == WireFormatLite::MakeTag(v1::PutObjectRequest::kChunkFieldNumber,
                                              WireFormatLite::WIRETYPE_LENGTH_DELIMITED) &&
      in.ReadVarint32(&length) && static_cast<size_t>(in.CurrentPosition()) + length == total) {
    PutPart part;
    size_t skip = static_cast<size_t>(in.CurrentPosition());
    for (const grpc::Slice& slice : slices) {
      if (skip >= slice.size()) {
        skip -= slice.size();
        continue;
      }
      part.chunk.push_back(skip == 0 ? slice : slice.sub(skip, slice.size()));
      skip = 0;
    }
    return part;
  }
  grpc::ByteBuffer whole(slices.data(), slices.size());
  v1::PutObjectRequest request;
  if (!grpc::SerializationTraits<v1::PutObjectRequest>::Deserialize(&whole, &request).ok()) {
    return absl::InvalidArgumentError("malformed PutObjectRequest");
  }
  PutPart part;
  if (request.has_header()) {
    part.header = std::move(*request.mutable_header());
  } else if (request.has_trailer()) {
    part.trailer = std::move(*request.mutable_trailer());
  } else if (!request.chunk().empty()) {
    part.chunk.emplace_back(request.chunk());
  }
  return part;
}

// Receives the next chunk from the network while the previous one is being
// written: at most three chunks per call (receiving, writing, waiting).
// Registered raw, so that a chunk is hashed and written from the slices
// gRPC received it in, not from a copy.
class PutReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  PutReactor(StorageCore& core, server::BlockingExecutor& executor, grpc::ByteBuffer* response, Roles roles)
      : core_(core), executor_(executor), response_(response), roles_(std::move(roles)) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    std::unique_lock lock(mu_);
    if (done_) return;
    if (!ok) {  // the client finished sending (or went away)
      eof_ = true;
      if (!writing_) Dispatch([this] { Complete(); });
      return;
    }
    absl::StatusOr<PutPart> part = DecodePutPart(request_);
    request_.Clear();
    if (part.ok() && upload_ == nullptr && !starting_) {
      starting_ = true;
      Dispatch([this, header = std::move(part->header)] { Begin(header); });
      return;
    }
    if (!part.ok() || part->header.has_value() || trailer_.has_value()) {
      absl::Status bad = !part.ok() ? part.status()
                         : part->header.has_value()
                             ? absl::InvalidArgumentError("only the first message may be a header")
                             : absl::InvalidArgumentError("nothing may follow the trailer");
      if (writing_) {  // the writer owns the upload now; it fails the call
        failure_ = bad;
        return;
      }
      lock.unlock();
      return Fail(bad);
    }
    if (part->trailer.has_value()) {  // checked against what arrived at the end
      trailer_ = std::move(part->trailer);
      StartRead(&request_);
      return;
    }
    if (writing_) {
      // Keep it until the current write is done; no new read until then.
      pending_ = std::move(part->chunk);
      has_pending_ = true;
      return;
    }
    writing_ = true;
    StartRead(&request_);
    Dispatch([this, chunk = std::move(part->chunk)]() mutable { WriteLoop(std::move(chunk)); });
  }

  void OnCancel() override { cancelled_ = true; }

  void OnDone() override {
    upload_.reset();  // removes the bytes of an unfinished upload
    delete this;
  }

 private:
  template <class Fn>
  void Dispatch(Fn fn) {
    executor_.Run(std::move(fn));
  }

  void Begin(const std::optional<v1::PutObjectHeader>& header) {
    if (!header.has_value()) {
      return Fail(absl::InvalidArgumentError("the first message must be the header"));
    }
    if (absl::Status may = MayChange(roles_, header->namespace_()); !may.ok()) return Fail(may);
    auto upload = core_.BeginPut(*header);
    if (!upload.ok()) return Fail(upload.status());
    {
      std::lock_guard lock(mu_);
      upload_ = std::move(*upload);
    }
    StartRead(&request_);
  }

  // Writes `chunk`, then any chunk that arrived meanwhile, on this thread.
  void WriteLoop(std::vector<grpc::Slice> chunk) {
    std::vector<std::string_view> parts;
    while (true) {
      if (cancelled_) return Fail(absl::CancelledError("upload cancelled"));
      parts.clear();
      for (const grpc::Slice& slice : chunk) {
        parts.emplace_back(reinterpret_cast<const char*>(slice.begin()), slice.size());
      }
      absl::Status written = upload_->WriteParts(parts);
      if (!written.ok()) return Fail(written);
      std::unique_lock lock(mu_);
      if (!failure_.ok()) {
        absl::Status failure = failure_;
        lock.unlock();
        return Fail(failure);
      }
      if (has_pending_) {
        chunk = std::move(pending_);
        has_pending_ = false;
        StartRead(&request_);
        continue;
      }
      writing_ = false;
      if (eof_) break;
      return;
    }
    Complete();
  }

  void Complete() {
    if (cancelled_) return Fail(absl::CancelledError("upload cancelled"));
    std::unique_ptr<StorageCore::Upload> upload;
    std::optional<v1::PutObjectTrailer> trailer;
    {
      std::lock_guard lock(mu_);
      upload = std::move(upload_);
      trailer = std::move(trailer_);
    }
    if (upload == nullptr) return Fail(absl::InvalidArgumentError("the stream ended before its header"));
    auto info = upload->Finish(trailer.has_value() ? &*trailer : nullptr);
    if (!info.ok()) return Fail(info.status());
    bool own_buffer;
    grpc::SerializationTraits<v1::ObjectInfo>::Serialize(*info, response_, &own_buffer);
    FinishOnce(grpc::Status::OK);
  }

  void Fail(const absl::Status& status) {
    {
      std::lock_guard lock(mu_);
      upload_.reset();
    }
    FinishOnce(server::ToGrpcStatus(status));
  }

  void FinishOnce(const grpc::Status& status) {
    {
      std::lock_guard lock(mu_);
      if (done_) return;
      done_ = true;
    }
    Finish(status);
  }

  StorageCore& core_;
  server::BlockingExecutor& executor_;
  grpc::ByteBuffer* response_;
  const Roles roles_;
  std::mutex mu_;  // guards everything below but request_'s contents
  grpc::ByteBuffer request_;
  std::unique_ptr<StorageCore::Upload> upload_;
  bool starting_ = false, writing_ = false, eof_ = false, has_pending_ = false, done_ = false;
  std::vector<grpc::Slice> pending_;
  std::optional<v1::PutObjectTrailer> trailer_;  // the last message, once it came
  absl::Status failure_;  // set while a write is running, handled after it
  std::atomic<bool> cancelled_{false};
};

// The wire form of GetObjectResponse{chunk}: the field's tag and length in a
// small slice, then the chunk's own buffer, which gRPC sends as it is and
// lets go of (dropping its owner) once written.
grpc::ByteBuffer FrameChunk(const Chunk& chunk) {
  using google::protobuf::internal::WireFormatLite;
  using google::protobuf::io::CodedOutputStream;
  uint8_t header[16];
  uint8_t* end = CodedOutputStream::WriteTagToArray(
      WireFormatLite::MakeTag(v1::GetObjectResponse::kChunkFieldNumber, WireFormatLite::WIRETYPE_LENGTH_DELIMITED),
      header);
  end = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(chunk.size), end);
  auto* owner = new std::shared_ptr<const void>(chunk.owner);
  grpc::Slice slices[2] = {
      grpc::Slice(header, static_cast<size_t>(end - header)),
      grpc::Slice(const_cast<char*>(chunk.data), chunk.size,
                  [](void* held) { delete static_cast<std::shared_ptr<const void>*>(held); }, owner)};
  return grpc::ByteBuffer(slices, 2);
}

// Streams an object with one chunk read ahead: while gRPC sends a chunk, the
// executor reads the next. At most two chunks per call are in memory. The
// method is registered raw so that chunks go out in the reader's own buffers
// (FrameChunk): a local object's bytes are not copied in user space on the
// way from the disk to the socket.
class GetReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GetReactor(StorageCore& core, server::BlockingExecutor& executor, ReadRecorder& reads,
             const grpc::ByteBuffer* request_bytes)
      : executor_(executor), reads_(reads) {
    v1::GetObjectRequest request;
    grpc::ByteBuffer bytes(*request_bytes);
    if (!grpc::SerializationTraits<v1::GetObjectRequest>::Deserialize(&bytes, &request).ok()) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "malformed GetObjectRequest"));
      return;
    }
    executor_.Run([this, &core, request = std::move(request)] {
      auto opened = core.OpenGet(request);
      if (!opened.ok()) return Finish(server::ToGrpcStatus(opened.status()));
      info_ = opened->first;
      reader_ = std::move(opened->second);
      v1::GetObjectResponse first;
      *first.mutable_info() = info_;
      bool own_buffer;
      grpc::SerializationTraits<v1::GetObjectResponse>::Serialize(first, &sending_, &own_buffer);
      {
        std::lock_guard lock(mu_);
        writing_ = true;
        reading_ = true;
      }
      StartWrite(&sending_);
      ReadNext();
    });
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mu_);
    writing_ = false;
    if (ok) {
      sent_ += in_flight_;
    } else {
      abandoned_ = true;
    }
    in_flight_ = 0;
    Step step = Advance();
    lock.unlock();
    Act(step);
  }

  void OnDone() override {
    // A read is an access whether or not the client took every byte.
    if (reader_ != nullptr) reads_.Record(info_, sent_);
    delete this;
  }

 private:
  struct Step {
    bool write = false, read = false, finish = false;
    grpc::Status status;
  };

  // On the executor, never two at once for a call.
  void ReadNext() {
    absl::StatusOr<Chunk> chunk = reader_->ReadChunk(kReadChunkBytes);
    std::unique_lock lock(mu_);
    reading_ = false;
    if (!chunk.ok()) {
      ended_ = true;
      end_status_ = chunk.status();
    } else if (chunk->size == 0) {
      ended_ = true;
    } else {
      ready_ = std::move(*chunk);
    }
    Step step = Advance();
    lock.unlock();
    Act(step);
  }

  // What to do next; mu_ held. The call finishes only once neither a write
  // nor a read is in flight (OnDone deletes this reactor).
  Step Advance() {
    Step step;
    if (finished_) return step;
    if (abandoned_) {
      if (!reading_ && !writing_) {
        finished_ = step.finish = true;
        step.status = grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      }
      return step;
    }
    if (!writing_ && ready_.has_value()) {
      sending_ = FrameChunk(*ready_);
      in_flight_ = static_cast<int64_t>(ready_->size);
      ready_.reset();
      writing_ = step.write = true;
    }
    if (!reading_ && !ready_.has_value() && !ended_) reading_ = step.read = true;
    if (!writing_ && !reading_ && !ready_.has_value() && ended_) {
      finished_ = step.finish = true;
      step.status = server::ToGrpcStatus(end_status_);
    }
    return step;
  }

  // Runs a step without mu_; touches nothing of this reactor after Finish.
  void Act(const Step& step) {
    if (step.write) StartWrite(&sending_);
    if (step.read) executor_.Run([this] { ReadNext(); });
    if (step.finish) Finish(step.status);
  }

  server::BlockingExecutor& executor_;
  ReadRecorder& reads_;
  v1::ObjectInfo info_;
  std::unique_ptr<ObjectReader> reader_;
  grpc::ByteBuffer sending_;  // the message gRPC is writing
  std::mutex mu_;             // guards everything below
  std::optional<Chunk> ready_;  // read ahead, not yet handed to gRPC
  bool writing_ = false, reading_ = false, ended_ = false, abandoned_ = false, finished_ = false;
  absl::Status end_status_;
  int64_t in_flight_ = 0, sent_ = 0;
};

// Runs the copy on the executor and streams progress: a progress message is
// written only when the previous one has gone (later ones replace it), and
// the last message carries the result.
class CopyReactor final : public grpc::ServerWriteReactor<v1::CopyObjectProgress> {
 public:
  CopyReactor(StorageCore& core, server::BlockingExecutor& executor,
              const v1::CopyObjectRequest* request, Roles roles) {
    executor.Run([this, &core, request, roles = std::move(roles)] {
      absl::Status may = MayChange(roles, request->namespace_().empty() ? request->source_namespace()
                                                                         : request->namespace_());
      if (!may.ok()) return Finish(server::ToGrpcStatus(may));
      auto copied = core.Copy(*request, [this](const StorageCore::CopyState& state) {
        {
          std::lock_guard lock(mu_);
          if (cancelled_) return false;
          server_side_ = state.server_side;
          resumed_ = state.resumed;
          if (writing_) return true;  // the next report replaces this one
          writing_ = true;
          progress_.set_bytes_copied(state.copied);
          progress_.set_total_bytes(state.total);
          progress_.set_server_side(state.server_side);
          progress_.set_resumed_bytes(state.resumed);
        }
        StartWrite(&progress_);
        return true;
      }, &unchanged_);
      std::unique_lock lock(mu_);
      idle_.wait(lock, [this] { return !writing_; });
      if (!copied.ok()) {
        lock.unlock();
        return Finish(server::ToGrpcStatus(copied.status()));
      }
      progress_.set_bytes_copied(copied->size());
      progress_.set_total_bytes(copied->size());
      progress_.set_server_side(server_side_);
      progress_.set_resumed_bytes(resumed_);
      progress_.set_unchanged(unchanged_);
      if (unchanged_) progress_.set_bytes_copied(0);
      *progress_.mutable_object() = std::move(*copied);
      writing_ = true;
      lock.unlock();
      StartWriteAndFinish(&progress_, grpc::WriteOptions(), grpc::Status::OK);
    });
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;
    }
    idle_.notify_all();
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
  }

  void OnDone() override { delete this; }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  v1::CopyObjectProgress progress_;
  bool writing_ = false, cancelled_ = false, server_side_ = false, unchanged_ = false;
  int64_t resumed_ = 0;
};

}  // namespace

grpc::ServerReadReactor<grpc::ByteBuffer>* StorageGrpcService::PutObject(
    grpc::CallbackServerContext* context, grpc::ByteBuffer* response) {
  return new PutReactor(core_, executor_, response, RolesOf(*context));
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* StorageGrpcService::GetObject(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return new GetReactor(core_, executor_, reads_, request);
}

grpc::ServerWriteReactor<v1::CopyObjectProgress>* StorageGrpcService::CopyObject(
    grpc::CallbackServerContext* context, const v1::CopyObjectRequest* request) {
  return new CopyReactor(core_, executor_, request, RolesOf(*context));
}

grpc::ServerUnaryReactor* StorageGrpcService::SetTier(grpc::CallbackServerContext* context,
                                                      const v1::SetTierRequest* request,
                                                      v1::ObjectInfo* response) {
  return FinishUnaryOn(executor_, context, response,
                       [=, this, roles = RolesOf(*context)]() -> absl::StatusOr<v1::ObjectInfo> {
                         CF_RETURN_IF_ERROR(MayChange(roles, request->namespace_()));
                         return core_.SetTier(*request);
                       });
}

grpc::ServerUnaryReactor* StorageGrpcService::RestoreObject(grpc::CallbackServerContext* context,
                                                            const v1::RestoreObjectRequest* request,
                                                            v1::RestoreObjectResponse* response) {
  return FinishUnaryOn(executor_, context, response,
                       [=, this, roles = RolesOf(*context)]() -> absl::StatusOr<v1::RestoreObjectResponse> {
                         CF_RETURN_IF_ERROR(MayChange(roles, request->namespace_()));
                         return core_.Restore(*request);
                       });
}

grpc::ServerUnaryReactor* StorageGrpcService::HeadObject(grpc::CallbackServerContext* context,
                                                         const v1::HeadObjectRequest* request,
                                                         v1::ObjectInfo* response) {
  return FinishUnaryOn(executor_, context, response,
                       [=, this] { return core_.HeadWithReadState(request->namespace_(), request->key()); });
}

grpc::ServerUnaryReactor* StorageGrpcService::DeleteObject(grpc::CallbackServerContext* context,
                                                           const v1::DeleteObjectRequest* request,
                                                           v1::DeleteObjectResponse* response) {
  return FinishUnaryOn(executor_, context, response,
                       [=, this, roles = RolesOf(*context)] {
                         if (absl::Status may = MayChange(roles, request->namespace_()); !may.ok()) return may;
                         if (!request->replica_backend().empty()) {
                           if (request->version() != 0) {
                             return absl::InvalidArgumentError("version does not apply to a replica's removal");
                           }
                           return core_.DeleteReplica(request->namespace_(), request->key(),
                                                      request->replica_backend());
                         }
                         return core_.Delete(request->namespace_(), request->key(), request->version());
                       });
}

grpc::ServerUnaryReactor* StorageGrpcService::ListObjects(grpc::CallbackServerContext* context,
                                                          const v1::ListObjectsRequest* request,
                                                          v1::ListObjectsResponse* response) {
  return FinishUnaryOn(executor_, context, response, [=, this] { return core_.List(*request); });
}

grpc::ServerUnaryReactor* StorageGrpcService::VerifyObject(grpc::CallbackServerContext* context,
                                                           const v1::VerifyObjectRequest* request,
                                                           v1::VerifyObjectResponse* response) {
  // A whole object is read: a caller that has gone (cancelled, past its
  // deadline) stops the read.
  return FinishUnaryOn(executor_, context, response, [=, this] {
    return core_.Verify(*request, [context] { return !context->IsCancelled(); });
  });
}

grpc::ServerUnaryReactor* StorageGrpcService::ListBackends(grpc::CallbackServerContext* context,
                                                           const v1::ListBackendsRequest* request,
                                                           v1::ListBackendsResponse* response) {
  return FinishUnaryOn(executor_, context, response, [=, this] {
    return absl::StatusOr<v1::ListBackendsResponse>(core_.Backends());
  });
}

}  // namespace cloudflux::storage
