#pragma once
// The host side of one sandbox (docs/vm.md): the state directory, the sandbox's PEP (a process
// of its own, vm/sandbox_pep.hpp, restarted whenever it ends while the guest runs), QEMU, the
// channel driver that relays the guest's streams to the PEP's fronts, and the control socket
// through which `exec`, `status`, `reload` and `down` reach it.
//
//   thread        runs
//   caller        boot(), then wait(): QEMU and the first PEP are spawned from it, so it must
//                 live as long as they should (the parent-death signal follows that thread)
//   driver        an EventLoop: the channel (mux::Session), the control socket, QEMU's and the
//                 PEP's pidfds; it spawns restarted PEPs
//
// Shutdown: SHUTDOWN on the control stream (the guest syncs and powers off, QEMU exits because
// of -no-reboot); SIGTERM to QEMU after 15 s, SIGKILL after 5 s more. A QEMU that exits without
// being asked to (kernel panic, guest poweroff, killed) leaves the sandbox `crashed`.
//
// Thread-safety: boot() and wait() from one thread; shutdown() from any thread.

#include "common/error.hpp"
#include "config/config.hpp"
#include "image/image.hpp"
#include "vm/accel.hpp"
#include "vm/state.hpp"

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pexi::vm {

struct SandboxOptions {
  std::string name = "default";
  std::filesystem::path home;  // PEXI_HOME
  config::Config config;       // as the PEP will load it (checked before anything starts)
  // The PEP's command line (`pexi __pep --name N [--config F] [--resolve …]`); the supervisor
  // adds the socket paths.
  std::vector<std::string> pep_command;
  unsigned cpus = 1;
  unsigned memory_mib = 1024;
  std::optional<std::filesystem::path> workspace;
  AccelRequest accel = AccelRequest::automatic;
  std::filesystem::path guest_binary;  // pexi-guest (goes into the boot archive)
  image::ImagePaths image;
  std::string qemu_binary = "qemu-system-x86_64";
  std::chrono::seconds ready_timeout{600};
  bool guest_debug = false;
  std::string kernel_append;
  // Benchmarks only: QemuConfig::raw_port_socket ($PEXI_BENCH_RAW_PORT).
  std::optional<std::filesystem::path> raw_port_socket;
};

class Supervisor {
 public:
  using Progress = std::function<void(const std::string&)>;

  // Boots the sandbox and returns once the guest announced READY. Code::usage_error /
  // config_error for bad options, io_error when it cannot start or does not come up (the error
  // names the console log).
  static Result<std::unique_ptr<Supervisor>> boot(SandboxOptions options, Progress progress);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Blocks until QEMU has exited and everything is torn down; the final status.
  Status wait();
  // Asks the guest to power off (thread-safe, returns at once).
  void shutdown();

  Status status() const;
  const SandboxPaths& paths() const;

 private:
  struct Impl;
  explicit Supervisor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The tail of a log file (the last `lines` lines), for error messages.
std::string log_tail(const std::filesystem::path& file, int lines);

}  // namespace pexi::vm
