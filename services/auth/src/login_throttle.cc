#include "login_throttle.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/authn/authenticator.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/status.h"

namespace cloudflux::auth {

namespace {

constexpr char kPrefix[] = "cloudflux:auth:failures:";
using authn::RevocationKeys;

// KEYS: name counter, peer counter, marker. ARGV: name limit, peer limit,
// window ms, "1" to reserve a place. Returns {0, n} (clear, and reserved
// when asked; n: the name's count before), {-1} (marker missing) or
// {i, pttl} (counter i, 1 = name, 2 = peer, is at its limit).
constexpr char kCheck[] = R"(
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1} end
local counts = {}
for i = 1, 2 do
  counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if counts[i] >= tonumber(ARGV[i]) then return {i, redis.call('PTTL', KEYS[i])} end
end
if ARGV[4] == '1' then
  for i = 1, 2 do
    if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
  end
end
return {0, counts[1]})";

// Gives a place back without going below zero or dropping the TTL.
constexpr char kRelease[] = R"(
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 1 then redis.call('DECR', KEYS[1]) elseif n == 1 then redis.call('DEL', KEYS[1]) end
return 1)";

std::string WindowMs(absl::Duration window) {
  return std::to_string(std::max<int64_t>(1, absl::ToInt64Milliseconds(window)));
}

}  // namespace

LoginThrottle::LoginThrottle(db::Pool& pool, cache::RedisClient& redis, ThrottleOptions options)
    : pool_(pool), redis_(redis), options_(options) {
  auto tracked = cache::TrackedValues::Create(redis, {.prefixes = {kPrefix, RevocationKeys::kComplete}});
  if (tracked.ok()) tracked_ = std::move(*tracked);
}

LoginThrottle::~LoginThrottle() = default;

LoginThrottle::Attempt LoginThrottle::Keys(const std::string& name, const std::string& peer) const {
  // "ipv4:10.0.0.1:5555" -> the address without the port.
  std::string host = peer;
  auto colon = host.rfind(':');
  if (colon != std::string::npos && absl::StartsWith(host, "ipv")) host = host.substr(0, colon);
  return {absl::StrCat(kPrefix, "name:", core::Sha256Hex(name)), absl::StrCat(kPrefix, "peer:", host)};
}

absl::StatusOr<LoginThrottle::Attempt> LoginThrottle::Begin(const std::string& name,
                                                            const std::string& peer) {
  return Run(name, peer, /*reserve=*/true);
}

absl::StatusOr<LoginThrottle::Attempt> LoginThrottle::Check(const std::string& name,
                                                            const std::string& peer) {
  return Run(name, peer, /*reserve=*/false);
}

absl::StatusOr<LoginThrottle::Attempt> LoginThrottle::Run(const std::string& name, const std::string& peer,
                                                          bool reserve) {
  Attempt attempt = Keys(name, peer);
  auto reply = redis_.Command({"EVAL", kCheck, "3", attempt.name_key, attempt.peer_key,
                               RevocationKeys::kComplete, std::to_string(options_.max_failures_per_name),
                               std::to_string(options_.max_failures_per_peer), WindowMs(options_.window),
                               reserve ? "1" : "0"});
  if (!reply.ok()) return core::Annotate(reply.status(), "brute-force check");
  if (reserve && tracked_ != nullptr) tracked_->Forget({attempt.name_key, attempt.peer_key});
  if (reply->elements.empty()) return absl::UnavailableError("brute-force check: unexpected answer");
  int64_t verdict = reply->elements[0].integer;
  if (verdict == 0) {
    attempt.reserved = reserve;
    attempt.name_counted = reply->elements.size() > 1 && reply->elements[1].integer > 0;
    return attempt;
  }
  if (verdict < 0) {
    return absl::UnavailableError(
        "brute-force counters are being restored after a Redis restart; retry shortly");
  }
  int64_t wait_ms = reply->elements.size() > 1 ? reply->elements[1].integer : 60000;
  return absl::ResourceExhaustedError(absl::StrCat("too many failed attempts; retry in ",
                                                   std::max<int64_t>(1, (wait_ms + 999) / 1000), " s"));
}

std::optional<bool> LoginThrottle::ClearInMemory(const std::string& name, const std::string& peer) {
  if (tracked_ == nullptr) return std::nullopt;
  Attempt keys = Keys(name, peer);
  auto values = tracked_->TryGet({keys.name_key, keys.peer_key, RevocationKeys::kComplete});
  if (!values.has_value()) return std::nullopt;
  int64_t peer_count = 0;
  if ((*values)[1].has_value()) (void)absl::SimpleAtoi(*(*values)[1], &peer_count);
  return !(*values)[0].has_value() && peer_count < options_.max_failures_per_peer &&
         (*values)[2].has_value();
}

void LoginThrottle::Succeeded(const Attempt& attempt) {
  // The name's counter and failures are reset; with nothing counted for it
  // when the attempt began, there is nothing to reset but its own place.
  if (attempt.reserved || attempt.name_counted) (void)redis_.Delete(attempt.name_key);
  if (attempt.reserved) (void)redis_.Command({"EVAL", kRelease, "1", attempt.peer_key});
  if (attempt.name_counted) {
    (void)pool_.Exec("DELETE FROM auth.login_failures WHERE counter = $1", {attempt.name_key});
  }
  if (tracked_ != nullptr) {
    tracked_->Forget({attempt.name_key, attempt.peer_key});
    // Loaded again, so that this name's next grants from this peer can be
    // answered from memory (ClearInMemory).
    (void)tracked_->Get({attempt.name_key, attempt.peer_key, RevocationKeys::kComplete});
  }
}

void LoginThrottle::Abandon(const Attempt& attempt) {
  if (!attempt.reserved) return;
  for (const std::string* key : {&attempt.name_key, &attempt.peer_key}) {
    (void)redis_.Command({"EVAL", kRelease, "1", *key});
  }
  if (tracked_ != nullptr) tracked_->Forget({attempt.name_key, attempt.peer_key});
}

absl::Status LoginThrottle::Failed(db::Transaction& tx, const Attempt& attempt) {
  if (!attempt.reserved) {  // counted now, a window from each counter's first
    for (const std::string* key : {&attempt.name_key, &attempt.peer_key}) {
      CF_RETURN_IF_ERROR(redis_.IncrementWithExpiry(*key, options_.window).status());
    }
    if (tracked_ != nullptr) tracked_->Forget({attempt.name_key, attempt.peer_key});
  }
  return tx
      .Exec("INSERT INTO auth.login_failures (counter) VALUES ($1), ($2)",
            {attempt.name_key, attempt.peer_key})
      .status();
}

absl::Status LoginThrottle::Rebuild() {
  const int64_t window_ms = absl::ToInt64Milliseconds(options_.window);
  // Each counter as it stood: its failures within the window, expiring a
  // window after the first of them (the counters' fixed windows).
  CF_ASSIGN_OR_RETURN(
      db::Result rows,
      pool_.Exec("SELECT counter, count(*), (extract(epoch from (min(failed_at) + $1::interval - "
                 "now())) * 1000)::bigint FROM auth.login_failures WHERE failed_at > now() - "
                 "$1::interval GROUP BY counter",
                 {absl::StrCat(window_ms, " milliseconds")}));
  for (const db::Row& row : rows) {
    int64_t ttl = std::max<int64_t>(1, row.Int(2));
    CF_RETURN_IF_ERROR(
        redis_.Command({"SET", row.Text(0), row.Text(1), "PX", std::to_string(ttl)}).status());
  }
  return absl::OkStatus();
}

absl::Status LoginThrottle::Prune() {
  return pool_
      .Exec("DELETE FROM auth.login_failures WHERE failed_at < now() - $1::interval",
            {absl::StrCat(absl::ToInt64Milliseconds(options_.window), " milliseconds")})
      .status();
}

}  // namespace cloudflux::auth
