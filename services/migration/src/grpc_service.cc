#include "grpc_service.h"

#include "cloudflux/server/grpc_status.h"

namespace cloudflux::migration {

namespace v1 = cloudflux::migration::v1;

namespace {

constexpr absl::Duration kDefaultInterval = absl::Seconds(1);
constexpr absl::Duration kMinInterval = absl::Milliseconds(100);
constexpr absl::Duration kMaxInterval = absl::Seconds(60);

bool Ended(v1::MigrationState state) {
  return state != v1::MIGRATION_STATE_RUNNING && state != v1::MIGRATION_STATE_PAUSED;
}

}  // namespace

WatchReactor::WatchReactor(MigrationCore& core, server::BlockingExecutor& executor,
                           const v1::WatchMigrationRequest& request)
    : core_(core), executor_(executor), id_(request.id()), interval_(kDefaultInterval) {
  if (request.has_interval()) {
    const auto& d = request.interval();
    if (d.seconds() < 0 || d.seconds() > 3600 || d.nanos() < 0 || d.nanos() > 999999999) {
      End(server::ToGrpcStatus(absl::InvalidArgumentError("interval must be between 100ms and 60s")));
      return;
    }
    interval_ = absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
    if (interval_ < kMinInterval || interval_ > kMaxInterval) {
      End(server::ToGrpcStatus(absl::InvalidArgumentError("interval must be between 100ms and 60s")));
      return;
    }
  }
  Poll();
}

void WatchReactor::Poll() {
  executor_.Run([this] {
    absl::StatusOr<v1::MigrationUpdate> update = core_.WatchUpdate(id_, &cursor_);
    if (!update.ok()) return End(server::ToGrpcStatus(update.status()));
    const absl::Time now = absl::Now();
    const int64_t bytes = update->migration().progress().bytes_done();
    if (last_bytes_ >= 0 && now > last_at_) {
      update->set_recent_bytes_per_second(static_cast<double>(bytes - last_bytes_) / absl::ToDoubleSeconds(now - last_at_));
    }
    last_bytes_ = bytes;
    last_at_ = now;
    const bool ended = Ended(update->migration().state());
    std::lock_guard lock(mu_);
    if (cancelled_ || ended_) {
      if (!ended_) {
        ended_ = true;
        Finish(grpc::Status::CANCELLED);
      }
      return;
    }
    update_ = std::move(*update);
    if (ended) {
      ended_ = true;
      StartWriteAndFinish(&update_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      StartWrite(&update_);
    }
  });
}

void WatchReactor::OnWriteDone(bool ok) {
  std::lock_guard lock(mu_);
  if (ended_) return;
  if (!ok || cancelled_) {
    ended_ = true;
    Finish(grpc::Status::CANCELLED);
    return;
  }
  alarm_.Set(absl::ToChronoTime(absl::Now() + interval_), [this](bool fired) {
    if (fired) return Poll();
    std::lock_guard lock(mu_);
    if (!ended_) {
      ended_ = true;
      Finish(grpc::Status::CANCELLED);
    }
  });
}

void WatchReactor::OnCancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  alarm_.Cancel();  // a pending alarm fires at once, not fired
}

void WatchReactor::End(const grpc::Status& status) {
  std::lock_guard lock(mu_);
  if (ended_) return;
  ended_ = true;
  Finish(status);
}

}  // namespace cloudflux::migration
