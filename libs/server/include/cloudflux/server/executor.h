#pragma once
// A fixed pool of threads for handler work that blocks (database, Redis,
// other services). gRPC's callback threads are few and must not block:
// handlers that do I/O hand their work here with FinishUnaryOn, so that as
// many calls proceed at once as the pool has threads. Thread-safe. The
// destructor runs what is queued, then joins.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "cloudflux/server/handler.h"

namespace cloudflux::server {

class BlockingExecutor {
 public:
  explicit BlockingExecutor(int threads);
  ~BlockingExecutor();
  BlockingExecutor(const BlockingExecutor&) = delete;
  BlockingExecutor& operator=(const BlockingExecutor&) = delete;

  void Run(std::function<void()> task);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// Runs `fn` on `executor` and finishes `reactor` there with its result (for
// handlers that took the reactor already, to try a non-blocking path first).
template <class Response, class Fn>
grpc::ServerUnaryReactor* FinishOn(BlockingExecutor& executor, grpc::ServerUnaryReactor* reactor,
                                   Response* response, Fn&& fn) {
  executor.Run([reactor, response, fn = std::forward<Fn>(fn)]() mutable {
    FinishWith(reactor, response, fn());
  });
  return reactor;
}

// Like FinishUnary, but `fn` runs on `executor` and the call finishes there.
template <class Response, class Fn>
grpc::ServerUnaryReactor* FinishUnaryOn(BlockingExecutor& executor,
                                        grpc::CallbackServerContext* context, Response* response,
                                        Fn&& fn) {
  return FinishOn(executor, context->DefaultReactor(), response, std::forward<Fn>(fn));
}

}  // namespace cloudflux::server
