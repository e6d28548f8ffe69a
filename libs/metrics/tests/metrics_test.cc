#include <gtest/gtest.h>
#include <prometheus/counter.h>

#include "absl/strings/match.h"
#include "cloudflux/metrics/metrics.h"
#include "cloudflux/testing/testing.h"

namespace cloudflux::metrics {
namespace {

TEST(MetricsServer, ServesRegistryAndProcessMetricsOverHttp) {
  auto server = MetricsServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  prometheus::BuildCounter()
      .Name("cloudflux_test_events_total")
      .Help("test")
      .Register((*server)->registry())
      .Add({{"kind", "a"}})
      .Increment(3);
  auto body = testing::HttpGet("http://127.0.0.1:" + std::to_string((*server)->port()) + "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_TRUE(absl::StrContains(*body, "cloudflux_test_events_total{kind=\"a\"} 3"));
  EXPECT_TRUE(absl::StrContains(*body, "process_resident_memory_bytes"));
  EXPECT_TRUE(absl::StrContains(*body, "process_cpu_seconds_total"));
  EXPECT_TRUE(absl::StrContains(*body, "process_open_fds"));
  EXPECT_TRUE(absl::StrContains(*body, "process_start_time_seconds"));
}

TEST(MetricsServer, ProcessCollectorReportsPlausibleValues) {
  auto families = MakeProcessCollector()->Collect();
  bool saw_rss = false;
  for (const auto& f : families) {
    if (f.name == "process_resident_memory_bytes") {
      saw_rss = true;
      EXPECT_GT(f.metric.at(0).gauge.value, 1 << 20);
    }
    if (f.name == "process_start_time_seconds") {
      EXPECT_GT(f.metric.at(0).gauge.value, 1.6e9);
    }
  }
  EXPECT_TRUE(saw_rss);
}

TEST(MetricsServer, BusyPortIsAnError) {
  auto first = MetricsServer::Start("127.0.0.1:0");
  ASSERT_TRUE(first.ok());
  auto second = MetricsServer::Start("127.0.0.1:" + std::to_string((*first)->port()));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace cloudflux::metrics
