#pragma once
// The tiering simulator: replays per-object access traces day by day and
// bills them with the price catalog under several placement policies —
// everything in STANDARD, S3 Intelligent-Tiering's rules, GCS Autoclass's
// rules, a fixed lifecycle (STANDARD_IA after 30 days, GLACIER after 90),
// CloudFlux (pricing::Decide, fed each day with what it would have known
// then) and the per-object offline optimum (dynamic programming over days
// and classes with transition and minimum-duration costs).
//
// Billing rules (one biller for every policy and the optimum):
// a PUT in the first class when the object is written; each day, storage of
// the billable size (minimum billable size and per-object overhead) at the
// class's monthly price / 30; each read, the class's GET price and its
// retrieval fee on the object's size; a change of class, a GET and
// retrieval in the old class and a PUT in the new one; leaving a class (by a
// change or by deletion) before its minimum duration, the remaining days of
// storage. A managed class (S3 INTELLIGENT_TIERING, GCS AUTOCLASS) follows
// the cloud's published rules: its storage price goes by days since the last
// read (entering the class counts as one), no retrieval or early-deletion
// fees, a monitoring fee per object and month for objects of at least
// 128 KiB (smaller ones stay in the first tier). CloudFlux and the optimum
// may use INTELLIGENT_TIERING like any class. A read is an SLA violation when
// the class serving it has a longer first-byte latency than the object
// allows.

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cloudflux/pricing/catalog.h"
#include "cloudflux/pricing/decide.h"

namespace cloudflux::sim {

// One object's life in the trace.
struct ObjectTrace {
  std::string id;
  int64_t size = 0;
  int create_day = 0;
  int delete_day = -1;  // -1: still there at the end of the trace
  int64_t max_latency_ms = 1000;
  std::vector<uint32_t> reads;  // reads per day, from create_day to the end of its life
  // Generated traces: the expected reads of each day (the rate the day's
  // reads were drawn from; an audit's one read is not in it). Empty for a
  // CSV trace.
  std::vector<float> rate;
  // Generated bursty objects: the day (index) each burst day's burst began
  // on, -1 outside bursts; the expected reads of a day whose burst had not
  // begun when the forecast was made (bursts begin at random), and of a day
  // outside bursts. Empty and -1 for other objects.
  std::vector<int16_t> burst_from;
  float unforeseen_rate = -1, quiet_rate = -1;
  int life() const { return static_cast<int>(reads.size()); }
  bool deleted() const { return delete_day >= 0; }
};

struct Trace {
  std::string name;
  int days = 0;
  std::vector<ObjectTrace> objects;
};

// CSV, one operation per line: timestamp_seconds,object_id,size_bytes,op
// [,max_latency_ms] with op PUT, GET or DELETE; '#' lines and a header line
// starting with "timestamp" are skipped; day 0 starts at the first
// timestamp. The first PUT creates an object (later PUTs of the same id are
// reads of nothing and ignored), a GET before its PUT creates it at that
// day. max_latency_ms defaults to 1000.
absl::StatusOr<Trace> ReadCsvTrace(const std::string& path);

// Synthetic workloads: "mixed", "media", "backup", "analytics",
// "small-rare" (objects under 128 KiB, rarely read), "idle-burst" (large
// datasets idle for weeks, then read heavily for a week) (see
// GenerateTrace in sim.cc for their mix of heavy-tailed popularity, interest
// decaying with age, weekly seasonality, bursts and write-once archives).
absl::StatusOr<Trace> GenerateTrace(const std::string& kind, int objects, int days, uint64_t seed);

// A placement schedule: the class index (into Classes) for each day of an
// object's life.
using Schedule = std::vector<int>;

struct Bill {
  double total = 0;
  double storage = 0, requests = 0, retrieval = 0, transitions = 0, early_deletion = 0, monitoring = 0;
  int64_t sla_violations = 0;  // reads served too slowly
  int64_t moves = 0;
  Bill& operator+=(const Bill& o);
};

// The classes of one cloud the simulator places objects in, in catalog
// order, with the tiers of the managed ones (nullptr for the others).
struct Classes {
  std::vector<const pricing::ClassPrice*> list;
  std::vector<const pricing::ManagedTiers*> managed;
  // Across clouds: $/GB of a move from class i to class j (the source
  // cloud's egress); empty within one cloud.
  std::vector<std::vector<double>> egress_per_gb;
  int Index(const std::string& storage_class) const;
  int Index(pricing::CloudProvider cloud, const std::string& storage_class) const;
};
Classes CloudClasses(const pricing::PriceCatalog& catalog, pricing::CloudProvider cloud);
Classes AwsClasses(const pricing::PriceCatalog& catalog);
// Every cloud's classes, with the egress a move between clouds pays.
Classes AllClasses(const pricing::PriceCatalog& catalog);

// Bills an unmanaged schedule.
Bill BillSchedule(const Classes& classes, const ObjectTrace& o, const Schedule& s);

// Per-object schedules / bills of each policy.
Schedule Lifecycle(const Classes& classes, const ObjectTrace& o);  // IA at 30 d, GLACIER at 90 d
// CloudFlux's decisions, day by day, from what was known the day before.
// With `perfect_forecast`, Decide also gets, as a forecast of full
// confidence, the reads the object will really get over the horizon: not a
// policy anyone can run, but the bound on what forecasts (the prediction
// service) can add to the same decision rule.
// With `learned` (one entry per day of the object's life), Decide gets
// each day the forecast a forecaster made from what was known before it.
Schedule CloudFlux(const pricing::PriceCatalog& catalog, const Classes& classes, const ObjectTrace& o,
                   const pricing::TierPolicy& base, bool perfect_forecast = false,
                   const std::vector<std::optional<pricing::Forecast>>* learned = nullptr);

// Forecasts for every object of a trace (in trace order) and day of its
// life (index: days since create_day); nullopt where there was none.
using ForecastTable = std::vector<std::vector<std::optional<pricing::Forecast>>>;
// The offline optimum among classes meeting the object's latency need; its
// cost in *cost.
Schedule Optimum(const Classes& classes, const ObjectTrace& o, double* cost);
// Every day in one class (e.g. the managed INTELLIGENT_TIERING or AUTOCLASS).
Schedule AllIn(const Classes& classes, const std::string& storage_class, const ObjectTrace& o);

struct Report {
  std::string trace;
  int objects = 0;
  std::vector<std::pair<std::string, Bill>> bills;  // policy -> total bill
  const Bill& Of(const std::string& policy) const;
};
// Every policy on one trace: besides the AWS rows, "optimum-gcp" and
// "optimum-azure" (each cloud's own offline optimum), "optimum-best-cloud"
// (each object in the cloud whose optimum is cheapest for it) and
// "cloudflux-any-cloud" (the counts-only rule choosing among every cloud's
// classes where a new object is written, and moving it later within any
// cloud with the egress priced); with `perfect_forecast` also
// "cloudflux+perfect-forecast" (see CloudFlux).
// With `learned`, also "cloudflux+learned-forecast". With
// `perfect_forecast` on a generated trace, also "cloudflux+rate-oracle":
// the rule given, as a forecast of full confidence, the expected reads the
// generator drew each day's reads from (RateForecasts) — what a forecaster
// that knew the workload's rates exactly, but not the draws, would reach;
// and "cloudflux+knowable-rate" (KnowableRateForecasts).
std::vector<std::optional<pricing::Forecast>> RateForecasts(const ObjectTrace& o, int horizon_days);
// The expected reads of day `day` as they could be known on day `origin`
// (both days since create_day): the generator's rate, except on a bursty
// object's days whose burst had not begun by the origin, which get the
// expected rate of a day of unknown burst state (the mean, what a linear
// cost wants), or with `quiet_unless_begun` the rate outside bursts (what
// an error averaged per object, like RMSSE, favours). Unlike the rate, it
// does not know when bursts begin.
double KnowableRate(const ObjectTrace& o, int origin, int day, bool quiet_unless_begun = false);
// RateForecasts with KnowableRate from each day on: "cloudflux+knowable-rate".
std::vector<std::optional<pricing::Forecast>> KnowableRateForecasts(const ObjectTrace& o, int horizon_days);
Report Simulate(const pricing::PriceCatalog& catalog, const Trace& trace, const pricing::TierPolicy& policy,
                bool perfect_forecast = false, const ForecastTable* learned = nullptr);

}  // namespace cloudflux::sim
