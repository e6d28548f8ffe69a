// Test helper: runs an OutboxRelay in its own process so that a test can kill
// it with SIGKILL at the worst moment (after Kafka acknowledged a batch, before
// the batch is marked sent).
//   outbox_relay_process PG_URL SCHEMA BROKERS PAUSE_AFTER_SEND_MS
#include <iostream>
#include <string>

#include "absl/time/clock.h"
#include "cloudflux/events/outbox.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: outbox_relay_process PG_URL SCHEMA BROKERS PAUSE_AFTER_SEND_MS\n";
    return 2;
  }
  cloudflux::db::PoolOptions pool_options;
  pool_options.url = argv[1];
  auto pool = cloudflux::db::Pool::Create(pool_options);
  auto producer = cloudflux::events::Producer::Create({.brokers = argv[3]});
  if (!pool.ok() || !producer.ok()) return 1;
  cloudflux::events::RelayOptions options;
  options.batch_size = 100;
  options.lease = absl::Seconds(2);  // a killed relay's lease soon runs out
  int pause_ms = std::stoi(argv[4]);
  options.after_send = [pause_ms](int n) {
    std::cout << "SENT " << n << std::endl;
    absl::SleepFor(absl::Milliseconds(pause_ms));
  };
  cloudflux::events::OutboxRelay relay(**pool, argv[2], **producer, options);
  while (true) {
    auto n = relay.PublishBatch();
    if (!n.ok()) {
      std::cout << "ERROR " << n.status() << std::endl;
      absl::SleepFor(absl::Milliseconds(100));
    } else if (*n == 0) {
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
}
