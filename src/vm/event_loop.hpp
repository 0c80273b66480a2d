#pragma once
// A small poll(2) event loop: file descriptors with per-round interest, timers, and tasks posted
// from other threads. Used by the host's channel driver thread and by pexi-guest (PID 1), which
// is why it is plain POSIX and not Asio: the guest binary is static and tiny.
//
// Interest is asked again every round (`interest()` returns the poll events wanted now, 0 for
// none), so flow control is expressed by simply not asking for POLLIN while a stream has no
// credit. Callbacks may add or remove watches and timers, including their own.
//
// Thread-safety: everything runs on the thread that calls run()/run_once(), except post() and
// stop(), which may be called from any thread.

#include "vm/fd.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

namespace pexi::vm {

class EventLoop {
 public:
  using Id = std::uint64_t;
  using Clock = std::chrono::steady_clock;

  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches `fd` (not owned). `ready` gets the returned events (POLLIN, POLLOUT, POLLHUP,
  // POLLERR...). A watch whose interest is 0 is skipped for the round.
  Id watch(int fd, std::function<short()> interest, std::function<void(short)> ready);
  void unwatch(Id id) noexcept;

  Id after(std::chrono::milliseconds delay, std::function<void()> fn);
  void cancel(Id timer) noexcept;

  // Thread-safe: `fn` runs on the loop thread during the next round.
  void post(std::function<void()> fn);

  // Rounds until stop(). One round waits at most `max_wait` (or until the next timer).
  void run(std::chrono::milliseconds max_wait = std::chrono::milliseconds(1000));
  void run_once(std::chrono::milliseconds max_wait);
  // Thread-safe.
  void stop();
  bool stopped() const;

 private:
  struct Watch {
    int fd;
    std::function<short()> interest;
    std::function<void(short)> ready;
  };
  void drain_posted();

  Id next_id_ = 1;
  std::map<Id, Watch> watches_;
  std::multimap<Clock::time_point, Id> timer_order_;
  std::map<Id, std::pair<Clock::time_point, std::function<void()>>> timers_;
  UniqueFd wake_;  // eventfd: post() and stop() write it
  mutable std::mutex mutex_;
  std::vector<std::function<void()>> posted_;
  bool stop_ = false;
};

}  // namespace pexi::vm
