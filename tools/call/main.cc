// cloudflux-call HOST:PORT SERVICE/METHOD [JSON] [flags]
// Calls any method of CloudFlux's APIs (and health) with requests written as
// JSON (protobuf's JSON mapping), and prints each response as JSON. Without
// JSON, requests are read from standard input: one or more JSON objects one
// after another, which is how a client stream (PutObject: a header, then
// chunks) is sent. Flags (each also from CLOUDFLUX_<FLAG>): --token (sent as
// "authorization: Bearer"), --timeout, --tls_ca_file, --tls_cert_file,
// --tls_key_file, --tls_server_name. Exit 0 on OK; otherwise the status is
// printed to stderr and the exit code is 1 (2 for bad usage).

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include <cctype>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cloudflux/core/config.h"
#include "cloudflux/server/channel.h"
#include "grpc/health/v1/health.pb.h"

ABSL_FLAG(std::string, token, "", "Bearer token sent with the call (CLOUDFLUX_TOKEN).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30), "Deadline of the call.");
ABSL_FLAG(std::string, tls_ca_file, "", "Call over TLS, verifying the server against this CA (PEM).");
ABSL_FLAG(std::string, tls_cert_file, "", "Client certificate for mutual TLS (PEM).");
ABSL_FLAG(std::string, tls_key_file, "", "Its key (PEM).");
ABSL_FLAG(std::string, tls_server_name, "", "Name the server's certificate must carry, if not the host's.");

namespace {

namespace pb = google::protobuf;

// Splits text holding JSON objects one after another into the objects.
absl::StatusOr<std::vector<std::string>> SplitObjects(const std::string& text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (true) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i == text.size()) return out;
    if (text[i] != '{') return absl::InvalidArgumentError(absl::StrCat("a JSON object expected at byte ", i));
    size_t start = i;
    int depth = 0;
    bool in_string = false;
    for (; i < text.size(); ++i) {
      char c = text[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{') {
        ++depth;
      } else if (c == '}' && --depth == 0) {
        ++i;
        break;
      }
    }
    if (depth != 0) return absl::InvalidArgumentError("an unterminated JSON object");
    out.push_back(text.substr(start, i - start));
  }
}

const pb::MethodDescriptor* FindMethod(std::string name) {
  // "pkg.Service/Method" or "pkg.Service.Method".
  if (size_t slash = name.rfind('/'); slash != std::string::npos) name[slash] = '.';
  // The messages of health are linked in; make sure their file is loaded.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  return pb::DescriptorPool::generated_pool()->FindMethodByName(name);
}

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args = cloudflux::core::ParseFlags(
      argc, argv, "cloudflux-call HOST:PORT SERVICE/METHOD [JSON]: calls a CloudFlux API method with JSON");
  if (args.size() < 2 || args.size() > 3) {
    std::cerr << "usage: cloudflux-call HOST:PORT SERVICE/METHOD [JSON] (JSON objects on stdin without it)\n";
    return 2;
  }
  const std::string target = args[0];
  const pb::MethodDescriptor* method = FindMethod(args[1]);
  if (method == nullptr) {
    std::cerr << "no method '" << args[1] << "' (e.g. cloudflux.storage.v1.StorageService/HeadObject)\n";
    return 2;
  }
  std::string input;
  if (args.size() == 3) {
    input = args[2];
  } else {
    input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  auto objects = SplitObjects(input);
  if (!objects.ok()) {
    std::cerr << "bad request JSON: " << objects.status().message() << "\n";
    return 2;
  }
  if (objects->empty()) objects->push_back("{}");
  if (!method->client_streaming() && objects->size() != 1) {
    std::cerr << method->full_name() << " takes one request, not " << objects->size() << "\n";
    return 2;
  }
  const pb::Message* prototype = pb::MessageFactory::generated_factory()->GetPrototype(method->input_type());
  std::vector<std::string> requests;
  for (const auto& json : *objects) {
    std::unique_ptr<pb::Message> request(prototype->New());
    if (auto parsed = pb::util::JsonStringToMessage(json, request.get()); !parsed.ok()) {
      std::cerr << "bad " << method->input_type()->full_name() << ": " << parsed.ToString() << "\n";
      return 2;
    }
    requests.push_back(request->SerializeAsString());
  }

  cloudflux::server::ChannelOptions options;
  options.max_attempts = 1;
  options.max_receive_message_bytes = 64 << 20;
  options.tls.ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (auto valid = cloudflux::server::ValidateClientTls(options.tls); !valid.ok()) {
    std::cerr << valid.message() << "\n";
    return 2;
  }
  grpc::GenericStub stub(cloudflux::server::MakeChannel(target, options));
  auto ctx = cloudflux::server::MakeClientContext(absl::GetFlag(FLAGS_timeout));
  if (std::string token = absl::GetFlag(FLAGS_token); !token.empty()) {
    ctx->AddMetadata("authorization", "Bearer " + token);
  }
  // One generic stream serves every kind of method: the requests written,
  // the writing side closed, the responses read to the end.
  grpc::CompletionQueue cq;
  auto wait = [&cq] {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  const std::string path = absl::StrCat("/", method->service()->full_name(), "/", method->name());
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(ctx.get(), path, &cq);
  call->StartCall(nullptr);
  bool open = wait();
  for (const auto& r : requests) {
    if (!open) break;
    call->Write(ToBuffer(r), nullptr);
    open = wait();
  }
  if (open) {
    call->WritesDone(nullptr);
    (void)wait();
  }
  const pb::Message* response_type = pb::MessageFactory::generated_factory()->GetPrototype(method->output_type());
  pb::util::JsonPrintOptions print;
  print.add_whitespace = true;
  bool printed_ok = true;
  while (true) {
    grpc::ByteBuffer buffer;
    call->Read(&buffer, nullptr);
    if (!wait()) break;
    std::unique_ptr<pb::Message> response(response_type->New());
    std::string json;
    if (!response->ParseFromString(FromBuffer(buffer)) || !pb::util::MessageToJsonString(*response, &json, print).ok()) {
      std::cerr << "an undecodable " << method->output_type()->full_name() << "\n";
      printed_ok = false;
      continue;
    }
    std::cout << json;
  }
  grpc::Status status;
  call->Finish(&status, nullptr);
  (void)wait();
  if (!status.ok()) {
    std::cerr << "ERROR " << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())) << ": "
              << status.error_message() << "\n";
    return 1;
  }
  return printed_ok ? 0 : 1;
}
