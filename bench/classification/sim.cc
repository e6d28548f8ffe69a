#include "sim.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace cloudflux::sim {

using pricing::ClassPrice;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr auto AWS = cloudflux::common::v1::CLOUD_PROVIDER_AWS;

Bill& Bill::operator+=(const Bill& o) {
  total += o.total;
  storage += o.storage;
  requests += o.requests;
  retrieval += o.retrieval;
  transitions += o.transitions;
  early_deletion += o.early_deletion;
  monitoring += o.monitoring;
  sla_violations += o.sla_violations;
  moves += o.moves;
  return *this;
}

int Classes::Index(const std::string& storage_class) const {
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i]->storage_class() == storage_class) return static_cast<int>(i);
  }
  return -1;
}

Classes CloudClasses(const pricing::PriceCatalog& catalog, pricing::CloudProvider cloud) {
  Classes c;
  for (const ClassPrice* p : catalog.classes()) {
    if (p->cloud() != cloud) continue;
    c.list.push_back(p);
    c.managed.push_back(catalog.TiersOf(*p));
  }
  return c;
}

Classes AwsClasses(const pricing::PriceCatalog& catalog) { return CloudClasses(catalog, AWS); }

int Classes::Index(pricing::CloudProvider cloud, const std::string& storage_class) const {
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i]->cloud() == cloud && list[i]->storage_class() == storage_class) return static_cast<int>(i);
  }
  return -1;
}

Classes AllClasses(const pricing::PriceCatalog& catalog) {
  Classes c;
  for (const ClassPrice* p : catalog.classes()) {
    c.list.push_back(p);
    c.managed.push_back(catalog.TiersOf(*p));
  }
  c.egress_per_gb.assign(c.list.size(), std::vector<double>(c.list.size(), 0));
  for (size_t i = 0; i < c.list.size(); ++i) {
    for (size_t j = 0; j < c.list.size(); ++j) {
      c.egress_per_gb[i][j] = catalog.EgressPerGb(c.list[i]->cloud(), c.list[j]->cloud());
    }
  }
  return c;
}

// ------------------------------------------------------------ traces

absl::StatusOr<Trace> ReadCsvTrace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read trace " + path);
  struct Building {
    ObjectTrace o;
    std::map<int, uint32_t> reads;
  };
  std::map<std::string, size_t> index;
  std::vector<Building> objects;
  std::string line;
  int line_no = 0;
  bool have_t0 = false;
  double t0 = 0;
  int last_day = 0;
  while (std::getline(in, line)) {
    ++line_no;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#' || absl::StartsWith(text, "timestamp")) continue;
    std::vector<std::string> f = absl::StrSplit(text, ',');
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": ", what));
    };
    if (f.size() < 4 || f.size() > 5) return bad("expected timestamp_seconds,object_id,size_bytes,op[,max_latency_ms]");
    double t;
    int64_t size, latency = 1000;
    if (!absl::SimpleAtod(f[0], &t)) return bad("bad timestamp");
    if (f[1].empty()) return bad("empty object id");
    if (!absl::SimpleAtoi(f[2], &size) || size < 0) return bad("bad size");
    if (f.size() == 5 && (!absl::SimpleAtoi(f[4], &latency) || latency <= 0)) return bad("bad max_latency_ms");
    if (!have_t0) {
      t0 = t;
      have_t0 = true;
    }
    if (t < t0) return bad("timestamps must not go back before the first one");
    int day = static_cast<int>((t - t0) / 86400);
    last_day = std::max(last_day, day);
    const std::string& op = f[3];
    if (op != "PUT" && op != "GET" && op != "DELETE") return bad("op must be PUT, GET or DELETE");
    auto [it, inserted] = index.try_emplace(f[1], objects.size());
    if (inserted) {
      Building b;
      b.o.id = f[1];
      b.o.size = size;
      b.o.create_day = day;
      b.o.max_latency_ms = latency;
      objects.push_back(std::move(b));
    }
    Building& b = objects[it->second];
    if (b.o.deleted()) continue;  // a later life of the same id is not modelled
    if (op == "GET") ++b.reads[day];
    if (op == "DELETE") b.o.delete_day = day;
  }
  Trace trace;
  trace.name = path;
  trace.days = last_day + 1;
  for (auto& b : objects) {
    int end = b.o.deleted() ? b.o.delete_day : trace.days;
    b.o.reads.assign(std::max(1, end - b.o.create_day), 0);
    for (const auto& [day, n] : b.reads) {
      if (day - b.o.create_day < b.o.life()) b.o.reads[day - b.o.create_day] += n;
    }
    trace.objects.push_back(std::move(b.o));
  }
  return trace;
}

absl::StatusOr<Trace> GenerateTrace(const std::string& kind, int objects, int days, uint64_t seed) {
  // Bursty objects: the chance a burst begins on a quiet day, and its
  // longest length (lengths 1 to that, evenly).
  constexpr double kBurstChance = 1.0 / 60;
  constexpr int kBurstMaxDays = 5;
  // Pattern weights: decaying interest, steady hot, bursts, write-once archive.
  // (The weights of a mix add up to 1; idle_heavy is the rest.)
  struct Mix {
    double decaying, hot, bursty, archive;
    double median_mib;
    double relaxed_sla;  // share of objects that accept hours to first byte
    double size_sigma = 2.0;  // of the log-normal object size
  };
  static const std::map<std::string, Mix> kMixes = {
      {"mixed", {0.40, 0.15, 0.15, 0.30, 4, 0.25}},
      {"media", {0.70, 0.10, 0.10, 0.10, 64, 0.05}},
      {"backup", {0.10, 0.00, 0.10, 0.80, 256, 0.90}},
      {"analytics", {0.30, 0.20, 0.50, 0.00, 16, 0.10}},
      // Many objects under 128 KiB, rarely read: request prices outweigh
      // storage, and minimum billable sizes apply.
      {"small-rare", {0.30, 0.00, 0.20, 0.50, 0.03, 0.10, 1.0}},
      // Large datasets idle for weeks, then read heavily for a week (a
      // monthly training or reporting run), again and again.
      {"idle-burst", {0.00, 0.00, 0.00, 0.00, 2048, 0.20, 0.5}},
  };
  auto mix = kMixes.find(kind);
  if (mix == kMixes.end()) return absl::InvalidArgumentError("unknown workload " + kind);
  const Mix& m = mix->second;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::lognormal_distribution<double> size_dist(std::log(m.median_mib * 1048576.0), m.size_sigma);
  Trace t;
  t.name = kind;
  t.days = days;
  for (int i = 0; i < objects; ++i) {
    ObjectTrace o;
    o.id = absl::StrCat(kind, "-", i);
    o.size = static_cast<int64_t>(std::clamp(size_dist(rng), 1024.0, 4.0 * (1 << 30)));
    o.create_day = static_cast<int>(u(rng) * days / 2);
    o.max_latency_ms = u(rng) < m.relaxed_sla ? 48LL * 3600 * 1000 : 1000;
    int end = days;
    if (u(rng) < 0.2) {
      int del = o.create_day + 10 + static_cast<int>(u(rng) * 190);
      if (del < days) {
        o.delete_day = del;
        end = del;
      }
    }
    // Heavy-tailed popularity: Pareto(1.1) base read rate.
    double base = std::min(500.0, 0.05 * std::pow(1 - u(rng), -1 / 1.1));
    double p = u(rng);
    enum { kDecaying, kHot, kBursty, kArchive, kIdleHeavy } pattern =
        p < m.decaying ? kDecaying
        : p < m.decaying + m.hot ? kHot
        : p < m.decaying + m.hot + m.bursty ? kBursty
        : p < m.decaying + m.hot + m.bursty + m.archive ? kArchive
                                                        : kIdleHeavy;
    // kIdleHeavy: quiet for `idle` days, then a week of heavy reads. (Drawn
    // only for those objects: the other families' traces stay as they were.)
    int idle = 0, phase = 0;
    if (pattern == kIdleHeavy) {
      idle = 21 + static_cast<int>(u(rng) * 35);
      phase = static_cast<int>(u(rng) * (idle + 7));
    }
    double tau = 2 + u(rng) * 43;
    int burst_left = 0;
    int audit_day = u(rng) < 0.3 ? static_cast<int>(u(rng) * (end - o.create_day)) : -1;
    o.reads.assign(std::max(1, end - o.create_day), 0);
    o.rate.assign(o.reads.size(), 0);
    if (pattern == kBursty) {
      o.burst_from.assign(o.reads.size(), -1);
      // A burst begins on a quiet day with probability kBurstChance and lasts
      // 1 to kBurstMaxDays days: the share of burst days is the mean burst
      // over the mean burst plus the mean quiet run before one begins.
      const double mean_burst = (1 + kBurstMaxDays) / 2.0, mean_quiet = 1 / kBurstChance - 1;
      const double share = mean_burst / (mean_burst + mean_quiet);
      o.unforeseen_rate = static_cast<float>((1 - share) * 0.02 * base + share * (5 * base + 2));
      o.quiet_rate = static_cast<float>(0.02 * base);
    }
    int burst_began = -1;
    for (int a = 0; a < o.life(); ++a) {
      int weekday = (o.create_day + a) % 7;
      double weekly = weekday >= 5 ? 0.4 : 1.15;
      double lambda = 0;
      switch (pattern) {
        case kDecaying: lambda = 4 * base * std::exp(-a / tau) * weekly; break;
        case kHot: lambda = base * weekly; break;
        case kBursty:
          if (burst_left == 0 && u(rng) < kBurstChance) {
            burst_left = 1 + static_cast<int>(u(rng) * kBurstMaxDays);
            burst_began = a;
          }
          lambda = burst_left > 0 ? 5 * base + 2 : 0.02 * base;
          if (burst_left > 0) {
            o.burst_from[a] = static_cast<int16_t>(burst_began);
            --burst_left;
          }
          break;
        case kArchive: lambda = 0; break;
        case kIdleHeavy: lambda = (a + phase) % (idle + 7) >= idle ? 20 + 10 * base : 0; break;
      }
      uint32_t n = lambda > 0 ? std::poisson_distribution<uint32_t>(lambda)(rng) : 0;
      if (a == audit_day) ++n;  // an occasional restore or audit
      o.reads[a] = n;
      o.rate[a] = static_cast<float>(lambda);
    }
    t.objects.push_back(std::move(o));
  }
  return t;
}

// ------------------------------------------------------------ billing

namespace {

struct Prices {
  double put, get, retrieval_per_read, storage_day, min_days;
  int64_t latency;
};

Prices PricesOf(const ClassPrice& c, const ObjectTrace& o) {
  double gb = static_cast<double>(o.size) / pricing::kBytesPerGb;
  return {c.write_per_1000() / 1000,
          c.read_per_1000() / 1000,
          gb * c.retrieval_per_gb(),
          pricing::BillableGb(c, o.size) * c.storage_per_gb_month() / pricing::kDaysPerMonth,
          static_cast<double>(c.min_storage_days()),
          c.first_byte_latency_ms()};
}

}  // namespace

namespace {

// The storage of a managed class for one day, `idle` days after the last
// read (or the day it entered), its monitoring fee included.
double ManagedDay(const pricing::ManagedTiers& m, const ObjectTrace& o, int idle) {
  double gb = static_cast<double>(o.size) / pricing::kBytesPerGb;
  double day = gb * m.PriceAfterIdle(o.size, idle) / pricing::kDaysPerMonth;
  if (m.Monitored(o.size)) day += m.fee_per_object_month / pricing::kDaysPerMonth;
  return day;
}

}  // namespace

Bill BillSchedule(const Classes& classes, const ObjectTrace& o, const Schedule& s) {
  std::vector<Prices> p;
  for (const ClassPrice* c : classes.list) p.push_back(PricesOf(*c, o));
  Bill b;
  b.requests += p[s[0]].put;
  int seg_start = 0;
  int idle = 0;  // for managed classes: days since the last read or entry
  auto leave = [&](int cls, int day) {
    double len = day - seg_start;
    if (len < p[cls].min_days) b.early_deletion += (p[cls].min_days - len) * p[cls].storage_day;
  };
  for (int d = 0; d < o.life(); ++d) {
    int c = s[d];
    if (d > 0 && c != s[d - 1]) {
      int prev = s[d - 1];
      b.transitions += p[prev].get + p[prev].retrieval_per_read + p[c].put;
      if (!classes.egress_per_gb.empty()) {
        b.transitions += static_cast<double>(o.size) / pricing::kBytesPerGb * classes.egress_per_gb[prev][c];
      }
      leave(prev, d);
      seg_start = d;
      idle = 0;
      ++b.moves;
    }
    if (const auto* m = classes.managed[c]; m != nullptr) {
      if (o.reads[d] > 0) idle = 0;  // a read returns it to the first tier
      double day = ManagedDay(*m, o, idle);
      double fee = m->Monitored(o.size) ? m->fee_per_object_month / pricing::kDaysPerMonth : 0;
      b.storage += day - fee;
      b.monitoring += fee;
      ++idle;
    } else {
      b.storage += p[c].storage_day;
    }
    b.requests += o.reads[d] * p[c].get;
    b.retrieval += o.reads[d] * p[c].retrieval_per_read;
    if (p[c].latency > o.max_latency_ms) b.sla_violations += o.reads[d];
  }
  if (o.deleted()) leave(s.back(), o.life());
  b.total = b.storage + b.requests + b.retrieval + b.transitions + b.early_deletion + b.monitoring;
  return b;
}

Schedule AllIn(const Classes& classes, const std::string& storage_class, const ObjectTrace& o) {
  return Schedule(o.life(), classes.Index(storage_class));
}

Schedule Lifecycle(const Classes& classes, const ObjectTrace& o) {
  Schedule s(o.life());
  for (int d = 0; d < o.life(); ++d) {
    s[d] = classes.Index(d >= 90 ? "GLACIER" : d >= 30 ? "STANDARD_IA" : "STANDARD");
  }
  return s;
}

namespace {

// What was known of an object at the start of day `d` of its life: the
// statistics the classification service keeps, from the reads of days
// [0, d).
class History {
 public:
  explicit History(const ObjectTrace& o) : o_(o), prefix_(o.life() + 1, 0), last_read_(o.life() + 1, 0) {
    for (int d = 0; d < o.life(); ++d) {
      prefix_[d + 1] = prefix_[d] + o.reads[d];
      last_read_[d + 1] = o.reads[d] > 0 ? d : last_read_[d];  // the write counts as day 0
    }
  }
  int64_t ReadsIn(int from, int to) const { return prefix_[to] - prefix_[from]; }
  int LastRead(int d) const { return last_read_[d]; }
  pricing::AccessStats At(int d, int entered) const {
    auto window = [&](int days) { return ReadsIn(std::max(0, d - days), d); };
    return {.size = o_.size,
            .age_days = static_cast<double>(d),
            .days_in_class = static_cast<double>(d - entered),
            .reads_1d = window(1),
            .reads_7d = window(7),
            .reads_30d = window(30),
            .reads_90d = window(90),
            .days_since_last_read = static_cast<double>(d - last_read_[d])};
  }

 private:
  const ObjectTrace& o_;
  std::vector<int64_t> prefix_;
  std::vector<int> last_read_;
};

}  // namespace

Schedule CloudFlux(const pricing::PriceCatalog& catalog, const Classes& classes, const ObjectTrace& o,
                   const pricing::TierPolicy& base, bool perfect_forecast,
                   const std::vector<std::optional<pricing::Forecast>>* learned) {
  pricing::TierPolicy policy = base;
  policy.constraints.allowed_clouds.clear();  // the clouds of `classes`
  for (const ClassPrice* c : classes.list) policy.constraints.allowed_clouds.insert(c->cloud());
  policy.constraints.max_first_byte_latency_ms = o.max_latency_ms;
  History history(o);
  // The reads the object will actually get over the horizon (fewer days
  // when its life ends first), as a forecast with full confidence.
  const int horizon = static_cast<int>(policy.horizon_days);
  auto forecast = [&](int d) -> std::optional<pricing::Forecast> {
    if (learned != nullptr) {
      return d < static_cast<int>(learned->size()) ? (*learned)[d] : std::nullopt;
    }
    if (!perfect_forecast) return std::nullopt;
    int end = std::min(o.life(), d + horizon);
    return pricing::Forecast{.reads_next_7d = 7.0 * static_cast<double>(history.ReadsIn(d, end)) / (end - d),
                             .confidence = 1};
  };
  auto index_of = [&](const ClassPrice* cls) {
    for (size_t i = 0; i < classes.list.size(); ++i) {
      if (classes.list[i] == cls) return static_cast<int>(i);
    }
    return classes.Index(AWS, "STANDARD");
  };
  Schedule s(o.life());
  // Where to write it: nothing is known of the object but its size.
  pricing::AccessStats fresh = history.At(0, 0);
  int current = index_of(pricing::Decide(catalog, fresh, {}, policy, forecast(0)).target);
  int entered = 0;
  for (int d = 0; d < o.life(); ++d) {
    if (d > 0) {
      pricing::AccessStats stats = history.At(d, entered);
      pricing::Placement here{classes.list[current], static_cast<double>(d - entered),
                              static_cast<double>(d - std::max(entered, history.LastRead(d)))};
      auto decision = pricing::Decide(catalog, stats, here, policy, forecast(d));
      if (decision.move) {
        current = index_of(decision.target);
        entered = d;
      }
    }
    s[d] = current;
  }
  return s;
}

Schedule Optimum(const Classes& classes, const ObjectTrace& o, double* cost) {
  const int L = o.life();
  std::vector<int> eligible;
  std::vector<Prices> p;
  for (size_t i = 0; i < classes.list.size(); ++i) {
    p.push_back(PricesOf(*classes.list[i], o));
    if (p.back().latency <= o.max_latency_ms) eligible.push_back(static_cast<int>(i));
  }
  const int C = static_cast<int>(classes.list.size());
  // P[c][d]: the day costs of days [0, d) in class c.
  std::vector<std::vector<double>> P(C, std::vector<double>(L + 1, 0));
  for (int c : eligible) {
    for (int d = 0; d < L; ++d) {
      P[c][d + 1] = P[c][d] + p[c].storage_day + o.reads[d] * (p[c].get + p[c].retrieval_per_read);
    }
  }
  // G[s][c]: days [0, s) paid and class c entered at s. F[e][c]: days [0, e)
  // paid with the last segment in c ending at e (early charge included).
  std::vector<std::vector<double>> G(L + 1, std::vector<double>(C, kInf)), F = G;
  std::vector<std::vector<int>> g_from(L + 1, std::vector<int>(C, -1)), f_start = g_from;
  for (int c : eligible) G[0][c] = p[c].put;
  std::vector<double> long_min(C, kInf), open_min(C, kInf);
  std::vector<int> long_arg(C, -1), open_arg(C, -1);
  // Managed classes: the day's price depends on the days since the segment
  // started or the object was last read, so their segments are summed
  // directly (acc[c][s] = the cost of days [s, e) in c).
  std::vector<int> last_read(L, -1);
  for (int d = 0; d < L; ++d) last_read[d] = o.reads[d] > 0 ? d : (d > 0 ? last_read[d - 1] : -1);
  std::vector<std::vector<double>> acc(C);
  for (int c : eligible) {
    if (classes.managed[c] != nullptr) acc[c].assign(L + 1, 0);
  }
  for (int e = 1; e <= L; ++e) {
    for (int c : eligible) {
      if (const auto* managed = classes.managed[c]; managed != nullptr) {
        const int d = e - 1;
        double best = kInf;
        int arg = -1;
        for (int s = 0; s < e; ++s) {
          acc[c][s] += ManagedDay(*managed, o, d - std::max(s, last_read[d])) + o.reads[d] * p[c].get;
          if (G[s][c] + acc[c][s] < best) {
            best = G[s][c] + acc[c][s];
            arg = s;
          }
        }
        F[e][c] = best;
        f_start[e][c] = arg;
        continue;
      }
      int m = std::max(1, static_cast<int>(p[c].min_days));
      // Segments of at least the minimum duration: no early charge.
      if (int s = e - m; s >= 0 && G[s][c] - P[c][s] < long_min[c]) {
        long_min[c] = G[s][c] - P[c][s];
        long_arg[c] = s;
      }
      if (G[e - 1][c] - P[c][e - 1] < open_min[c]) {
        open_min[c] = G[e - 1][c] - P[c][e - 1];
        open_arg[c] = e - 1;
      }
      double best = long_min[c] + P[c][e];
      int arg = long_arg[c];
      for (int s = std::max(0, e - static_cast<int>(p[c].min_days) + 1); s < e; ++s) {
        double v = G[s][c] + P[c][e] - P[c][s] + (p[c].min_days - (e - s)) * p[c].storage_day;
        if (v < best) {
          best = v;
          arg = s;
        }
      }
      F[e][c] = best;
      f_start[e][c] = arg;
    }
    if (e == L) break;
    for (int c : eligible) {
      for (int prev : eligible) {
        if (prev == c || F[e][prev] == kInf) continue;
        double v = F[e][prev] + p[prev].get + p[prev].retrieval_per_read + p[c].put;
        if (v < G[e][c]) {
          G[e][c] = v;
          g_from[e][c] = prev;
        }
      }
    }
  }
  // The end: a deleted object pays its last early charge, one still there
  // does not.
  double best = kInf;
  int cls = -1, start = -1;
  for (int c : eligible) {
    bool open = !o.deleted() && classes.managed[c] == nullptr;
    double v = open ? open_min[c] + P[c][L] : F[L][c];
    if (v < best) {
      best = v;
      cls = c;
      start = open ? open_arg[c] : f_start[L][c];
    }
  }
  Schedule s(L, cls);
  int e = L;
  while (start > 0) {
    for (int d = start; d < e; ++d) s[d] = cls;
    int prev = g_from[start][cls];
    e = start;
    cls = prev;
    start = f_start[e][cls];
  }
  for (int d = 0; d < e; ++d) s[d] = cls;
  if (cost != nullptr) *cost = best;
  return s;
}

const Bill& Report::Of(const std::string& policy) const {
  for (const auto& [name, bill] : bills) {
    if (name == policy) return bill;
  }
  static const Bill kNone;
  return kNone;
}

namespace {

// As forecasts of full confidence, each day's mean of `rate_of(d, t)` over
// the horizon's days t from day d (fewer when the object's life ends first).
template <typename RateOf>
std::vector<std::optional<pricing::Forecast>> MeanRateForecasts(const ObjectTrace& o, int horizon_days,
                                                                RateOf rate_of) {
  std::vector<std::optional<pricing::Forecast>> out(o.rate.size());
  for (size_t d = 0; d < o.rate.size(); ++d) {
    const size_t end = std::min(o.rate.size(), d + static_cast<size_t>(horizon_days));
    double sum = 0;
    for (size_t t = d; t < end; ++t) sum += rate_of(static_cast<int>(d), static_cast<int>(t));
    out[d] = pricing::Forecast{.reads_next_7d = 7.0 * sum / static_cast<double>(end - d), .confidence = 1};
  }
  return out;
}

}  // namespace

std::vector<std::optional<pricing::Forecast>> RateForecasts(const ObjectTrace& o, int horizon_days) {
  return MeanRateForecasts(o, horizon_days, [&](int, int day) { return static_cast<double>(o.rate[day]); });
}

double KnowableRate(const ObjectTrace& o, int origin, int day, bool quiet_unless_begun) {
  if (o.burst_from.empty()) return o.rate[day];
  const int began = o.burst_from[day];
  if (began >= 0 && began < origin) return o.rate[day];
  return quiet_unless_begun ? o.quiet_rate : o.unforeseen_rate;
}

std::vector<std::optional<pricing::Forecast>> KnowableRateForecasts(const ObjectTrace& o, int horizon_days) {
  return MeanRateForecasts(o, horizon_days, [&](int origin, int day) { return KnowableRate(o, origin, day); });
}

Report Simulate(const pricing::PriceCatalog& catalog, const Trace& trace, const pricing::TierPolicy& policy,
                bool perfect_forecast, const ForecastTable* learned) {
  Classes classes = AwsClasses(catalog);
  Classes gcs = CloudClasses(catalog, cloudflux::common::v1::CLOUD_PROVIDER_GCP);
  Classes azure = CloudClasses(catalog, cloudflux::common::v1::CLOUD_PROVIDER_AZURE);
  Classes all = AllClasses(catalog);
  Report r;
  r.trace = trace.name;
  r.objects = static_cast<int>(trace.objects.size());
  Bill standard, it, autoclass, lifecycle, cloudflux, foreseen, rate_oracle, knowable, learned_bill, optimum;
  // The rate rows come with the perfect forecast's, on generated traces.
  const bool rates = perfect_forecast && std::all_of(trace.objects.begin(), trace.objects.end(), [](const auto& o) {
                       return o.rate.size() == o.reads.size();
                     });
  Bill optimum_gcp, optimum_azure, optimum_best, any_cloud;
  // The perfect forecast decides: the bound on what forecasts can add. The
  // learned one plays the role `policy` gives it, as in the product.
  pricing::TierPolicy deciding = policy;
  deciding.forecast_role = pricing::TierPolicy::ForecastRole::kDecides;
  for (size_t i = 0; i < trace.objects.size(); ++i) {
    const ObjectTrace& o = trace.objects[i];
    if (learned != nullptr && i < learned->size()) {
      learned_bill += BillSchedule(classes, o, CloudFlux(catalog, classes, o, policy, false, &(*learned)[i]));
    }
    standard += BillSchedule(classes, o, AllIn(classes, "STANDARD", o));
    it += BillSchedule(classes, o, AllIn(classes, "INTELLIGENT_TIERING", o));
    autoclass += BillSchedule(gcs, o, AllIn(gcs, "AUTOCLASS", o));
    lifecycle += BillSchedule(classes, o, Lifecycle(classes, o));
    cloudflux += BillSchedule(classes, o, CloudFlux(catalog, classes, o, policy));
    if (perfect_forecast) foreseen += BillSchedule(classes, o, CloudFlux(catalog, classes, o, deciding, true));
    if (rates) {
      auto expected = RateForecasts(o, static_cast<int>(deciding.horizon_days));
      rate_oracle += BillSchedule(classes, o, CloudFlux(catalog, classes, o, deciding, false, &expected));
      auto known = KnowableRateForecasts(o, static_cast<int>(deciding.horizon_days));
      knowable += BillSchedule(classes, o, CloudFlux(catalog, classes, o, deciding, false, &known));
    }
    Bill per_cloud[3] = {BillSchedule(classes, o, Optimum(classes, o, nullptr)),
                         BillSchedule(gcs, o, Optimum(gcs, o, nullptr)),
                         BillSchedule(azure, o, Optimum(azure, o, nullptr))};
    optimum += per_cloud[0];
    optimum_gcp += per_cloud[1];
    optimum_azure += per_cloud[2];
    optimum_best += *std::min_element(std::begin(per_cloud), std::end(per_cloud),
                                      [](const Bill& a, const Bill& b) { return a.total < b.total; });
    any_cloud += BillSchedule(all, o, CloudFlux(catalog, all, o, policy));
  }
  r.bills = {{"all-standard", standard},   {"s3-intelligent-tiering", it},
             {"gcs-autoclass", autoclass}, {"lifecycle-30-90", lifecycle},
             {"cloudflux", cloudflux}};
  if (learned != nullptr) r.bills.emplace_back("cloudflux+learned-forecast", learned_bill);
  if (rates) {
    r.bills.emplace_back("cloudflux+rate-oracle", rate_oracle);
    r.bills.emplace_back("cloudflux+knowable-rate", knowable);
  }
  if (perfect_forecast) r.bills.emplace_back("cloudflux+perfect-forecast", foreseen);
  r.bills.emplace_back("optimum", optimum);
  r.bills.emplace_back("optimum-gcp", optimum_gcp);
  r.bills.emplace_back("optimum-azure", optimum_azure);
  r.bills.emplace_back("optimum-best-cloud", optimum_best);
  r.bills.emplace_back("cloudflux-any-cloud", any_cloud);
  return r;
}

}  // namespace cloudflux::sim
