#pragma once
// Runs the builder's tools (mmdebstrap, dpkg-deb, depmod, mke2fs) as child processes whose
// output goes to the build log, never to the terminal. The child gets SIGTERM if pexi dies
// (PR_SET_PDEATHSIG), so an interrupted build leaves no tool running.
//
// Thread-safety: run_logged() may be called from any thread; it blocks until the child exits.

#include "common/error.hpp"

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pexi::image {

struct Command {
  std::vector<std::string> argv;                     // argv[0] is looked up in PATH
  std::optional<std::filesystem::path> stdin_file;   // default /dev/null
  std::optional<std::filesystem::path> stdout_file;  // default: the log (truncated when given)
};

// Runs `command`, appending its stderr (and stdout unless redirected) to `log_fd`. Calls
// `tick` about every 100 ms while it runs. Returns the exit status (128 + signal number when
// killed); Code::io_error when the child cannot be started.
Result<int> run_logged(const Command& command, int log_fd, const std::function<void()>& tick);

// The first executable called `name` in PATH, then /usr/sbin and /sbin (which a normal user's
// PATH often lacks; depmod and mke2fs live there).
std::optional<std::filesystem::path> find_program(const std::string& name);

// 'text' quoted for a POSIX shell.
std::string shell_quote(std::string_view text);

}  // namespace pexi::image
