#pragma once
// ApplyClaimed: a consumer that acts on some kinds of a batch's events,
// each exactly once. `pick` turns an envelope into what the consumer needs
// (nullopt: not an event it handles, counted as skipped); events twice in
// the batch count once; in one transaction the rest are claimed
// (ClaimMessages under `schema`/`consumer`) and `apply` gets those not seen
// before, in consumption order.

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cloudflux/core/status.h"
#include "cloudflux/db/db.h"
#include "cloudflux/events/batch_ingest.h"
#include "cloudflux/events/outbox.h"

namespace cloudflux::events {

template <typename T>
absl::StatusOr<IngestCounts> ApplyClaimed(
    db::Pool& pool, const std::string& schema, const std::string& consumer,
    const std::vector<ConsumedMessage>& messages,
    const std::function<std::optional<T>(const cloudflux::events::v1::EventEnvelope&)>& pick,
    const std::function<absl::Status(db::Transaction&, const std::vector<T>&)>& apply) {
  DecodedBatch batch = DecodeMessages(messages);
  IngestCounts out;
  out.skipped = batch.undecodable;
  std::vector<Claim> claims;
  std::vector<T> picked;
  std::set<std::string> ids;
  for (size_t i = 0; i < batch.envelopes.size(); ++i) {
    std::optional<T> item = pick(batch.envelopes[i]);
    if (!item.has_value()) {
      ++out.skipped;
      continue;
    }
    if (!ids.insert(batch.envelopes[i].id()).second) {
      ++out.duplicates;
      continue;
    }
    claims.push_back({batch.origins[i], batch.envelopes[i].id()});
    picked.push_back(std::move(*item));
  }
  if (claims.empty()) return out;
  IngestCounts counted;
  CF_RETURN_IF_ERROR(pool.InTransaction([&](db::Transaction& tx) -> absl::Status {
    counted = out;  // a transaction run again counts afresh
    CF_ASSIGN_OR_RETURN(std::vector<bool> fresh, ClaimMessages(tx, schema, consumer, claims));
    std::vector<T> new_ones;
    for (size_t i = 0; i < picked.size(); ++i) {
      if (!fresh[i]) {
        ++counted.duplicates;
        continue;
      }
      ++counted.applied;
      new_ones.push_back(picked[i]);
    }
    if (new_ones.empty()) return absl::OkStatus();
    return apply(tx, new_ones);
  }));
  return counted;
}

}  // namespace cloudflux::events
