#pragma once
// The supervisor's side of the sandbox's PEP process (vm/sandbox_pep.hpp): starts it, waits until
// both fronts listen, restarts it with backoff whenever it ends while the sandbox runs, and
// connects guest streams to its fronts. A guest stream that arrives while the PEP is down is
// refused (the guest's client sees its connection reset and may retry): it is never queued and
// never let through undecided.
//
// Restart delays: at once after restart() (an asked-for restart, `pexi reload`); otherwise 200 ms,
// doubling to 10 s while it keeps failing, back to 200 ms once it has run for 30 s.
//
// Thread-safety: start() / spawn() and wait_ready() on the thread that must outlive the first PEP
// (its parent-death signal follows that thread); every other member on the EventLoop's thread,
// which spawns the restarted ones (and so must outlive them), or on any thread once that loop no
// longer runs.

#include "common/error.hpp"
#include "vm/event_loop.hpp"
#include "vm/process.hpp"

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pexi::vm {

class PepProcess {
 public:
  struct Options {
    // The PEP's command line without `--notify-fd N`, which start() adds.
    std::vector<std::string> argv;
    std::filesystem::path proxy_socket;
    std::filesystem::path frame_socket;
    std::filesystem::path log;  // the PEP's stdout and stderr (appended)
    std::chrono::milliseconds ready_timeout{60'000};
    std::function<void(const std::string&)> diag;
    // After every start or end: the live process (nullopt while down) and the restart count.
    std::function<void(const std::optional<ProcessRef>&, unsigned restarts)> changed;
  };

  // Spawns the PEP and waits for it to report ready: spawn() then wait_ready().
  static Result<std::unique_ptr<PepProcess>> start(EventLoop& loop, Options options);
  // Spawns the PEP without waiting (the supervisor boots QEMU meanwhile). Code::io_error when
  // it cannot be started at all.
  static Result<std::unique_ptr<PepProcess>> spawn(EventLoop& loop, Options options);
  // Waits for the spawned PEP's ready line (on the spawning thread, once). Code::io_error with
  // the PEP's own message when it cannot start, or saying that it did not answer in time; the
  // PEP is stopped then.
  Result<void> wait_ready();
  ~PepProcess();
  PepProcess(const PepProcess&) = delete;
  PepProcess& operator=(const PepProcess&) = delete;

  // A connection to the proxy front (or the frame front), non-blocking. Code::io_error naming
  // the state when the PEP is down or restarting.
  Result<UniqueFd> connect(bool proxy_front) const;
  // Ends the running PEP (SIGTERM) and starts a new one at once, which reads the config again.
  void restart();
  // Ends the PEP for good: SIGTERM, SIGKILL after `grace`. Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

  unsigned restarts() const noexcept { return restarts_; }

 private:
  PepProcess(EventLoop& loop, Options options);
  Result<void> spawn_one(int notify_fd);
  void watch_exit();
  void on_exit(int wait_status);
  void start_after(std::chrono::milliseconds delay);

  EventLoop& loop_;
  Options options_;
  std::atomic<pid_t> pid_{-1};  // read by connect() while wait_ready() may stop it
  UniqueFd notify_;             // the first PEP's ready line, until wait_ready()
  UniqueFd pidfd_;
  EventLoop::Id exit_watch_ = 0;
  EventLoop::Id pending_ = 0;  // a restart timer, or 0
  std::chrono::steady_clock::time_point started_;
  std::chrono::milliseconds backoff_{200};
  unsigned restarts_ = 0;
  bool restart_asked_ = false;
  std::atomic<bool> stopped_{false};
};

}  // namespace pexi::vm
