#pragma once
// One `exec` stream (docs/channel-protocol.md §9.2), served by a child of PID 1 forked for it:
// the stream's bytes arrive on a socketpair relayed by PID 1's channel driver. The child reads
// the REQUEST, starts the command (pipes or a pty, as the user asked for, in its own session),
// pumps stdin/stdout/stderr with bounded buffers, and sends EXIT once the command has exited
// and its output has reached EOF (or a short grace period has passed).
//
// An EOF on the socket before EXIT means the host reset the stream (the user's `pexi exec` went
// away): the command's process group gets SIGHUP, then SIGKILL after a grace period.

#include <string>
#include <vector>

namespace pexi::guest {

struct ExecContext {
  bool as_root = false;                 // OPEN metadata user=root
  std::vector<std::string> system_env;  // /etc/environment
  std::string default_cwd = "/workspace";
};

// Serves the stream on `sock` and exits the process. Call only in a freshly forked child.
[[noreturn]] void run_exec_session(int sock, const ExecContext& context);

}  // namespace pexi::guest
