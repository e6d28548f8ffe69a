#pragma once
// Paces streamed copies. A copy alone is held to its own rate. Copies that
// name the same pace group in this process share the sum of their rates
// (each member counts at the newest member's rate, so a changed share
// reaches the copies already running), divided among the members waiting
// to send: a copy held up by its source or target leaves its bandwidth to
// the others instead of losing it.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cloudflux::storage {

class CopyPacers {
 public:
  // How far a schedule that fell behind may catch up at once: a copy that
  // stalled does not bank more than this of its rate.
  static constexpr absl::Duration kCredit = absl::Milliseconds(250);
  // How long a member that left still counts, unless a new member takes its
  // place first: the gap between one copy's end and the next one's start
  // keeps the group's rate.
  static constexpr absl::Duration kLinger = absl::Seconds(1);

  class Member {
   public:
    ~Member() { Leave(absl::Now()); }
    Member(const Member&) = delete;
    Member& operator=(const Member&) = delete;
    // Adds `bytes` (just sent) to what this member owes the schedule.
    void Reserve(int64_t bytes, absl::Time now);
    // How long to wait before sending more: until what this member owes is
    // paid off at its part of the group's rate (the rate divided among the
    // members that owe), as things stand now. Zero when it owes nothing.
    absl::Duration Wait(absl::Time now);
    // Leaves the group at `now` (once; the destructor leaves at the time);
    // nothing is to be asked of the member after.
    void Leave(absl::Time now);

   private:
    friend class CopyPacers;
    struct Schedule;
    Member(CopyPacers* owner, std::string group, std::shared_ptr<Schedule> schedule, uint64_t id)
        : owner_(owner), group_(std::move(group)), schedule_(std::move(schedule)), id_(id) {}
    CopyPacers* owner_;
    std::string group_;
    std::shared_ptr<Schedule> schedule_;
    uint64_t id_;
    bool left_ = false;
  };

  // A copy sending at most `bytes_per_second` (> 0): alone when `group` is
  // empty, else one of the group's members while the handle lives.
  std::unique_ptr<Member> Join(const std::string& group, int64_t bytes_per_second, absl::Time now = absl::Now());

  // Members of `group` in this process (0 when none).
  int Members(const std::string& group);

 private:
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<Member::Schedule>> groups_;
};

}  // namespace cloudflux::storage
