// TLS on a ServerRunner and on MakeChannel, with certificates made by the
// openssl command line in a scratch directory: plaintext and wrong-CA
// clients are refused, mutual TLS refuses clients without a certificate
// from the CA, and a certificate rotated on disk is served to the next
// connection without a restart.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "cloudflux/diagnostics/v1/diagnostics.grpc.pb.h"
#include "cloudflux/server/channel.h"
#include "cloudflux/server/server_runner.h"
#include "cloudflux/testing/testing.h"

namespace cloudflux::server {
namespace {

using cloudflux::diagnostics::v1::Diagnostics;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/tls-test-" + std::to_string(getpid()));
    std::filesystem::remove_all(*dir_);
    std::filesystem::create_directories(*dir_);
    ASSERT_TRUE(testing::MakeTestCertificates(*dir_).ok());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::string Path(const std::string& name) { return *dir_ + "/" + name; }
  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  void StartServer(bool require_client_cert) {
    // The server reads copies, so that a test can rotate them.
    std::filesystem::copy_file(Path("server.pem"), Path("live.pem"),
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(Path("server.key"), Path("live.key"),
                               std::filesystem::copy_options::overwrite_existing);
    ServerOptions o;
    o.service_name = "tls-test";
    o.listen_address = "127.0.0.1:0";
    o.access_log = AccessLog::kNone;
    o.shutdown_grace = absl::Seconds(2);
    o.tls.cert_file = Path("live.pem");
    o.tls.key_file = Path("live.key");
    o.tls.ca_file = Path("ca.pem");
    o.tls.require_client_cert = require_client_cert;
    o.tls.refresh_interval = absl::Seconds(1);
    ASSERT_TRUE(ValidateServerTls(o.tls).ok());
    runner_ = std::make_unique<ServerRunner>(o, nullptr);
    ASSERT_TRUE(runner_->Start().ok());
    target_ = "127.0.0.1:" + std::to_string(runner_->port());
  }
  // GetServerInfo over a fresh channel; the server's certificate (PEM) in
  // `*served` when the call went through.
  grpc::Status Call(const TlsOptions& tls, std::string* served = nullptr) {
    ChannelOptions options;
    options.max_attempts = 1;
    options.tls = tls;
    auto stub = Diagnostics::NewStub(MakeChannel(target_, options));
    auto ctx = MakeClientContext(absl::Seconds(5));
    cloudflux::diagnostics::v1::GetServerInfoResponse info;
    grpc::Status s = stub->GetServerInfo(ctx.get(), {}, &info);
    if (s.ok() && served != nullptr) {
      auto pems = ctx->auth_context()->FindPropertyValues("x509_pem_cert");
      served->assign(pems.empty() ? "" : std::string(pems[0].data(), pems[0].size()));
    }
    return s;
  }
  TlsOptions Client(const std::string& ca, const std::string& cert = "") {
    TlsOptions t;
    t.ca_file = Path(ca + ".pem");
    if (!cert.empty()) {
      t.cert_file = Path(cert + ".pem");
      t.key_file = Path(cert + ".key");
    }
    t.server_name = "localhost";
    t.refresh_interval = absl::Seconds(1);
    return t;
  }

  static std::string* dir_;
  std::unique_ptr<ServerRunner> runner_;
  std::string target_;
};

std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, ServerRefusesPlaintextAndClientsRefuseAServerFromAnotherCa) {
  StartServer(/*require_client_cert=*/false);
  EXPECT_TRUE(Call(Client("ca")).ok());
  EXPECT_EQ(Call(TlsOptions{}).error_code(), grpc::StatusCode::UNAVAILABLE) << "plaintext client";
  EXPECT_EQ(Call(Client("other-ca")).error_code(), grpc::StatusCode::UNAVAILABLE) << "wrong CA";
  TlsOptions wrong_name = Client("ca");
  wrong_name.server_name = "not-the-server";
  EXPECT_EQ(Call(wrong_name).error_code(), grpc::StatusCode::UNAVAILABLE) << "wrong server name";
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutACertificateFromTheCa) {
  StartServer(/*require_client_cert=*/true);
  EXPECT_TRUE(Call(Client("ca", "client")).ok());
  EXPECT_EQ(Call(Client("ca")).error_code(), grpc::StatusCode::UNAVAILABLE) << "no client certificate";
  EXPECT_EQ(Call(Client("ca", "stranger")).error_code(), grpc::StatusCode::UNAVAILABLE)
      << "a client certificate from another CA";
  EXPECT_EQ(Call(TlsOptions{}).error_code(), grpc::StatusCode::UNAVAILABLE) << "plaintext";
}

TEST_F(TlsTest, ACertificateRotatedOnDiskIsServedToTheNextConnection) {
  StartServer(/*require_client_cert=*/false);
  std::string served;
  ASSERT_TRUE(Call(Client("ca"), &served).ok());
  EXPECT_EQ(served, Read(Path("server.pem")));
  // Rotated the way Kubernetes updates a mounted Secret: new files renamed
  // into place.
  std::filesystem::copy_file(Path("server2.key"), Path("live.key.new"));
  std::filesystem::copy_file(Path("server2.pem"), Path("live.pem.new"));
  std::filesystem::rename(Path("live.key.new"), Path("live.key"));
  std::filesystem::rename(Path("live.pem.new"), Path("live.pem"));
  const std::string rotated = Read(Path("server2.pem"));
  EXPECT_TRUE(testing::WaitFor(
      [&] { return Call(Client("ca"), &served).ok() && served == rotated; }, absl::Seconds(10)))
      << "still serving the old certificate";
}

TEST(TlsOptionsTest, IncompleteSettingsAreRefusedWithAClearMessage) {
  EXPECT_TRUE(ValidateServerTls({}).ok());
  TlsOptions tls;
  tls.cert_file = "/nonexistent.pem";
  EXPECT_EQ(ValidateServerTls(tls).code(), absl::StatusCode::kInvalidArgument);
  tls.key_file = "/nonexistent.key";
  EXPECT_EQ(ValidateServerTls(tls).code(), absl::StatusCode::kInvalidArgument);
  tls = {};
  tls.cert_file = "/x.pem";
  EXPECT_EQ(ValidateClientTls(tls).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cloudflux::server
