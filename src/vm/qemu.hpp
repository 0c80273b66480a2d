#pragma once
// The QEMU command line of a sandbox (docs/vm.md, "The VM"), built from a plain description so
// that every flag is unit-tested (tests/unit/vm/qemu_test.cpp). Nothing here runs QEMU.
//
// Invariants the builder enforces rather than trusts: no network device (`-nic none`,
// `-nodefaults`), the root disk read-only, no monitor, no reboot (a guest panic or poweroff ends
// the process), QEMU's own seccomp sandbox on.
//
// Thread-safety: pure functions.

#include "common/error.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace pexi::vm {

enum class Accel { tcg, kvm };
std::string accel_name(Accel accel);

struct QemuConfig {
  std::string binary = "qemu-system-x86_64";
  std::string name;  // sandbox name (shown in ps and QEMU messages)
  Accel accel = Accel::tcg;
  std::string machine = "pc";
  std::optional<std::filesystem::path> bios;  // e.g. qboot: faster than SeaBIOS for -kernel
  unsigned cpus = 1;
  unsigned memory_mib = 1024;
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  std::string cmdline;
  std::filesystem::path rootfs;          // attached read-only
  std::filesystem::path channel_socket;  // the host listens; QEMU connects
  std::string port_name = "pexi.0";
  std::optional<std::filesystem::path> workspace;  // 9p share, tag `workspace`, read-write
  std::filesystem::path console_log;
  // Benchmarks only (bench/vm_bench.sh): a second port `pexi.raw` on the same virtio-serial
  // device, QEMU listening on this socket, for a raw copy to compare the channel against.
  std::optional<std::filesystem::path> raw_port_socket;
};

// QEMU's option syntax: a ',' inside a value is written ",,".
std::string qemu_escape(std::string_view value);

// Code::usage_error for a config that cannot be right (no kernel, 0 CPUs, a path QEMU would
// misparse).
Result<std::vector<std::string>> qemu_argv(const QemuConfig& config);

// The guest kernel's command line for a sandbox (quiet serial console, panic -> poweroff,
// pexi-guest's parameters).
struct GuestCmdline {
  bool workspace = false;
  bool debug = false;
  std::string port_name = "pexi.0";
  std::string extra;  // appended verbatim (PEXI_KERNEL_APPEND)
};
std::string guest_cmdline(const GuestCmdline& options);

}  // namespace pexi::vm
