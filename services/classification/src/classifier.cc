#include "classifier.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cloudflux/classification/v1/events.pb.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/names.h"
#include "cloudflux/core/status.h"
#include "cloudflux/server/paging.h"

namespace cloudflux::classification {

namespace v1 = cloudflux::classification::v1;
using cloudflux::common::v1::CloudProvider;

namespace {

absl::Status CheckLatency(int64_t latency_ms) {
  if (latency_ms < 0) return absl::InvalidArgumentError("max_first_byte_latency_ms must not be negative");
  return absl::OkStatus();
}

absl::Status CheckObjectKey(const std::string& ns, const std::string& key) {
  CF_RETURN_IF_ERROR(core::ValidateNamespace(ns));
  return core::ValidateKey(key);
}

absl::Status CheckScope(const std::string& ns, const std::string& prefix) {
  if (ns.empty() && !prefix.empty()) return absl::InvalidArgumentError("a prefix needs a namespace");
  if (!ns.empty()) CF_RETURN_IF_ERROR(core::ValidateNamespace(ns));
  CF_RETURN_IF_ERROR(core::ValidatePrefix(prefix));
  return absl::OkStatus();
}

// Where the decision sends an object, as stored in object_stats.decided_target.
std::string TargetName(const v1::Classification& c) {
  return absl::StrCat(CloudProvider_Name(c.cloud()), "/", c.storage_class());
}

}  // namespace

std::string Classifier::BackendOf(pricing::CloudProvider cloud) const {
  for (const auto& [backend, c] : options_.backend_clouds) {  // by name: the first
    if (c == cloud) return backend;
  }
  return "";
}

std::vector<std::optional<pricing::Forecast>> Classifier::Forecasts(
    const std::vector<const ObjectStats*>& objects) const {
  std::vector<std::optional<pricing::Forecast>> none(objects.size());
  if (options_.forecasts == nullptr || objects.empty()) return none;
  auto got = options_.forecasts->Get(objects);
  if (!got.ok() || got->size() != objects.size()) {
    core::LogWarn("forecasts unavailable; deciding from access counts",
                  {{"error", got.ok() ? "wrong number of forecasts" : std::string(got.status().message())}});
    return none;
  }
  return std::move(*got);
}

absl::StatusOr<Classifier::Decided> Classifier::Decide(const ObjectStats& s, const v1::Policy* rule,
                                                       int64_t latency_ms, absl::Time now, bool with_candidates,
                                                       const std::optional<pricing::Forecast>& forecast) const {
  auto cloud = options_.backend_clouds.find(s.backend);
  if (cloud == options_.backend_clouds.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backend '", s.backend, "' has no cloud in --backend_clouds, so its prices are unknown"));
  }
  const pricing::ClassPrice* current = catalog_.ForTier(cloud->second, s.tier);
  if (current == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the price catalog has no class for ", CloudProvider_Name(cloud->second), " tier ",
                     cloudflux::common::v1::StorageTier_Name(s.tier)));
  }
  auto days = [&](std::optional<absl::Time> since) {
    return since.has_value() ? std::max(0.0, absl::ToDoubleHours(now - *since) / 24) : 0.0;
  };
  absl::Time written = s.created.value_or(s.placed.value_or(now));
  pricing::AccessStats stats{.size = s.size,
                             .age_days = days(written),
                             .days_in_class = days(s.placed.value_or(written)),
                             .reads_1d = s.reads_1d,
                             .reads_7d = s.reads_7d,
                             .reads_30d = s.reads_30d,
                             .reads_90d = s.reads_90d,
                             .days_since_last_read = days(s.last_read.value_or(written))};
  absl::Time idle_since = std::max(s.placed.value_or(written), s.last_read.value_or(written));
  pricing::Placement placement{current, stats.days_in_class, days(idle_since)};
  pricing::TierPolicy policy = rule != nullptr ? PolicyStore::Apply(*rule, options_.policy) : options_.policy;
  // Objects move by tier: only the class each tier stands for.
  policy.constraints.tier_classes_only = true;
  // Other clouds only where the policy allows them and a backend reaches them.
  policy.constraints.allowed_clouds = {cloud->second};
  if (rule != nullptr) {
    for (int c : rule->allowed_clouds()) {
      if (!BackendOf(static_cast<pricing::CloudProvider>(c)).empty()) {
        policy.constraints.allowed_clouds.insert(static_cast<pricing::CloudProvider>(c));
      }
    }
  }
  // The caller's latency need, else the policy's, else the default.
  if (latency_ms > 0) {
    policy.constraints.max_first_byte_latency_ms = latency_ms;
  } else if (policy.constraints.max_first_byte_latency_ms == 0) {
    policy.constraints.max_first_byte_latency_ms = options_.default_max_latency_ms;
  }
  pricing::Decision d = pricing::Decide(catalog_, stats, placement, policy, forecast);

  Decided out;
  v1::Classification& c = out.classification;
  c.set_namespace_(s.ns);
  c.set_key(s.key);
  c.set_version(s.version);
  c.set_backend(s.backend);
  c.set_cloud(d.target->cloud());
  c.set_storage_class(d.target->storage_class());
  c.set_tier(d.target->tier());
  c.set_target_backend(d.target->cloud() == cloud->second ? s.backend : BackendOf(d.target->cloud()));
  c.set_move(d.move);
  c.set_current_monthly_cost(d.current_monthly);
  c.set_target_monthly_cost(d.target_monthly);
  c.set_saving(d.saving);
  c.set_horizon_days(policy.horizon_days);
  c.set_expected_reads(d.expected.reads);
  c.set_reason(d.reason);
  if (forecast.has_value()) {
    c.set_forecast_reads_7d(forecast->reads_next_7d);
    c.set_forecast_confidence(forecast->confidence);
  }
  if (rule != nullptr) {
    c.set_policy(PolicyStore::Name(*rule));
    out.policy = PolicyStore::PolicyCost{.ns = rule->namespace_(), .prefix = rule->prefix()};
    if (PolicyStore::OverCeiling(*rule)) {
      c.set_reason(absl::StrCat(d.reason, " (the policy's objects cost $", rule->measured_monthly_cost(),
                                " a month, over its cost ceiling of $", rule->monthly_cost_ceiling(),
                                ": no hysteresis margin)"));
    }
  }
  for (const auto& cand : d.candidates) {
    if (cand.is_current) out.current = cand;
    if (d.move && cand.cls == d.target) out.move_cost = cand.move();
    if (!with_candidates) continue;
    v1::Candidate* x = c.add_candidates();
    x->set_cloud(cand.cls->cloud());
    x->set_storage_class(cand.cls->storage_class());
    x->set_tier(cand.cls->tier());
    x->set_current(cand.is_current);
    x->set_monthly_cost(cand.monthly);
    x->set_total_cost(cand.total);
    x->set_storage_cost(cand.storage);
    x->set_request_cost(cand.requests);
    x->set_retrieval_cost(cand.retrieval);
    x->set_move_cost(cand.move());
    x->set_early_deletion_cost(cand.early_deletion);
  }
  if (out.current.cls == nullptr) out.current.cls = current;
  return out;
}

absl::StatusOr<int64_t> Classifier::Publish(const std::vector<const Decided*>& decided) {
  std::vector<cloudflux::events::v1::EventEnvelope> envelopes;
  std::vector<std::string> ns, key, version, target;
  for (const Decided* x : decided) {
    const v1::Classification& c = x->classification;
    if (!c.move()) continue;
    v1::TierDecided event;
    event.set_namespace_(c.namespace_());
    event.set_key(c.key());
    event.set_version(c.version());
    event.set_from_backend(c.backend());
    event.set_from_cloud(x->current.cls->cloud());
    event.set_from_storage_class(x->current.cls->storage_class());
    event.set_from_tier(x->current.cls->tier());
    event.set_to_cloud(c.cloud());
    event.set_to_storage_class(c.storage_class());
    event.set_to_tier(c.tier());
    event.set_to_backend(c.target_backend());
    event.set_expected_saving(c.saving());
    event.set_horizon_days(c.horizon_days());
    event.set_reason(c.reason());
    std::string subject = absl::StrCat(c.namespace_(), "/", c.key());
    envelopes.push_back(events::MakeEnvelope("cloudflux/classification", "objects/" + subject, subject,
                                             event, clock_));
    ns.push_back(c.namespace_());
    key.push_back(c.key());
    version.push_back(std::to_string(c.version()));
    target.push_back(TargetName(c));
  }
  if (envelopes.empty()) return 0;
  CF_RETURN_IF_ERROR(pool_.InTransaction([&](db::Transaction& tx) -> absl::Status {
    CF_RETURN_IF_ERROR(outbox_.EnqueueAll(tx, kDecisionTopic, envelopes));
    return tx.Exec("UPDATE classification.object_stats s SET decided_version = u.version, "
                   "decided_target = u.target, decided_at = now() FROM unnest($1::text[], $2::text[], "
                   "$3::bigint[], $4::text[]) AS u(ns, key, version, target) "
                   "WHERE s.namespace = u.ns AND s.key = u.key",
                   {db::ArrayLiteral(ns), db::ArrayLiteral(key), db::ArrayLiteral(version),
                    db::ArrayLiteral(target)})
        .status();
  }));
  return static_cast<int64_t>(envelopes.size());
}

absl::StatusOr<v1::Classification> Classifier::Classify(const v1::ClassifyRequest& request) {
  CF_RETURN_IF_ERROR(CheckObjectKey(request.namespace_(), request.key()));
  CF_RETURN_IF_ERROR(CheckLatency(request.max_first_byte_latency_ms()));
  const absl::Time now = clock_.Now();
  CF_ASSIGN_OR_RETURN(ObjectStats s, stats_.Get(request.namespace_(), request.key(), now));
  CF_ASSIGN_OR_RETURN(std::optional<v1::Policy> rule, policies_.ForObject(s.ns, s.key));
  CF_ASSIGN_OR_RETURN(Decided d, Decide(s, rule.has_value() ? &*rule : nullptr,
                                        request.max_first_byte_latency_ms(), now, /*with_candidates=*/true,
                                        Forecasts({&s})[0]));
  if (request.publish() && d.classification.move()) {
    CF_ASSIGN_OR_RETURN(int64_t n, Publish({&d}));
    d.classification.set_published(n > 0);
  }
  return std::move(d.classification);
}

absl::StatusOr<std::vector<absl::StatusOr<Classifier::Decided>>> Classifier::DecideAll(
    const std::vector<ObjectStats>& objects, int64_t latency_ms, absl::Time now, bool with_candidates,
    PolicyCache& policies) {
  std::vector<const ObjectStats*> asked;
  asked.reserve(objects.size());
  for (const ObjectStats& s : objects) asked.push_back(&s);
  std::vector<std::optional<pricing::Forecast>> forecasts = Forecasts(asked);
  std::vector<absl::StatusOr<Decided>> out;
  out.reserve(objects.size());
  for (size_t i = 0; i < objects.size(); ++i) {
    const ObjectStats& s = objects[i];
    auto p = policies.find(s.ns);
    if (p == policies.end()) {
      CF_ASSIGN_OR_RETURN(std::vector<v1::Policy> of_ns, policies_.ForNamespace(s.ns));
      p = policies.emplace(s.ns, std::move(of_ns)).first;
    }
    out.push_back(Decide(s, PolicyStore::ForKey(p->second, s.key), latency_ms, now, with_candidates, forecasts[i]));
  }
  return out;
}

absl::Status Classifier::Scan(const std::string& ns, const std::string& prefix, int64_t latency_ms,
                              absl::Time deadline, const Visit& visit, int64_t* unpriced) {
  constexpr int kPage = 500;
  PolicyCache policies;
  AccessStatsStore::Cursor after;
  for (;;) {
    // The deadline is the caller's, on the wall clock.
    if (absl::Now() > deadline) return absl::DeadlineExceededError("the scan ran past the deadline");
    const absl::Time now = clock_.Now();
    CF_ASSIGN_OR_RETURN(std::vector<ObjectStats> objects, stats_.List(ns, prefix, after, kPage, now));
    CF_ASSIGN_OR_RETURN(std::vector<absl::StatusOr<Decided>> decided,
                        DecideAll(objects, latency_ms, now, /*with_candidates=*/false, policies));
    if (static_cast<int>(objects.size()) == kPage) after = {objects.back().ns, objects.back().key};
    std::vector<std::pair<ObjectStats, Decided>> page;
    page.reserve(objects.size());
    for (size_t i = 0; i < objects.size(); ++i) {
      if (!decided[i].ok()) {
        ++*unpriced;
        continue;
      }
      page.emplace_back(std::move(objects[i]), std::move(*decided[i]));
    }
    if (!page.empty()) CF_RETURN_IF_ERROR(visit(page));
    if (static_cast<int>(objects.size()) < kPage) return absl::OkStatus();
  }
}

absl::StatusOr<v1::ClassifyBatchResponse> Classifier::ClassifyBatch(const v1::ClassifyBatchRequest& request,
                                                                    absl::Time deadline) {
  constexpr int kMaxObjects = 1000;
  CF_RETURN_IF_ERROR(CheckLatency(request.max_first_byte_latency_ms()));
  const int64_t latency = request.max_first_byte_latency_ms();
  const absl::Time now = clock_.Now();
  v1::ClassifyBatchResponse out;
  auto report = [&](const std::string& ns, const std::string& key, const absl::Status& error) {
    v1::ObjectError* e = out.add_errors();
    e->set_namespace_(ns);
    e->set_key(key);
    e->set_code(absl::StatusCodeToString(error.code()));
    e->set_message(std::string(error.message()));
  };
  // Objects found, then decided together (one forecast request).
  std::vector<ObjectStats> found;
  if (request.objects_size() > 0) {
    if (!request.namespace_().empty() || !request.prefix().empty() || !request.page().page_token().empty()) {
      return absl::InvalidArgumentError("give either objects or a namespace/prefix, not both");
    }
    if (request.objects_size() > kMaxObjects) {
      return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxObjects, " objects per batch"));
    }
    // Every object is checked before any is looked up.
    for (const auto& o : request.objects()) CF_RETURN_IF_ERROR(CheckObjectKey(o.namespace_(), o.key()));
    for (const auto& o : request.objects()) {
      if (absl::Now() > deadline) return absl::DeadlineExceededError("the batch ran past the deadline");
      absl::StatusOr<ObjectStats> s = stats_.Get(o.namespace_(), o.key(), now);
      if (s.ok()) {
        found.push_back(std::move(*s));
      } else if (s.status().code() == absl::StatusCode::kNotFound) {
        report(o.namespace_(), o.key(), s.status());
      } else {
        return s.status();  // the database, not the object
      }
    }
  } else {
    if (request.namespace_().empty()) {
      return absl::InvalidArgumentError("give objects or a namespace (and optionally a prefix)");
    }
    CF_RETURN_IF_ERROR(CheckScope(request.namespace_(), request.prefix()));
    CF_ASSIGN_OR_RETURN(server::PageCursor page, server::ParsePage(request.page(), 100, kMaxObjects));
    CF_ASSIGN_OR_RETURN(found, stats_.List(request.namespace_(), request.prefix(),
                                           {request.namespace_(), page.after}, page.size + 1, now));
    if (static_cast<int>(found.size()) > page.size) {
      found.resize(page.size);
      out.mutable_page()->set_next_page_token(server::PageToken(found.back().key));
    }
    out.mutable_page()->set_total_size(-1);
  }
  PolicyCache policies;
  CF_ASSIGN_OR_RETURN(std::vector<absl::StatusOr<Decided>> all,
                      DecideAll(found, latency, now, request.include_candidates(), policies));
  std::vector<Decided> decided;
  for (size_t i = 0; i < found.size(); ++i) {
    if (!all[i].ok()) {
      report(found[i].ns, found[i].key, all[i].status());
      continue;
    }
    decided.push_back(std::move(*all[i]));
  }
  std::vector<const Decided*> moves;
  for (const Decided& d : decided) {
    if (!d.classification.move()) continue;
    moves.push_back(&d);
    out.set_moves(out.moves() + 1);
    out.set_total_saving(out.total_saving() + d.classification.saving());
  }
  if (request.publish()) {
    CF_ASSIGN_OR_RETURN(int64_t n, Publish(moves));
    out.set_published(n);
  }
  for (Decided& d : decided) {
    d.classification.set_published(request.publish() && d.classification.move());
    *out.add_classifications() = std::move(d.classification);
  }
  return out;
}

absl::StatusOr<v1::Distribution> Classifier::GetDistribution(const v1::AnalyticsRequest& request) {
  CF_RETURN_IF_ERROR(CheckScope(request.namespace_(), request.prefix()));
  CF_ASSIGN_OR_RETURN(std::vector<AccessStatsStore::Cell> cells,
                      stats_.Distribution(request.namespace_(), request.prefix()));
  v1::Distribution out;
  for (const auto& cell : cells) {
    v1::DistributionCell* x = out.add_cells();
    x->set_backend(cell.backend);
    x->set_tier(cell.tier);
    x->set_objects(cell.objects);
    x->set_bytes(cell.bytes);
    auto cloud = options_.backend_clouds.find(cell.backend);
    if (cloud != options_.backend_clouds.end()) {
      x->set_cloud(cloud->second);
      if (const pricing::ClassPrice* cls = catalog_.ForTier(cloud->second, cell.tier)) {
        x->set_storage_class(cls->storage_class());
      }
    }
    out.set_objects(out.objects() + cell.objects);
    out.set_bytes(out.bytes() + cell.bytes);
  }
  return out;
}

absl::StatusOr<v1::CostBreakdown> Classifier::GetCostBreakdown(const v1::AnalyticsRequest& request,
                                                               absl::Time deadline) {
  CF_RETURN_IF_ERROR(CheckScope(request.namespace_(), request.prefix()));
  std::map<const pricing::ClassPrice*, v1::CostLine> lines;
  v1::CostBreakdown out;
  v1::CostLine& total = *out.mutable_total();
  auto add = [](v1::CostLine& line, int64_t bytes, const pricing::CostBreakdown& c, double per_month) {
    line.set_objects(line.objects() + 1);
    line.set_bytes(line.bytes() + bytes);
    line.set_storage_cost(line.storage_cost() + c.storage * per_month);
    line.set_request_cost(line.request_cost() + c.requests * per_month);
    line.set_retrieval_cost(line.retrieval_cost() + c.retrieval * per_month);
    line.set_monthly_cost(line.storage_cost() + line.request_cost() + line.retrieval_cost());
  };
  int64_t unpriced = 0;
  CF_RETURN_IF_ERROR(Scan(request.namespace_(), request.prefix(), 0, deadline,
                          [&](const std::vector<std::pair<ObjectStats, Decided>>& page) {
                            for (const auto& [s, d] : page) {
                              const double per_month = 30.0 / d.classification.horizon_days();
                              v1::CostLine& line = lines[d.current.cls];
                              add(line, s.size, d.current, per_month);
                              add(total, s.size, d.current, per_month);
                            }
                            return absl::OkStatus();
                          },
                          &unpriced));
  for (auto& [cls, line] : lines) {
    line.set_cloud(cls->cloud());
    line.set_storage_class(cls->storage_class());
    line.set_tier(cls->tier());
    *out.add_lines() = std::move(line);
  }
  std::sort(out.mutable_lines()->begin(), out.mutable_lines()->end(),
            [](const v1::CostLine& a, const v1::CostLine& b) { return a.monthly_cost() > b.monthly_cost(); });
  out.set_unpriced_objects(unpriced);
  return out;
}

absl::StatusOr<v1::PotentialSavings> Classifier::GetPotentialSavings(const v1::PotentialSavingsRequest& request,
                                                                     absl::Time deadline) {
  CF_RETURN_IF_ERROR(CheckScope(request.namespace_(), request.prefix()));
  CF_RETURN_IF_ERROR(CheckLatency(request.max_first_byte_latency_ms()));
  if (request.top_n() < 0 || request.top_n() > 1000) {
    return absl::InvalidArgumentError("top_n must be between 0 and 1000");
  }
  const size_t top_n = request.top_n() == 0 ? 10 : request.top_n();
  v1::PotentialSavings out;
  out.set_horizon_days(options_.policy.horizon_days);
  // The top N so far, smallest saving first (a min-heap by saving).
  auto smaller_saving = [](const v1::Classification& a, const v1::Classification& b) {
    return a.saving() > b.saving();
  };
  std::vector<v1::Classification> top;
  int64_t unpriced = 0;
  CF_RETURN_IF_ERROR(Scan(
      request.namespace_(), request.prefix(), request.max_first_byte_latency_ms(), deadline,
      [&](const std::vector<std::pair<ObjectStats, Decided>>& page) {
        for (const auto& [s, d] : page) {
          const v1::Classification& c = d.classification;
          out.set_objects(out.objects() + 1);
          out.set_current_monthly_cost(out.current_monthly_cost() + c.current_monthly_cost());
          if (!c.move()) {
            out.set_target_monthly_cost(out.target_monthly_cost() + c.current_monthly_cost());
            continue;
          }
          out.set_target_monthly_cost(out.target_monthly_cost() + c.target_monthly_cost());
          out.set_objects_to_move(out.objects_to_move() + 1);
          out.set_bytes_to_move(out.bytes_to_move() + s.size);
          out.set_saving(out.saving() + c.saving());
          out.set_move_cost(out.move_cost() + d.move_cost);
          if (top.size() < top_n || c.saving() > top.front().saving()) {
            top.push_back(c);
            std::push_heap(top.begin(), top.end(), smaller_saving);
            if (top.size() > top_n) {
              std::pop_heap(top.begin(), top.end(), smaller_saving);
              top.pop_back();
            }
          }
        }
        return absl::OkStatus();
      },
      &unpriced));
  std::sort_heap(top.begin(), top.end(), smaller_saving);  // largest saving first
  for (auto& c : top) *out.add_top() = std::move(c);
  return out;
}

absl::StatusOr<Classifier::SweepResult> Classifier::Sweep(const std::function<bool()>& cancelled) {
  SweepResult result;
  std::map<std::pair<std::string, std::string>, PolicyStore::PolicyCost> costs;
  CF_RETURN_IF_ERROR(Scan("", "", 0, absl::InfiniteFuture(),
                          [&](const std::vector<std::pair<ObjectStats, Decided>>& page) -> absl::Status {
                            if (cancelled()) return absl::CancelledError("sweep stopped");
                            std::vector<const Decided*> fresh;
                            for (const auto& [s, d] : page) {
                              ++result.objects;
                              if (d.policy.has_value()) {
                                auto& c = costs.try_emplace({d.policy->ns, d.policy->prefix}, *d.policy)
                                              .first->second;
                                ++c.objects;
                                c.monthly_cost += d.classification.current_monthly_cost();
                              }
                              if (!d.classification.move()) continue;
                              ++result.moves;
                              if (s.decided_version == s.version &&
                                  s.decided_target == TargetName(d.classification)) {
                                continue;  // published before
                              }
                              fresh.push_back(&d);
                            }
                            CF_ASSIGN_OR_RETURN(int64_t n, Publish(fresh));
                            result.published += n;
                            return absl::OkStatus();
                          },
                          &result.errors));
  std::vector<PolicyStore::PolicyCost> measured;
  for (auto& [k, c] : costs) measured.push_back(std::move(c));
  CF_RETURN_IF_ERROR(policies_.RecordCosts(measured));
  return result;
}

}  // namespace cloudflux::classification
