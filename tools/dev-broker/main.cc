// cloudflux-dev-broker: a Kafka-protocol broker for development and tests,
// backed by librdkafka's in-memory mock cluster. Topics are created on first
// use (producers and consumers may auto-create them). Nothing is persisted;
// production points at a real Kafka cluster instead.
//
//   cloudflux-dev-broker [--brokers=1] [--address_file=PATH] [--topics=a,b]
//                        [--partitions=4]
//
// Prints the bootstrap address on stdout (and writes it to --address-file,
// atomically) once the brokers accept connections; runs until SIGTERM/SIGINT.

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "cloudflux/core/config.h"
#include "cloudflux/core/log.h"
#include "cloudflux/server/shutdown.h"

ABSL_FLAG(int32_t, brokers, 1, "Number of mock brokers in the cluster.");
ABSL_FLAG(std::string, address_file, "", "Write the bootstrap address to this file once ready.");
ABSL_FLAG(std::string, topics, "", "Comma-separated topics to create at start.");
ABSL_FLAG(int32_t, partitions, 4, "Partitions of the topics created at start.");

int main(int argc, char** argv) {
  cloudflux::server::BlockShutdownSignals();
  cloudflux::core::ParseFlags(argc, argv, "Runs an in-memory Kafka-protocol broker for dev/tests.");
  cloudflux::core::InitLogging("dev-broker");
  cloudflux::core::ConfigValidator()
      .Require(absl::GetFlag(FLAGS_brokers) >= 1 && absl::GetFlag(FLAGS_brokers) <= 9, "brokers",
               "must be between 1 and 9")
      .Require(absl::GetFlag(FLAGS_partitions) >= 1, "partitions", "must be at least 1")
      .ExitOnError();

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (rk == nullptr) {
    cloudflux::core::LogError("cannot create rdkafka handle", {{"error", err}});
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, absl::GetFlag(FLAGS_brokers));
  if (cluster == nullptr) {
    cloudflux::core::LogError("cannot create mock cluster");
    return 1;
  }
  std::string topics = absl::GetFlag(FLAGS_topics);
  for (absl::string_view topic : absl::StrSplit(topics, ',', absl::SkipEmpty())) {
    std::string name(topic);
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(
        cluster, name.c_str(), absl::GetFlag(FLAGS_partitions),
        std::min(3, absl::GetFlag(FLAGS_brokers)));
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      cloudflux::core::LogError("cannot create topic", {{"topic", name}, {"error", rd_kafka_err2str(e)}});
      return 1;
    }
  }
  std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
  std::string path = absl::GetFlag(FLAGS_address_file);
  if (!path.empty()) {
    std::string tmp = path + ".tmp";
    std::ofstream(tmp) << bootstrap << "\n";
    std::filesystem::rename(tmp, path);
  }
  std::cout << bootstrap << std::endl;
  cloudflux::core::LogInfo("dev broker ready", {{"bootstrap", bootstrap}});

  cloudflux::server::WaitForShutdownSignal();
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  if (!path.empty()) std::filesystem::remove(path);
  cloudflux::core::LogInfo("dev broker stopped");
  return 0;
}
