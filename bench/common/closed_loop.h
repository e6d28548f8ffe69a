#pragma once
// A closed-loop load generator for gRPC callback clients: `concurrency`
// calls in flight, each re-issued as soon as it completes, counted for
// `seconds` after one second of warm-up. `issue(done)` starts one call and
// arranges for done(status) to be called when it finishes; it must be
// callable from several threads at once.

#include <grpcpp/support/status.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <latch>
#include <thread>

namespace cloudflux::bench {

struct LoadResult {
  double calls_per_second = 0;
  int64_t errors = 0;
  grpc::Status first_error;
};

using IssueFn = std::function<void(std::function<void(const grpc::Status&)> done)>;

inline LoadResult RunClosedLoop(const IssueFn& issue, int concurrency, int seconds) {
  struct State {
    std::atomic<int64_t> ok{0}, errors{0};
    std::atomic<bool> counting{false}, stop{false};
    std::latch done;
    std::mutex mu;
    grpc::Status first_error;
    explicit State(int n) : done(n) {}
  } state(concurrency);
  std::function<void()> start_one;
  start_one = [&] {
    issue([&](const grpc::Status& s) {
      if (s.ok()) {
        if (state.counting.load(std::memory_order_relaxed)) state.ok.fetch_add(1);
      } else {
        if (state.errors.fetch_add(1) == 0) {
          std::lock_guard lock(state.mu);
          state.first_error = s;
        }
      }
      if (state.stop.load()) {
        state.done.count_down();
      } else {
        start_one();
      }
    });
  };
  for (int i = 0; i < concurrency; ++i) start_one();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  state.counting = true;
  auto begin = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  state.counting = false;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  int64_t n = state.ok.load();
  state.stop = true;
  state.done.wait();
  return {static_cast<double>(n) / elapsed, state.errors.load(), state.first_error};
}

}  // namespace cloudflux::bench
