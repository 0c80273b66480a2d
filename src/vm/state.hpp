#pragma once
// A sandbox's state directory, PEXI_HOME/sandboxes/<name>/ (mode 0700), which `status` and
// `down` must be able to trust after any crash (docs/vm.md, "State directory"):
//
//   lock            flock(2)ed by the live supervisor for its whole life
//   status.json     written atomically (temporary file + rename) at every state change
//   control.sock    the supervisor's control socket (exec, status, shutdown)
//   channel.sock    the host end of the virtio-serial channel (QEMU connects to it)
//   pep-proxy.sock  the sandbox's PEP process: its proxy front and its frame front, to which the
//   pep-frame.sock  supervisor relays guest streams
//   initrd.img      the image's initramfs + this boot's archive (CA certificate, pexi-guest)
//   console.log     the guest's serial console
//   qemu.log        QEMU's own stdout/stderr
//   supervisor.log  the supervisor's diagnostics
//   pep.log         the PEP process's own output
//
// The recorded state is what the supervisor last wrote; the observed state also checks that the
// recorded processes still exist with their recorded start times (observe()).
//
// Thread-safety: pure functions and file operations; concurrent writers are excluded by `lock`.

#include "common/error.hpp"
#include "vm/process.hpp"

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pexi::vm {

// 1…32 of [a-z0-9-], starting with a letter or digit. Code::usage_error naming the rule.
Result<void> check_sandbox_name(std::string_view name);

struct SandboxPaths {
  std::filesystem::path dir;
  std::filesystem::path lock;
  std::filesystem::path status;
  std::filesystem::path control;
  std::filesystem::path channel;
  std::filesystem::path initrd;
  std::filesystem::path console;
  std::filesystem::path qemu_log;
  std::filesystem::path supervisor_log;
  std::filesystem::path pep_proxy;
  std::filesystem::path pep_frame;
  std::filesystem::path pep_log;
};
std::filesystem::path sandboxes_dir(const std::filesystem::path& home);
SandboxPaths sandbox_paths(const std::filesystem::path& home, std::string_view name);

enum class State { booting, running, stopping, stopped, crashed };
std::string state_name(State state);
std::optional<State> parse_state(std::string_view name);

struct Status {
  std::string name;
  State state = State::stopped;
  std::optional<ProcessRef> supervisor;
  std::optional<ProcessRef> qemu;
  std::optional<ProcessRef> pep;  // the PEP process, while it runs
  unsigned pep_restarts = 0;      // how often it was started again (crashes, `pexi reload`)
  std::string accel;              // "kvm" / "tcg"
  std::string accel_reason;       // why (the probe's verdict)
  std::string confinement;        // QEMU's Landlock confinement, or "none: <why>"
  unsigned cpus = 0;
  unsigned memory_mib = 0;
  std::string workspace;  // host directory shared as /workspace, or ""
  std::string image_key;
  std::string started_at;  // RFC 3339 (UTC), when `up` started
  std::int64_t started_unix = 0;
  std::optional<std::int64_t> boot_ms;  // start to READY
  std::string reason;                   // for stopped/crashed: why
  std::string audit_log;                // absolute path of the audit log this sandbox writes
};

std::string to_json(const Status& status);
Result<Status> status_from_json(std::string_view text);
Result<void> write_status(const std::filesystem::path& file, const Status& status);
Result<Status> read_status(const std::filesystem::path& file);

// The state to show: the recorded one, unless a recorded live state (booting, running,
// stopping) has lost its supervisor, which makes it crashed. `alive` is ProcessRef::alive in
// real use (a parameter for tests).
struct Observed {
  State state = State::stopped;
  std::string reason;
};
Observed observe(
    const Status& status, const std::function<bool(const ProcessRef&)>& alive =
                              [](const ProcessRef& p) { return p.alive(); });

// Every sandbox with a status file, by name.
std::vector<Status> list_sandboxes(const std::filesystem::path& home);

// An exclusive flock on the state directory's lock file, held for the supervisor's life.
class StateLock {
 public:
  // Code::io_error "sandbox N is already running" when another process holds it.
  static Result<StateLock> acquire(const SandboxPaths& paths, std::string_view name);
  // Whether some process holds the lock now (without taking it).
  static bool held(const SandboxPaths& paths);
  StateLock(StateLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  StateLock& operator=(StateLock&&) = delete;
  StateLock(const StateLock&) = delete;
  ~StateLock();

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

std::string rfc3339_utc(std::int64_t unix_seconds);

}  // namespace pexi::vm
