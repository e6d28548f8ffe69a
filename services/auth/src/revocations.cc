#include "revocations.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "cloudflux/authn/authenticator.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/status.h"

namespace cloudflux::auth {

namespace {

using authn::RevocationKeys;

const char* KindName(RevocationStore::Kind kind) {
  switch (kind) {
    case RevocationStore::Kind::kToken:
      return "token";
    case RevocationStore::Kind::kSession:
      return "session";
    case RevocationStore::Kind::kSubject:
      return "subject";
  }
  return "";
}

// Rows written by transactions still open when an earlier sync ran carry
// sequence numbers below what it saw; everything recorded this recently is
// read again, and copied if it was not yet.
constexpr char kRecentWindow[] = "2 minutes";
constexpr char kColumns[] =
    "seq, kind, id, version, (extract(epoch from expires_at) * 1000)::bigint";

}  // namespace

RevocationStore::RevocationStore(db::Pool& pool, cache::RedisClient& redis,
                                 absl::Duration access_ttl,
                                 std::function<absl::Status()> rebuild_others,
                                 const core::Clock& clock)
    : pool_(pool),
      redis_(redis),
      access_ttl_(access_ttl),
      rebuild_others_(std::move(rebuild_others)),
      clock_(clock) {}

absl::Status RevocationStore::Record(db::Transaction& tx, Kind kind, const std::string& id,
                                     int64_t version, absl::Time until) {
  // Sessions and subjects: any access token they cover expires within one
  // access-token lifetime from now (no new one is issued under them).
  absl::Time expires = kind == Kind::kToken ? until : clock_.Now() + access_ttl_;
  return tx
      .Exec("INSERT INTO auth.revocations (kind, id, version, expires_at) VALUES ($1, $2, $3, "
            "to_timestamp($4::double precision / 1000))",
            {KindName(kind), id, std::to_string(version),
             std::to_string(absl::ToUnixMillis(expires))})
      .status();
}

absl::Status RevocationStore::Mirror(const db::Result& rows, bool skip_mirrored) {
  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  absl::flat_hash_set<int64_t> returned;
  absl::Status status;
  for (const db::Row& row : rows) {
    const int64_t seq = row.Int(0);
    // Kept a minute past the last token's expiry (clock skew between hosts).
    const int64_t ttl_ms = row.Int(4) - now_ms + 60000;
    if (ttl_ms > 0 && !(skip_mirrored && mirrored_.contains(seq))) {
      const std::string kind = row.Text(1), id = row.Text(2);
      std::vector<std::string> command;
      if (kind == "token") {
        command = {"SET", RevocationKeys::Token(id), "1", "PX", std::to_string(ttl_ms)};
      } else if (kind == "session") {
        command = {"SET", RevocationKeys::Session(id), "1", "PX", std::to_string(ttl_ms)};
      } else {
        // Keeps the highest version (rows may arrive out of order).
        static const std::string kMax =
            "local v = tonumber(redis.call('GET', KEYS[1]) or '-1') "
            "if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
            "else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 1";
        command = {"EVAL", kMax, "1", RevocationKeys::Subject(id), row.Text(3), std::to_string(ttl_ms)};
      }
      status = redis_.Command(command).status();
      if (!status.ok()) break;
    }
    returned.insert(seq);
    mirrored_seq_ = std::max(mirrored_seq_, seq);
  }
  // What this query returned and is in Redis; the next query returns only
  // rows newer or still within the recent window, so this stays small.
  mirrored_ = std::move(returned);
  return status;
}

absl::Status RevocationStore::Rebuild() {
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec(absl::StrCat("SELECT ", kColumns,
                                              " FROM auth.revocations WHERE expires_at > now() "
                                              "ORDER BY seq")));
  CF_RETURN_IF_ERROR(Mirror(rows, /*skip_mirrored=*/false));  // Redis lost them all
  if (rebuild_others_) CF_RETURN_IF_ERROR(rebuild_others_());
  CF_RETURN_IF_ERROR(redis_.Set(RevocationKeys::kComplete, absl::StrCat(absl::ToUnixMillis(clock_.Now()))));
  core::LogInfo("revocation mirror rebuilt in Redis", {{"revocations", std::to_string(rows.size())}});
  return absl::OkStatus();
}

absl::Status RevocationStore::Sync() {
  std::lock_guard lock(sync_mu_);
  CF_ASSIGN_OR_RETURN(bool complete, redis_.Exists(RevocationKeys::kComplete));
  if (!complete) return Rebuild();
  CF_ASSIGN_OR_RETURN(db::Result rows,
                      pool_.Exec(absl::StrCat("SELECT ", kColumns,
                                              " FROM auth.revocations WHERE (seq > $1 OR "
                                              "recorded_at > now() - interval '",
                                              kRecentWindow, "') AND expires_at > now() ORDER BY seq"),
                                 {std::to_string(mirrored_seq_)}));
  return Mirror(rows, /*skip_mirrored=*/true);
}

absl::Status RevocationStore::Prune() {
  return pool_.Exec("DELETE FROM auth.revocations WHERE expires_at < now() - interval '1 hour'").status();
}

}  // namespace cloudflux::auth
