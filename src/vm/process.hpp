#pragma once
// Child processes that cannot outlive their parent, and processes identified so that a reused
// pid is never mistaken for them (docs/vm.md, "Supervision").
//
// spawn() forks and execs with, in the child between fork and exec: its own process group (so a
// terminal's Ctrl-C reaches pexi, which shuts the VM down cleanly, not QEMU directly), a
// parent-death signal (SIGKILL when the *thread* that spawned it exits: call it from a thread
// that lives as long as the child should), and only the listed file descriptors.
//
// Thread-safety: functions are thread-safe; a ProcessRef is a value.

#include "common/error.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace pexi::vm {

// A process as recorded in a state directory: its pid and its start time (clock ticks since
// boot, /proc/PID/stat field 22). Both must match for it to be "the same process".
struct ProcessRef {
  pid_t pid = 0;
  std::uint64_t start_time = 0;

  static std::optional<ProcessRef> of(pid_t pid);  // nullopt when it does not exist
  bool alive() const;                              // exists with the same start time, not a zombie
  friend bool operator==(const ProcessRef&, const ProcessRef&) = default;
};

// Parses /proc/PID/stat text: start time (field 22) and state (field 3). nullopt when malformed.
struct ProcStat {
  char state = '?';
  std::uint64_t start_time = 0;
};
std::optional<ProcStat> parse_proc_stat(std::string_view text);

struct SpawnOptions {
  std::vector<std::string> argv;      // argv[0] is looked up in PATH
  std::filesystem::path stdout_file;  // empty: /dev/null (appended to otherwise)
  std::filesystem::path stderr_file;  // empty: same as stdout
  bool die_with_parent = true;        // PR_SET_PDEATHSIG(SIGKILL)
  bool own_process_group = true;      // setpgid(0, 0)
  std::vector<int> keep_fds;          // passed through under the same numbers
  int landlock_ruleset = -1;          // entered just before exec (vm/confine.hpp), or -1
};

// Code::io_error when fork fails, the program cannot be executed, or its Landlock ruleset cannot
// be entered (reported by the child; it never runs unconfined when asked to be confined).
Result<pid_t> spawn(const SpawnOptions& options);

// Waits for `pid` (a child) up to `timeout`; the wait status, or nullopt on timeout.
std::optional<int> wait_for_child(pid_t pid, std::chrono::milliseconds timeout);

// SIGKILL to the process group of `ref` (and to it), if it is still the same process.
void kill_process(const ProcessRef& ref, int signal);

// "exited with status 1", "killed by signal 9 (Killed)".
std::string describe_wait_status(int status);

}  // namespace pexi::vm
