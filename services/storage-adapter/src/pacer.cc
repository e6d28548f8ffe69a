#include "pacer.h"

#include <algorithm>
#include <vector>

namespace cloudflux::storage {

// What each member owes (bytes sent, not yet paid off by the schedule's
// time). Time pays the group's rate, shared equally by the members that
// owe (one that owes less than its part passes the rest on); a schedule
// whose members owe nothing banks at most kCredit of its rate. Guarded by
// mu.
struct CopyPacers::Member::Schedule {
  std::mutex mu;
  int members = 0;
  uint64_t next_id = 0;
  int64_t share = 0;  // bytes/s per member, the newest member's
  std::map<uint64_t, double> owed;
  std::vector<absl::Time> lingering;  // until when members that left still count
  double bank = 0;
  absl::Time last = absl::InfinitePast();  // when the debts were brought up to date

  double Rate() const {
    return static_cast<double>(std::max<int64_t>(1, share)) *
           std::max<double>(1, members + static_cast<double>(lingering.size()));
  }
  void Advance(absl::Time now) {
    if (last == absl::InfinitePast()) last = now;  // a new schedule: no credit
    if (now <= last) return;
    // Counted through the interval if they still counted at its start.
    std::erase_if(lingering, [&](absl::Time until) { return until <= last; });
    double budget = Rate() * absl::ToDoubleSeconds(now - last) + bank;
    last = now;
    while (budget > 0 && !owed.empty()) {
      const double part = budget / static_cast<double>(owed.size());
      bool settled = false;
      for (auto it = owed.begin(); it != owed.end();) {
        if (it->second <= part) {
          budget -= it->second;
          it = owed.erase(it);
          settled = true;
        } else {
          ++it;
        }
      }
      if (!settled) {
        for (auto& [id, debt] : owed) debt -= part;
        budget = 0;
      }
    }
    bank = std::min(budget, Rate() * absl::ToDoubleSeconds(kCredit));
  }
};

std::unique_ptr<CopyPacers::Member> CopyPacers::Join(const std::string& group, int64_t bytes_per_second,
                                                     absl::Time now) {
  std::shared_ptr<Member::Schedule> schedule;
  uint64_t id = 0;
  if (!group.empty()) {
    std::lock_guard lock(mu_);
    schedule = groups_[group].lock();
    if (schedule == nullptr) {
      schedule = std::make_shared<Member::Schedule>();
      groups_[group] = schedule;
    }
  } else {
    schedule = std::make_shared<Member::Schedule>();
  }
  {
    std::lock_guard lock(schedule->mu);
    schedule->Advance(now);  // the time so far at the rate before this member
    ++schedule->members;
    if (!schedule->lingering.empty()) schedule->lingering.pop_back();  // takes a leaver's place
    schedule->share = bytes_per_second;
    id = schedule->next_id++;
  }
  return std::unique_ptr<Member>(new Member(this, group, std::move(schedule), id));
}

int CopyPacers::Members(const std::string& group) {
  std::lock_guard lock(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end()) return 0;
  auto schedule = it->second.lock();
  if (schedule == nullptr) return 0;
  std::lock_guard members(schedule->mu);
  return schedule->members;
}

void CopyPacers::Member::Leave(absl::Time now) {
  if (left_) return;
  left_ = true;
  {
    std::lock_guard lock(schedule_->mu);
    schedule_->Advance(now);
    --schedule_->members;
    schedule_->owed.erase(id_);
    if (!group_.empty()) schedule_->lingering.push_back(now + kLinger);
  }
  if (group_.empty()) return;
  std::lock_guard lock(owner_->mu_);
  schedule_.reset();
  auto it = owner_->groups_.find(group_);
  if (it != owner_->groups_.end() && it->second.expired()) owner_->groups_.erase(it);
}

void CopyPacers::Member::Reserve(int64_t bytes, absl::Time now) {
  std::lock_guard lock(schedule_->mu);
  schedule_->Advance(now);
  double debt = static_cast<double>(bytes);
  const double banked = std::min(schedule_->bank, debt);
  schedule_->bank -= banked;
  debt -= banked;
  if (debt > 0) schedule_->owed[id_] += debt;
}

absl::Duration CopyPacers::Member::Wait(absl::Time now) {
  std::lock_guard lock(schedule_->mu);
  schedule_->Advance(now);
  auto it = schedule_->owed.find(id_);
  if (it == schedule_->owed.end()) return absl::ZeroDuration();
  return absl::Seconds(it->second * static_cast<double>(schedule_->owed.size()) / schedule_->Rate());
}

}  // namespace cloudflux::storage
