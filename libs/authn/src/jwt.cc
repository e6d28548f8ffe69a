#include "cloudflux/authn/jwt.h"

#include <google/protobuf/util/json_util.h>
#include <openssl/evp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cloudflux/auth/v1/jwt.pb.h"
#include "cloudflux/core/status.h"

namespace cloudflux::authn {
namespace {

using cloudflux::auth::v1::JwtClaims;
using cloudflux::auth::v1::JwtHeader;

std::shared_ptr<void> Own(EVP_PKEY* key) {
  return std::shared_ptr<void>(key, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
}

absl::Status Unauthenticated(std::string_view reason) {
  return absl::UnauthenticatedError(std::string(reason));
}

double Seconds(absl::Time t) { return static_cast<double>(absl::ToUnixSeconds(t)); }

}  // namespace

std::string Base64UrlEncode(std::string_view data) {
  std::string out;
  out.resize(4 * ((data.size() + 2) / 3) + 1);
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(n);
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

absl::StatusOr<std::string> Base64UrlDecode(std::string_view text) {
  std::string b64;
  b64.reserve(text.size() + 3);
  for (char c : text) {
    if (c == '-') {
      b64.push_back('+');
    } else if (c == '_') {
      b64.push_back('/');
    } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      b64.push_back(c);
    } else {
      return absl::InvalidArgumentError("invalid base64url character");
    }
  }
  if (b64.size() % 4 == 1) return absl::InvalidArgumentError("invalid base64url length");
  size_t pad = (4 - b64.size() % 4) % 4;
  b64.append(pad, '=');
  std::string out(b64.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(b64.data()),
                          static_cast<int>(b64.size()));
  if (n < 0) return absl::InvalidArgumentError("invalid base64url");
  out.resize(n - pad);
  return out;
}

SigningKey SigningKey::Wrap(std::string kid, void* evp_pkey) {
  auto* key = static_cast<EVP_PKEY*>(evp_pkey);
  SigningKey out;
  out.kid_ = std::move(kid);
  out.pkey_ = Own(key);
  size_t len = 32;
  out.public_.resize(len);
  EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(out.public_.data()), &len);
  JwtHeader header;
  header.set_alg("EdDSA");
  header.set_typ("JWT");
  header.set_kid(out.kid_);
  std::string header_json;
  (void)google::protobuf::util::MessageToJsonString(header, &header_json);
  out.encoded_header_ = Base64UrlEncode(header_json);
  return out;
}

absl::StatusOr<SigningKey> SigningKey::Generate(std::string kid) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) return absl::InternalError("Ed25519 key generation failed");
  return Wrap(std::move(kid), key);
}

absl::StatusOr<SigningKey> SigningKey::FromPrivateBytes(std::string kid, std::string_view raw) {
  if (raw.size() != 32) return absl::InvalidArgumentError("Ed25519 private key must be 32 bytes");
  EVP_PKEY* key = EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  if (key == nullptr) return absl::InvalidArgumentError("invalid Ed25519 private key");
  return Wrap(std::move(kid), key);
}

std::string SigningKey::private_bytes() const {
  std::string raw(32, '\0');
  size_t len = raw.size();
  EVP_PKEY_get_raw_private_key(static_cast<EVP_PKEY*>(pkey_.get()),
                               reinterpret_cast<unsigned char*>(raw.data()), &len);
  return raw;
}

std::string SigningKey::Sign(std::string_view data) const {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, static_cast<EVP_PKEY*>(pkey_.get()));
  std::string sig(64, '\0');
  size_t len = sig.size();
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(data.data()), data.size());
  sig.resize(len);
  return sig;
}

std::string EncodeJwt(const SigningKey& key, const Claims& claims) {
  JwtClaims c;
  c.set_iss(claims.iss);
  c.set_aud(claims.aud);
  c.set_sub(claims.sub);
  c.set_iat(Seconds(claims.iat));
  if (claims.nbf != absl::InfinitePast()) c.set_nbf(Seconds(claims.nbf));
  c.set_exp(Seconds(claims.exp));
  c.set_jti(claims.jti);
  c.set_sid(claims.sid);
  c.set_ver(static_cast<double>(claims.ver));
  for (const auto& r : claims.roles) c.add_roles(r);
  c.set_scope(claims.scope);
  c.set_client_id(claims.client_id);
  c.set_username(claims.username);
  std::string claims_json;
  (void)google::protobuf::util::MessageToJsonString(c, &claims_json);
  std::string signing_input =
      absl::StrCat(key.encoded_header(), ".", Base64UrlEncode(claims_json));
  return absl::StrCat(signing_input, ".", Base64UrlEncode(key.Sign(signing_input)));
}

absl::Status PublicKeySet::Add(std::string kid, std::string_view raw) {
  if (raw.size() != 32) return absl::InvalidArgumentError("Ed25519 public key must be 32 bytes");
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  if (key == nullptr) return absl::InvalidArgumentError("invalid Ed25519 public key");
  keys_[std::move(kid)] = Own(key);
  return absl::OkStatus();
}

absl::Status PublicKeySet::Verify(const std::string& kid, std::string_view data,
                                  std::string_view signature) const {
  auto it = keys_.find(kid);
  if (it == keys_.end()) return Unauthenticated(absl::StrCat("unknown signing key '", kid, "'"));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr,
                           static_cast<EVP_PKEY*>(it->second.get())) != 1 ||
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                       data.size()) != 1) {
    return Unauthenticated("bad token signature");
  }
  return absl::OkStatus();
}

namespace {

struct Parts {
  std::string_view header, claims, signature, signing_input;
};

absl::StatusOr<Parts> Split(std::string_view token, size_t max_bytes) {
  if (token.empty()) return Unauthenticated("empty token");
  if (token.size() > max_bytes) return Unauthenticated("token too long");
  auto first = token.find('.');
  auto second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return Unauthenticated("malformed token: expected header.claims.signature");
  }
  Parts p;
  p.header = token.substr(0, first);
  p.claims = token.substr(first + 1, second - first - 1);
  p.signature = token.substr(second + 1);
  p.signing_input = token.substr(0, second);
  return p;
}

template <class Msg>
absl::StatusOr<Msg> DecodeJson(std::string_view part, const char* what) {
  auto json = Base64UrlDecode(part);
  if (!json.ok()) return Unauthenticated(absl::StrCat("malformed token: ", what, " is not base64url"));
  Msg msg;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(*json, &msg, options).ok()) {
    return Unauthenticated(absl::StrCat("malformed token: ", what, " is not valid JSON"));
  }
  return msg;
}

}  // namespace

absl::StatusOr<UnverifiedHeader> PeekHeader(std::string_view token) {
  CF_ASSIGN_OR_RETURN(Parts parts, Split(token, 1 << 20));
  CF_ASSIGN_OR_RETURN(JwtHeader header, DecodeJson<JwtHeader>(parts.header, "header"));
  return UnverifiedHeader{header.alg(), header.kid()};
}

absl::StatusOr<Claims> VerifyJwt(std::string_view token, const PublicKeySet& keys,
                                 const VerifyOptions& options, absl::Time now) {
  CF_ASSIGN_OR_RETURN(Parts parts, Split(token, options.max_token_bytes));
  CF_ASSIGN_OR_RETURN(JwtHeader header, DecodeJson<JwtHeader>(parts.header, "header"));
  if (header.alg() != "EdDSA") {
    return Unauthenticated(absl::StrCat("token algorithm '", header.alg(), "' is not allowed"));
  }
  if (header.kid().empty()) return Unauthenticated("token has no key id");
  auto signature = Base64UrlDecode(parts.signature);
  if (!signature.ok()) return Unauthenticated("malformed token: signature is not base64url");
  CF_RETURN_IF_ERROR(keys.Verify(header.kid(), parts.signing_input, *signature));
  CF_ASSIGN_OR_RETURN(JwtClaims c, DecodeJson<JwtClaims>(parts.claims, "claims"));
  if (c.iss() != options.issuer) {
    return Unauthenticated(absl::StrCat("wrong token issuer '", c.iss(), "'"));
  }
  if (c.aud() != options.audience) {
    return Unauthenticated(absl::StrCat("wrong token audience '", c.aud(), "'"));
  }
  if (c.exp() == 0) return Unauthenticated("token has no expiry");
  Claims out;
  out.iss = c.iss();
  out.aud = c.aud();
  out.sub = c.sub();
  out.iat = absl::FromUnixSeconds(static_cast<int64_t>(c.iat()));
  out.nbf = c.nbf() == 0 ? absl::InfinitePast() : absl::FromUnixSeconds(static_cast<int64_t>(c.nbf()));
  out.exp = absl::FromUnixSeconds(static_cast<int64_t>(c.exp()));
  if (now >= out.exp + options.leeway) return Unauthenticated("token expired");
  if (now + options.leeway < out.nbf) return Unauthenticated("token not valid yet");
  if (out.sub.empty()) return Unauthenticated("token has no subject");
  out.jti = c.jti();
  out.sid = c.sid();
  out.ver = static_cast<int64_t>(c.ver());
  out.roles.assign(c.roles().begin(), c.roles().end());
  out.scope = c.scope();
  out.client_id = c.client_id();
  out.username = c.username();
  return out;
}

}  // namespace cloudflux::authn
