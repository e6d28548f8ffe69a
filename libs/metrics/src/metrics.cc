#include "cloudflux/metrics/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"

namespace cloudflux::metrics {
namespace {

prometheus::MetricFamily Gauge(std::string name, std::string help, double value,
                               prometheus::MetricType type = prometheus::MetricType::Gauge) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

class ProcessCollector final : public prometheus::Collectable {
 public:
  ProcessCollector() : start_time_(ReadStartTime()) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    std::vector<std::string> stat = ReadStatFields();
    if (stat.size() > 23) {
      double utime = 0, stime = 0, threads = 0, vsize = 0, rss = 0;
      (void)absl::SimpleAtod(stat[13], &utime);
      (void)absl::SimpleAtod(stat[14], &stime);
      (void)absl::SimpleAtod(stat[19], &threads);
      (void)absl::SimpleAtod(stat[22], &vsize);
      (void)absl::SimpleAtod(stat[23], &rss);
      out.push_back(Gauge("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                          (utime + stime) / static_cast<double>(ticks),
                          prometheus::MetricType::Counter));
      out.push_back(Gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                          rss * static_cast<double>(page)));
      out.push_back(Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", vsize));
      out.push_back(Gauge("process_threads", "Number of OS threads in the process.", threads));
    }
    out.push_back(Gauge("process_open_fds", "Number of open file descriptors.", CountOpenFds()));
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
      out.push_back(Gauge("process_max_fds", "Maximum number of open file descriptors.",
                          static_cast<double>(lim.rlim_cur)));
    }
    out.push_back(Gauge("process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.", start_time_));
    return out;
  }

 private:
  // Fields of /proc/self/stat after the "(comm)" field, renumbered so that
  // index i is field i+1 of proc(5) (fields 1 and 2 are pid and comm).
  static std::vector<std::string> ReadStatFields() {
    std::ifstream in("/proc/self/stat");
    std::string line;
    std::getline(in, line);
    auto close = line.rfind(')');
    if (close == std::string::npos) return {};
    std::vector<std::string> fields = {"pid", "comm"};
    for (auto part : absl::StrSplit(line.substr(close + 2), ' ')) fields.emplace_back(part);
    return fields;
  }

  static double ReadStartTime() {
    std::vector<std::string> stat = ReadStatFields();
    double boot = 0, start_ticks = 0;
    std::ifstream in("/proc/stat");
    std::string key;
    while (in >> key) {
      if (key == "btime") {
        in >> boot;
        break;
      }
    }
    if (stat.size() > 21) (void)absl::SimpleAtod(stat[21], &start_ticks);
    return boot + start_ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  }

  static double CountOpenFds() {
    DIR* dir = opendir("/proc/self/fd");
    if (dir == nullptr) return 0;
    double n = 0;
    while (readdir(dir) != nullptr) ++n;
    closedir(dir);
    return n - 3;  // ".", ".." and the directory's own fd
  }

  double start_time_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& bind_address) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->registry_ = std::make_shared<prometheus::Registry>();
  try {
    server->exposer_ = std::make_unique<prometheus::Exposer>(bind_address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", bind_address, ": ", e.what()));
  }
  server->exposer_->RegisterCollectable(server->registry_);
  server->process_collector_ = MakeProcessCollector();
  server->exposer_->RegisterCollectable(server->process_collector_);
  auto ports = server->exposer_->GetListeningPorts();
  server->port_ = ports.empty() ? 0 : ports.front();
  return server;
}

MetricsServer::~MetricsServer() = default;

std::shared_ptr<prometheus::Collectable> MakeProcessCollector() {
  return std::make_shared<ProcessCollector>();
}

std::string Serialize(prometheus::Registry& registry) {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry.Collect());
}

}  // namespace cloudflux::metrics
