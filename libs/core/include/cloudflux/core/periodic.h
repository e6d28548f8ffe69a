#pragma once
// PeriodicTask: runs a function on its own thread every `interval`, or at
// once when woken, until stopped. Used for background flushes and sweeps.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/time/time.h"

namespace cloudflux::core {

class PeriodicTask {
 public:
  PeriodicTask(absl::Duration interval, std::function<void()> fn);
  ~PeriodicTask();  // Stop()
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // Runs the function soon instead of at the end of the interval.
  void Wake();
  // Lets a running call finish, then runs the function once more if
  // `final_run` (a last flush), and joins. Idempotent.
  void Stop(bool final_run = false);

 private:
  void Loop();

  absl::Duration interval_;
  std::function<void()> fn_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false, stopping_ = false, stopped_ = false;
  std::thread thread_;
};

}  // namespace cloudflux::core
