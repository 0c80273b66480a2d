#include "vm/event_loop.hpp"

#include <poll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace pexi::vm {

EventLoop::EventLoop() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

EventLoop::Id EventLoop::watch(int fd, std::function<short()> interest,
                               std::function<void(short)> ready) {
  const Id id = next_id_++;
  watches_.emplace(id, Watch{fd, std::move(interest), std::move(ready)});
  return id;
}

void EventLoop::unwatch(Id id) noexcept { watches_.erase(id); }

EventLoop::Id EventLoop::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  const Id id = next_id_++;
  const auto when = Clock::now() + delay;
  timers_.emplace(id, std::make_pair(when, std::move(fn)));
  timer_order_.emplace(when, id);
  return id;
}

void EventLoop::cancel(Id timer) noexcept {
  auto it = timers_.find(timer);
  if (it == timers_.end()) return;
  auto [first, last] = timer_order_.equal_range(it->second.first);
  for (auto o = first; o != last; ++o) {
    if (o->second == timer) {
      timer_order_.erase(o);
      break;
    }
  }
  timers_.erase(it);
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(fn));
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_.get(), &one, sizeof one);
}

void EventLoop::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_.get(), &one, sizeof one);
}

bool EventLoop::stopped() const {
  std::lock_guard lock(mutex_);
  return stop_;
}

void EventLoop::drain_posted() {
  std::uint64_t count = 0;
  [[maybe_unused]] const auto n = ::read(wake_.get(), &count, sizeof count);
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(mutex_);
    tasks.swap(posted_);
  }
  for (auto& task : tasks) task();
}

void EventLoop::run(std::chrono::milliseconds max_wait) {
  while (!stopped()) run_once(max_wait);
}

void EventLoop::run_once(std::chrono::milliseconds max_wait) {
  std::vector<pollfd> fds;
  std::vector<Id> ids;
  fds.reserve(watches_.size() + 1);
  ids.reserve(watches_.size());
  fds.push_back(pollfd{wake_.get(), POLLIN, 0});
  for (auto& [id, w] : watches_) {
    const short events = w.interest ? w.interest() : short{POLLIN};
    if (events == 0) continue;
    fds.push_back(pollfd{w.fd, events, 0});
    ids.push_back(id);
  }
  auto wait = max_wait;
  if (!timer_order_.empty()) {
    const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(
        timer_order_.begin()->first - Clock::now());
    wait = std::max(std::chrono::milliseconds(0),
                    std::min(wait, until + std::chrono::milliseconds(1)));
  }
  const int n = ::poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
  if (n > 0) {
    if (fds[0].revents != 0) drain_posted();
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = watches_.find(ids[i - 1]);
      if (it == watches_.end()) continue;  // removed by an earlier callback this round
      auto ready = it->second.ready;       // the callback may unwatch itself
      ready(fds[i].revents);
    }
  }
  // Timers that are due, in order; a timer may add or cancel others.
  const auto now = Clock::now();
  while (!timer_order_.empty() && timer_order_.begin()->first <= now) {
    const Id id = timer_order_.begin()->second;
    timer_order_.erase(timer_order_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    auto fn = std::move(it->second.second);
    timers_.erase(it);
    fn();
  }
}

}  // namespace pexi::vm
