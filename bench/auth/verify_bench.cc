// Local token verification as every service does it in its authentication
// hook: uncached (signature + claims checks) and cached (hash lookup).
//   verify_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include "cloudflux/authn/authenticator.h"
#include "cloudflux/authn/jwt.h"

namespace {

using namespace cloudflux::authn;

Claims MakeClaims(int i) {
  Claims c;
  c.iss = "cloudflux-auth";
  c.aud = "cloudflux";
  c.sub = "principal-" + std::to_string(i);
  c.iat = absl::Now();
  c.nbf = absl::Now();
  c.exp = absl::Now() + absl::Minutes(15);
  c.jti = "jti-" + std::to_string(i);
  c.roles = {"operator"};
  return c;
}

void BM_VerifyJwtUncached(benchmark::State& state) {
  SigningKey key = *SigningKey::Generate("k1");
  PublicKeySet keys;
  (void)keys.Add("k1", key.public_bytes());
  std::string token = EncodeJwt(key, MakeClaims(1));
  VerifyOptions options{.issuer = "cloudflux-auth", .audience = "cloudflux"};
  for (auto _ : state) {
    auto claims = VerifyJwt(token, keys, options, absl::Now());
    benchmark::DoNotOptimize(claims);
  }
}
BENCHMARK(BM_VerifyJwtUncached)->Threads(1)->Threads(2);

class StaticKeys : public KeySource {
 public:
  explicit StaticKeys(std::shared_ptr<const PublicKeySet> keys) : keys_(std::move(keys)) {}
  absl::StatusOr<std::shared_ptr<const PublicKeySet>> Fetch() override { return keys_; }

 private:
  std::shared_ptr<const PublicKeySet> keys_;
};

void BM_AuthenticateCached(benchmark::State& state) {
  static SigningKey key = *SigningKey::Generate("k1");
  static std::shared_ptr<JwtAuthenticator> auth = [] {
    auto keys = std::make_shared<PublicKeySet>();
    (void)keys->Add("k1", key.public_bytes());
    AuthenticatorOptions options;
    options.verify = {.issuer = "cloudflux-auth", .audience = "cloudflux"};
    options.revocation_recheck = absl::Hours(1);
    return std::make_shared<JwtAuthenticator>(options, std::make_unique<StaticKeys>(keys), nullptr,
                                              DefaultPermissions());
  }();
  std::string header = "Bearer " + EncodeJwt(key, MakeClaims(static_cast<int>(state.thread_index())));
  cloudflux::server::RequestMetadata md{{"authorization", header}};
  for (auto _ : state) {
    auto p = auth->Authenticate("/cloudflux.diagnostics.v1.Diagnostics/GetServerInfo", md);
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_AuthenticateCached)->Threads(1)->Threads(2);

void BM_SignJwt(benchmark::State& state) {
  SigningKey key = *SigningKey::Generate("k1");
  Claims c = MakeClaims(1);
  for (auto _ : state) benchmark::DoNotOptimize(EncodeJwt(key, c));
}
BENCHMARK(BM_SignJwt);

}  // namespace

BENCHMARK_MAIN();
