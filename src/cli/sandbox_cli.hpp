#pragma once
// The sandbox commands as functions, for commands built on a sandbox (`pexi agent`,
// `pexi browse`): boot one, run commands in it with their output on any file descriptors,
// stop it. Implemented in cmd_vm.cpp (and cmd_sandbox_pep.cpp), where `up`, `exec` and `down` use
// the same functions.
//
// Thread-safety: call from the main thread (exec blocks SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGWINCH
// in the calling thread and forwards them to the command).

#include "cli/commands.hpp"
#include "config/config.hpp"
#include "vm/state.hpp"

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace pexi::cli {

struct UpOptions {
  ConfigOptions config;
  std::string name = "default";
  unsigned cpus = 1;
  unsigned memory_mib = 1024;
  std::optional<std::string> workspace;
  std::string accel = "auto";
  std::string profile = "base";
  bool guest_debug = false;
};

struct ExecOptions {
  std::string name = "default";
  std::string user = "sandbox";
  std::vector<std::string> env;
  std::optional<std::string> cwd;
  bool tty = false;
  bool no_stdin = false;
  std::vector<std::string> command;
  // Where the command's stdin comes from and its output goes (exec_in_sandbox).
  int stdin_fd = STDIN_FILENO;
  int stdout_fd = STDOUT_FILENO;
  int stderr_fd = STDERR_FILENO;
};

// Boots the sandbox `o.name` detached (like `pexi up`, messages on stdout/stderr); exit status.
int run_up(const UpOptions& o);

// True when the sandbox `name` of this PEXI_HOME is running.
bool sandbox_running(const std::string& name);
// The status of the running sandbox `name`; Code::io_error saying why not when it is not.
Result<vm::Status> sandbox_status(const std::string& name);

// `pexi __pep` for the sandbox `name`: the command line its supervisor starts (and restarts) the
// sandbox's PEP with (the config file by absolute path, the --resolve values, the workspace, which
// the PEP checks the config against each time it starts).
std::vector<std::string> sandbox_pep_command(const std::string& name, const ConfigOptions& config,
                                             const std::optional<std::filesystem::path>& workspace);

// Code::usage_error when sharing `workspace` would expose what decides or records the guest's
// policy (the config file, audit log, OPA policies) or pexi's keys and images.
Result<void> check_workspace_exposure(const std::filesystem::path& workspace,
                                      const ConfigOptions& options, const config::Config& config);

// Runs `o.command` in the running sandbox `o.name` (like `pexi exec`); the command's exit status,
// 255 when the sandbox went away, 1/2 with a message on stderr when it could not be asked.
int exec_in_sandbox(const ExecOptions& o);

// Stops the sandbox `name` (like `pexi down`); exit status.
int run_down(const std::string& name, unsigned timeout_seconds);

}  // namespace pexi::cli
