// Hostile input against every RPC of every service binary, as an attacker
// or a broken client would send it: bodies that are no protobuf, strings
// with NUL and control characters or bytes that are no UTF-8, oversize
// fields, extreme numbers and unknown enum values, absurd paging, huge
// repeated fields; and forged or altered tokens. Every call must get a clear
// status (never UNKNOWN or INTERNAL, never a dropped connection) and every
// service must stay up and SERVING.
//
// Table-driven: kServices lists each binary with the gRPC services it
// serves; the methods and their request types come from the descriptors, so
// a new RPC is covered as soon as it is in a .proto, and a new service joins
// with one line.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <gtest/gtest.h>
#include <openssl/hmac.h>
#include <signal.h>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/reflection.h>

#include <map>
#include <random>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cloudflux/auth/v1/auth.grpc.pb.h"
#include "cloudflux/authn/jwt.h"
#include "cloudflux/classification/v1/classification.grpc.pb.h"
#include "cloudflux/diagnostics/v1/diagnostics.grpc.pb.h"
#include "cloudflux/migration/v1/migration.grpc.pb.h"
#include "cloudflux/prediction/v1/prediction.grpc.pb.h"
#include "cloudflux/storage/v1/storage.grpc.pb.h"
#include "service_process.h"

namespace cloudflux {
namespace {

namespace pb = google::protobuf;

struct ServiceUnderTest {
  std::string binary;
  std::vector<std::string> grpc_services;
};

// Every binary serves Diagnostics besides its own API.
const std::vector<ServiceUnderTest> kServices = {
    {"auth", {"cloudflux.auth.v1.AuthService", "cloudflux.diagnostics.v1.Diagnostics"}},
    {"storage-adapter", {"cloudflux.storage.v1.StorageService", "cloudflux.diagnostics.v1.Diagnostics"}},
    {"classification",
     {"cloudflux.classification.v1.ClassificationService", "cloudflux.diagnostics.v1.Diagnostics"}},
    {"prediction", {"cloudflux.prediction.v1.PredictionService", "cloudflux.diagnostics.v1.Diagnostics"}},
    {"migration", {"cloudflux.migration.v1.MigrationService", "cloudflux.diagnostics.v1.Diagnostics"}},
    {"sandbox", {"cloudflux.diagnostics.v1.Diagnostics"}},
    {"neural-cluster", {"cloudflux.diagnostics.v1.Diagnostics"}},
};

// The generated descriptors are registered only where their code is linked
// in: a reference to one message of each contract makes sure of it.
void LinkContracts() {
  for (const pb::Descriptor* d :
       {auth::v1::IssueTokenRequest::descriptor(), storage::v1::PutObjectRequest::descriptor(),
        classification::v1::Policy::descriptor(), prediction::v1::ForecastRequest::descriptor(),
        migration::v1::Selection::descriptor(),
        diagnostics::v1::EchoRequest::descriptor()}) {
    ASSERT_NE(d, nullptr);
  }
}

// Methods whose hostile bodies would change what the rest of the test
// relies on (the admin it calls as, the key that signs its token).
const std::set<std::string> kSkipped = {"/cloudflux.auth.v1.AuthService/RotateSigningKey"};

// Status codes a well-behaved server may answer hostile input with.
bool Acceptable(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::UNIMPLEMENTED:
      return false;
    default:
      return true;
  }
}

// Hostile values for one field.
std::vector<std::string> HostileStrings() {
  return {std::string("a\0b", 3),
          std::string("\0", 1),
          "ctl\x01\x1b[31m\r\n\t\x7f",
          "\xc2\x85next-line",  // C1 control (NEL)
          std::string(1 << 20, 'x'),
          "../../../../etc/passwd",
          "%s%s%n%x",
          "'; DROP TABLE x; --",
          "\xff\xfe not utf-8"};
}

// The request variants for `type`: the empty message, then one per hostile
// value of each field (and of the fields of its message fields).
std::vector<std::string> Variants(const pb::Descriptor* type, pb::DynamicMessageFactory& factory) {
  std::vector<std::string> out;
  std::unique_ptr<pb::Message> base(factory.GetPrototype(type)->New());
  out.push_back(base->SerializeAsString());
  // Applies `set` to field `f` of a copy of the message (or of its `outer`
  // message field) and keeps the serialized result.
  auto variant = [&](const pb::FieldDescriptor* outer, const pb::FieldDescriptor* f,
                     const std::function<void(pb::Message&, const pb::FieldDescriptor*)>& set) {
    std::unique_ptr<pb::Message> m(base->New());
    pb::Message* target = m.get();
    if (outer != nullptr) target = m->GetReflection()->MutableMessage(m.get(), outer, &factory);
    set(*target, f);
    std::string bytes;
    m->SerializePartialToString(&bytes);
    out.push_back(std::move(bytes));
  };
  std::function<void(const pb::Descriptor*, const pb::FieldDescriptor*, int)> fields =
      [&](const pb::Descriptor* d, const pb::FieldDescriptor* outer, int depth) {
        for (int i = 0; i < d->field_count(); ++i) {
          const pb::FieldDescriptor* f = d->field(i);
          using T = pb::FieldDescriptor;
          if (f->is_map()) {
            variant(outer, f, [&](pb::Message& m, const T* field) {
              for (int k = 0; k < 2000; ++k) {
                pb::Message* entry = m.GetReflection()->AddMessage(&m, field, &factory);
                const T* key = field->message_type()->map_key();
                if (key->cpp_type() == T::CPPTYPE_STRING) {
                  entry->GetReflection()->SetString(entry, key, std::string("k\0", 2) + std::to_string(k));
                }
              }
            });
            continue;
          }
          if (f->is_repeated()) {
            variant(outer, f, [&](pb::Message& m, const T* field) {
              for (int k = 0; k < 10000; ++k) {
                if (field->cpp_type() == T::CPPTYPE_STRING) {
                  m.GetReflection()->AddString(&m, field, std::string("r\0", 2));
                } else if (field->cpp_type() == T::CPPTYPE_MESSAGE) {
                  m.GetReflection()->AddMessage(&m, field, &factory);
                } else if (field->cpp_type() == T::CPPTYPE_ENUM) {
                  m.GetReflection()->AddEnumValue(&m, field, 9999);
                } else if (field->cpp_type() == T::CPPTYPE_INT32) {
                  m.GetReflection()->AddInt32(&m, field, -1);
                } else if (field->cpp_type() == T::CPPTYPE_INT64) {
                  m.GetReflection()->AddInt64(&m, field, -1);
                }
              }
            });
            continue;
          }
          switch (f->cpp_type()) {
            case T::CPPTYPE_STRING:
              for (const std::string& v : HostileStrings()) {
                variant(outer, f, [&](pb::Message& m, const T* field) { m.GetReflection()->SetString(&m, field, v); });
              }
              break;
            case T::CPPTYPE_INT32:
              for (int32_t v : {-1, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()}) {
                variant(outer, f, [&](pb::Message& m, const T* field) { m.GetReflection()->SetInt32(&m, field, v); });
              }
              break;
            case T::CPPTYPE_INT64:
              for (int64_t v : {int64_t{-1}, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()}) {
                variant(outer, f, [&](pb::Message& m, const T* field) { m.GetReflection()->SetInt64(&m, field, v); });
              }
              break;
            case T::CPPTYPE_DOUBLE:
              for (double v : {-1.0, 1e308, std::numeric_limits<double>::quiet_NaN(),
                               std::numeric_limits<double>::infinity()}) {
                variant(outer, f, [&](pb::Message& m, const T* field) { m.GetReflection()->SetDouble(&m, field, v); });
              }
              break;
            case T::CPPTYPE_ENUM:
              variant(outer, f, [&](pb::Message& m, const T* field) { m.GetReflection()->SetEnumValue(&m, field, 9999); });
              break;
            case T::CPPTYPE_MESSAGE:
              if (depth == 0 && outer == nullptr) fields(f->message_type(), f, depth + 1);
              break;
            default:
              break;
          }
        }
      };
  fields(type, nullptr, 0);
  // Bodies that are no protobuf at all, or truncated ones.
  std::mt19937 rng(7);
  for (size_t n : {1u, 7u, 64u, 4096u}) {
    std::string junk(n, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    out.push_back(junk);
  }
  out.push_back(std::string("\x0a\xff\xff\xff\xff\x0f", 6));  // a length past the end
  return out;
}

// One call of `method` with the serialized `request` as its only message,
// whatever the method's streaming shape.
grpc::Status RawCall(grpc::Channel* channel, const pb::MethodDescriptor* method,
                     const std::string& request, const std::string& token) {
  const std::string path = absl::StrCat("/", method->service()->full_name(), "/", method->name());
  auto ctx = server::MakeClientContext(absl::Seconds(10));
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  grpc::Slice slice(request);
  grpc::ByteBuffer body(&slice, 1);
  grpc::ByteBuffer response;
  using grpc::internal::RpcMethod;
  if (method->client_streaming() && method->server_streaming()) {
    RpcMethod rpc(path.c_str(), RpcMethod::BIDI_STREAMING);
    std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
        grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
            channel, rpc, ctx.get()));
    stream->Write(body);
    stream->WritesDone();
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  }
  if (method->client_streaming()) {
    RpcMethod rpc(path.c_str(), RpcMethod::CLIENT_STREAMING);
    std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> stream(
        grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(channel, rpc, ctx.get(), &response));
    stream->Write(body);
    stream->WritesDone();
    return stream->Finish();
  }
  if (method->server_streaming()) {
    RpcMethod rpc(path.c_str(), RpcMethod::SERVER_STREAMING);
    std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> stream(
        grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(channel, rpc, ctx.get(), body));
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  }
  RpcMethod rpc(path.c_str(), RpcMethod::NORMAL_RPC);
  return grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(channel, rpc, ctx.get(),
                                                                              body, &response);
}

class HostileInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LinkContracts();
    auto db = testing::ScratchDatabase::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db).release();
    services_ = new std::map<std::string, Service>();
    (*services_)["auth"] = StartService("auth", db_->url());
    ASSERT_TRUE(WaitForHealth((*services_)["auth"], HealthCheckResponse::SERVING));
    const std::string auth_target = (*services_)["auth"].target();
    for (const auto& s : kServices) {
      if (s.binary == "auth") continue;
      (*services_)[s.binary] = StartService(
          s.binary, db_->url(), {{"CLOUDFLUX_INSECURE_NO_AUTH", "false"}, {"CLOUDFLUX_AUTH_ADDRESS", auth_target}});
    }
    for (auto& [name, svc] : *services_) {
      ASSERT_TRUE(WaitForHealth(svc, HealthCheckResponse::SERVING)) << name << svc.process->Output();
    }
  }
  static void TearDownTestSuite() {
    for (auto& [name, svc] : *services_) {
      if (svc.process == nullptr) continue;
      svc.process->Signal(SIGTERM);
      EXPECT_EQ(svc.process->Wait(absl::Seconds(30)), 0) << name;
    }
    delete services_;
    delete db_;
  }
  static std::string AdminToken() {
    auto stub = auth::v1::AuthService::NewStub(server::MakeChannel((*services_)["auth"].target()));
    auth::v1::IssueTokenRequest req;
    req.set_grant_type("password");
    req.set_username("admin");
    req.set_password(testing::kTestAdminPassword);
    auth::v1::IssueTokenResponse resp;
    auto ctx = server::MakeClientContext(absl::Seconds(10));
    grpc::Status s = stub->IssueToken(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.access_token();
  }
  static void ExpectAllServing() {
    for (auto& [name, svc] : *services_) {
      EXPECT_TRUE(svc.process->Running()) << name << " died:\n" << svc.process->Output();
      EXPECT_TRUE(WaitForHealth(svc, HealthCheckResponse::SERVING, absl::Seconds(10))) << name;
    }
  }

  static testing::ScratchDatabase* db_;
  static std::map<std::string, Service>* services_;
};

testing::ScratchDatabase* HostileInputTest::db_ = nullptr;
std::map<std::string, Service>* HostileInputTest::services_ = nullptr;

TEST_F(HostileInputTest, EveryRpcAnswersHostileRequestsWithAClearStatusAndStaysUp) {
  const std::string token = AdminToken();
  ASSERT_FALSE(token.empty());
  pb::DynamicMessageFactory factory;
  int calls = 0;
  std::vector<std::string> bad;
  for (const auto& s : kServices) {
    auto channel = server::MakeChannel((*services_)[s.binary].target(), [] {
      server::ChannelOptions o;
      o.max_attempts = 1;
      o.max_send_message_bytes = 64 << 20;
      return o;
    }());
    for (const std::string& name : s.grpc_services) {
      const pb::ServiceDescriptor* service = pb::DescriptorPool::generated_pool()->FindServiceByName(name);
      ASSERT_NE(service, nullptr) << name;
      for (int m = 0; m < service->method_count(); ++m) {
        const pb::MethodDescriptor* method = service->method(m);
        const std::string path = absl::StrCat("/", name, "/", method->name());
        if (kSkipped.count(path)) continue;
        std::map<grpc::StatusCode, int> codes;
        for (const std::string& request : Variants(method->input_type(), factory)) {
          grpc::Status st = RawCall(channel.get(), method, request, token);
          ++calls;
          ++codes[st.error_code()];
          if (!Acceptable(st.error_code())) {
            bad.push_back(absl::StrCat(s.binary, " ", path, " -> ", st.error_code(), " ",
                                       st.error_message().substr(0, 200), " for request ",
                                       absl::CHexEscape(request.substr(0, 60))));
          }
        }
      }
    }
  }
  for (const std::string& b : bad) ADD_FAILURE() << b;
  EXPECT_GT(calls, 1000);
  ExpectAllServing();
}

// Tokens forged the usual ways are refused by every service, which stays up.
TEST_F(HostileInputTest, ForgedAndAlteredTokensAreRefusedEverywhere) {
  const std::string real = AdminToken();
  std::vector<std::string> parts = absl::StrSplit(real, '.');
  ASSERT_EQ(parts.size(), 3u);
  std::string header_json, claims_json;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[0], &header_json));
  ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[1], &claims_json));
  auto b64 = [](const std::string& s) {
    std::string out;
    absl::WebSafeBase64Escape(s, &out);
    return out;
  };
  // The kid of the real key, and its public key from the JWKS.
  auto jwks_stub = auth::v1::AuthService::NewStub(server::MakeChannel((*services_)["auth"].target()));
  auth::v1::GetJwksResponse jwks;
  auto ctx = server::MakeClientContext(absl::Seconds(5));
  ASSERT_TRUE(jwks_stub->GetJwks(ctx.get(), {}, &jwks).ok());
  ASSERT_GT(jwks.keys_size(), 0);
  const std::string kid = jwks.keys(0).kid();
  std::string public_key;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(jwks.keys(0).x(), &public_key));

  std::map<std::string, std::string> forged;
  forged["alg none"] = b64(R"({"alg":"none","typ":"JWT"})") + "." + parts[1] + ".";
  {
    std::string hs_header = b64(absl::StrCat(R"({"alg":"HS256","typ":"JWT","kid":")", kid, R"("})"));
    std::string input = hs_header + "." + parts[1];
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), public_key.data(), static_cast<int>(public_key.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    forged["HS256 keyed with the public key"] = input + "." + b64(std::string(reinterpret_cast<char*>(mac), len));
  }
  {
    std::string sig;
    ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[2], &sig));
    sig[5] ^= 0x01;
    forged["flipped signature bit"] = parts[0] + "." + parts[1] + "." + b64(sig);
    forged["truncated signature"] = parts[0] + "." + parts[1] + "." + b64(sig.substr(0, 32));
    forged["no signature"] = parts[0] + "." + parts[1] + ".";
  }
  {
    std::string escalated = claims_json;
    size_t at = escalated.find("\"sub\":\"");
    ASSERT_NE(at, std::string::npos);
    escalated.replace(at + 7, 1, "f");  // another subject, same signature
    forged["changed payload"] = parts[0] + "." + b64(escalated) + "." + parts[2];
  }
  {
    auto foreign = authn::SigningKey::Generate(kid);  // the right kid, another key
    ASSERT_TRUE(foreign.ok());
    authn::Claims c;
    c.iss = "cloudflux-auth";
    c.aud = "cloudflux";
    c.sub = "attacker";
    c.iat = c.nbf = absl::Now();
    c.exp = absl::Now() + absl::Minutes(5);
    c.jti = "forged";
    c.roles = {"admin"};
    forged["foreign key with the right kid"] = authn::EncodeJwt(*foreign, c);
    c.exp = absl::Now() - absl::Hours(1);
    forged["foreign key, expired"] = authn::EncodeJwt(*foreign, c);
  }
  {
    auth::v1::IssueTokenRequest req;
    req.set_grant_type("password");
    req.set_username("admin");
    req.set_password(testing::kTestAdminPassword);
    req.set_audience("some-other-audience");
    auth::v1::IssueTokenResponse resp;
    auto c = server::MakeClientContext(absl::Seconds(10));
    ASSERT_TRUE(jwks_stub->IssueToken(c.get(), req, &resp).ok());
    forged["wrong audience"] = resp.access_token();
  }
  forged["garbage"] = "not.a.token";
  forged["NUL inside"] = std::string(real).insert(10, 1, '\0');
  forged["huge"] = std::string(6 << 10, 'A');  // under gRPC's 8 KiB metadata limit

  for (const auto& s : kServices) {
    auto diag = diagnostics::v1::Diagnostics::NewStub(server::MakeChannel((*services_)[s.binary].target()));
    for (const auto& [what, token] : forged) {
      auto c = server::MakeClientContext(absl::Seconds(5));
      // Metadata values cannot carry NUL; gRPC refuses to send those itself.
      if (token.find('\0') != std::string::npos) continue;
      c->AddMetadata("authorization", "Bearer " + token);
      diagnostics::v1::GetServerInfoResponse info;
      grpc::Status st = diag->GetServerInfo(c.get(), {}, &info);
      EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << s.binary << ": " << what << " -> " << st.error_code() << " " << st.error_message();
    }
    auto c = server::MakeClientContext(absl::Seconds(5));
    c->AddMetadata("authorization", "Bearer " + real);
    diagnostics::v1::GetServerInfoResponse info;
    EXPECT_TRUE(diag->GetServerInfo(c.get(), {}, &info).ok()) << s.binary;
  }
  ExpectAllServing();
}

}  // namespace
}  // namespace cloudflux
