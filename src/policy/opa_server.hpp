#pragma once
// Managed mode (DESIGN §5): pexi runs `opa run --server` itself on the user's policy directory
// and supervises it.
//
//   opa run --server --addr unix://<dir>/opa.sock --unix-socket-perm 600 --skip-version-check
//           --watch --ignore '*_test.rego' --ignore '.*' --log-level error --log-format json
//           --shutdown-grace-period 1 <policy_dir>
//
// - The socket lives in a fresh 0700 directory, pexi-opa-<pid>-XXXXXX (mkdtemp under $TMPDIR
//   or /tmp; a path under PEXI_HOME can exceed the 108 bytes a socket path may have). Only
//   this user can connect. Directories left by pexi processes that were killed (their pid is
//   gone) are removed when the next one starts.
// - OPA runs in its own process group with PR_SET_PDEATHSIG(SIGKILL), forked by the supervisor
//   thread, which lives exactly as long as this object: OPA never outlives pexi, even when
//   pexi is killed. It gets a small environment (PATH, HOME, TMPDIR, TZ, ZONEINFO) so host
//   secrets in pexi's environment are not readable by policies through opa.runtime().env.
// - start() returns once GET /health answers 200 (bounded by start_timeout); an OPA that exits
//   first (a policy that does not compile) or never gets healthy is a config_error carrying
//   OPA's last stderr lines.
// - If OPA dies later it is restarted after a backoff (min_backoff doubling up to max_backoff,
//   back to min_backoff after a minute of health), each exit and restart logged. Meanwhile
//   decisions fail and deny (the engine fails closed).
// - `--watch` makes OPA reload policies and data when files in policy_dir change.
// - OPA's stdout and stderr (load errors go to stdout) are relayed to pexi's log, line by
//   line, prefixed "opa: ".
// - The destructor stops OPA: SIGTERM to its process group, SIGKILL after 3 s, then removes
//   the socket directory.
//
// Thread-safety: all members are safe from any thread.

#include "common/error.hpp"
#include "policy/opa_client.hpp"

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace pexi::policy::opa {

struct ManagedOptions {
  std::filesystem::path binary;      // the opa executable (find_opa_binary)
  std::filesystem::path policy_dir;  // .rego and data files; must be a directory
  std::chrono::milliseconds start_timeout{30'000};
  std::chrono::milliseconds min_backoff{200};
  std::chrono::milliseconds max_backoff{5'000};
};

class ManagedServer {
 public:
  // Code::config_error: no such policy directory, OPA cannot be started, exits during startup
  // or is not healthy in time. Code::io_error: no private socket directory.
  static Result<std::unique_ptr<ManagedServer>> start(ManagedOptions options);
  ~ManagedServer();
  ManagedServer(const ManagedServer&) = delete;
  ManagedServer& operator=(const ManagedServer&) = delete;

  // Where OPA listens (the Unix socket).
  const Endpoint& endpoint() const noexcept { return endpoint_; }
  // OPA's process id, or 0 while none is running (restarting). For tests and diagnostics.
  pid_t pid() const noexcept { return pid_.load(); }
  // True from the first 200 on /health until the process exits.
  bool healthy() const noexcept { return healthy_.load(); }
  // How many times OPA was started after the first time.
  std::uint64_t restarts() const noexcept { return restarts_.load(); }

 private:
  explicit ManagedServer(ManagedOptions options);
  enum class Exit { stopped, died, never_healthy };
  void run();                           // the supervisor thread
  Result<pid_t> spawn(int& stderr_fd);  // fork + exec one OPA
  Exit supervise(pid_t pid, int stderr_fd, bool first);
  bool wait_stop(std::chrono::milliseconds d);  // true when asked to stop
  bool relay(int stderr_fd);                    // OPA's stderr lines -> log; true at EOF
  void terminate(pid_t pid);                    // TERM, then KILL; reaps
  std::string exit_text(int status) const;

  ManagedOptions options_;
  std::filesystem::path dir_;  // private socket directory
  Endpoint endpoint_;
  std::unique_ptr<Client> health_;  // /health probes, short timeout

  std::atomic<pid_t> pid_{0};
  std::atomic<bool> healthy_{false};
  std::atomic<std::uint64_t> restarts_{0};
  int stop_pipe_[2] = {-1, -1};  // written once to wake the supervisor for shutdown

  std::mutex mutex_;
  std::condition_variable started_cv_;
  std::optional<Error> start_failure_;  // guarded by mutex_
  bool start_done_ = false;             // guarded by mutex_
  std::deque<std::string> last_lines_;  // OPA's recent stderr lines, guarded by mutex_
  std::string partial_line_;            // supervisor thread only

  std::thread thread_;
};

// Which opa binary pexi runs (docs/opa.md): `explicit_binary` if given, else $PEXI_OPA, else
// the one scripts/install-opa builds ($PEXI_CACHE/opa/<pinned version>/opa), else `opa` on
// PATH. Code::config_error naming what was tried when none is usable.
Result<std::filesystem::path> find_opa_binary(const std::optional<std::string>& explicit_binary);

// The OPA version scripts/install-opa pins ("v1.22.2").
std::string_view pinned_opa_version() noexcept;

}  // namespace pexi::policy::opa
