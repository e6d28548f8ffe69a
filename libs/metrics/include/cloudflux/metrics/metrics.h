#pragma once
// Prometheus metrics for one process: a registry, an HTTP exposer serving
// /metrics on its own port, and the standard process_* metrics.
// prometheus-cpp types are this library's public vocabulary on purpose:
// callers add their own families to registry().

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}

namespace cloudflux::metrics {

// Owns the registry and the exposer. Thread-safe (prometheus-cpp is).
// Destroying it stops the HTTP endpoint.
class MetricsServer {
 public:
  // bind_address "host:port"; port 0 picks a free port (see port()).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& bind_address);
  ~MetricsServer();

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::shared_ptr<prometheus::Registry> registry_;
  // The exposer keeps only weak references to its collectables.
  std::shared_ptr<prometheus::Collectable> process_collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

// process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_start_time_seconds, process_threads — read from /proc on each scrape.
std::shared_ptr<prometheus::Collectable> MakeProcessCollector();

// Text exposition of a registry (what /metrics serves), for tests and tools.
std::string Serialize(prometheus::Registry& registry);

}  // namespace cloudflux::metrics
