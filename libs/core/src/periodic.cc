#include "cloudflux/core/periodic.h"

#include <chrono>

namespace cloudflux::core {

PeriodicTask::PeriodicTask(absl::Duration interval, std::function<void()> fn)
    : interval_(interval), fn_(std::move(fn)), thread_([this] { Loop(); }) {}

PeriodicTask::~PeriodicTask() { Stop(); }

void PeriodicTask::Wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

void PeriodicTask::Stop(bool final_run) {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
  if (final_run) fn_();
}

void PeriodicTask::Loop() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait_for(lock, absl::ToChronoNanoseconds(interval_), [this] { return woken_ || stopping_; });
    if (stopping_) return;
    woken_ = false;
    lock.unlock();
    fn_();
    lock.lock();
  }
}

}  // namespace cloudflux::core
