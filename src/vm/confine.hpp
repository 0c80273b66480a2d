#pragma once
// Landlock confinement for the processes a sandbox runs on the host (QEMU): what they may read,
// write and create on the file system, no TCP at all, and no signals to (nor ptrace of) processes
// outside their domain. QEMU runs as the user, so without this a guest that escaped into QEMU
// could read the CA key, the audit log, or another process's environment (the PEP's API keys),
// and open connections of its own. Best effort by design: a kernel without Landlock runs QEMU
// unconfined, and says so (status.json `confinement`).
//
// Thread-safety: build_ruleset() is thread-safe; enter() is for a forked child before exec
// (async-signal-safe system calls only).

#include "common/error.hpp"
#include "vm/fd.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace pexi::vm {

struct Confinement {
  std::vector<std::filesystem::path> read_only;   // files or directories (read, execute)
  std::vector<std::filesystem::path> read_write;  // files or directories (everything)
  std::vector<std::filesystem::path> devices;     // device files: read, write, ioctl
  bool deny_tcp = true;                           // no TCP bind or connect (Landlock ABI >= 4)
};

struct Ruleset {
  UniqueFd fd;
  int abi = 0;
  std::string summary;  // "landlock ABI 7: files, TCP, signals and abstract sockets"
};

// The kernel's Landlock ABI version, 0 when it has none (or it is disabled).
int landlock_abi() noexcept;

// A Landlock ruleset for `c`. nullopt (with `why` set) when the kernel has no Landlock; paths
// that do not exist are skipped. Code::io_error when the kernel refuses a rule.
Result<std::optional<Ruleset>> build_ruleset(const Confinement& c, std::string& why);

// In a forked child: no_new_privs, then the ruleset for this process and what it execs. False
// (errno set) when the kernel refuses: the caller must not exec unconfined then.
bool enter_ruleset(int ruleset_fd) noexcept;

}  // namespace pexi::vm
