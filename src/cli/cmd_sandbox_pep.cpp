// The sandbox's PEP as a process: the hidden `pexi __pep` that a sandbox's supervisor starts and
// restarts (vm/sandbox_pep.hpp), and `pexi reload`, which restarts it with the config read anew
// while the guest keeps running.
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "cli/sandbox_cli.hpp"
#include "common/log.hpp"
#include "common/paths.hpp"
#include "config/config.hpp"
#include "pep/runtime.hpp"
#include "vm/control.hpp"
#include "vm/fd.hpp"
#include "vm/sandbox_pep.hpp"
#include "vm/unix_socket.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

namespace pexi::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct SandboxPepOptions {
  ConfigOptions config;
  std::string name;
  std::string proxy_socket;
  std::string frame_socket;
  std::optional<std::string> workspace;
  int notify_fd = -1;
};

// `pexi __pep`: serves until SIGTERM. Its first line on the notify fd is "ready" or
// "error MESSAGE" (vm/pep_process.hpp); its log is its stderr.
int run_sandbox_pep(const SandboxPepOptions& o) {
  auto say = [&](const std::string& line) {
    if (o.notify_fd >= 0) vm::write_all(o.notify_fd, line + "\n");
  };
  auto failed = [&](const Error& error) {
    say("error " + error.message);
    return report(error);
  };
  // Each guest stream is a socket here plus one upstream: take every descriptor we may.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  // Blocked before any thread starts, then taken by sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  vm::SandboxPepOptions options;
  options.name = o.name;
  options.home = pexi_home();
  options.proxy_socket = o.proxy_socket;
  options.frame_socket = o.frame_socket;
  auto config = config::load(o.config.config_path);
  if (!config) return failed(config.error());
  // Checked at every start, since `pexi reload` reads a config that may have changed since `up`.
  if (o.workspace) {
    if (auto ok = check_workspace_exposure(*o.workspace, o.config, *config); !ok)
      return failed(ok.error());
  }
  options.config = std::move(*config);
  auto overrides = pep::parse_resolve_overrides(o.config.resolve);
  if (!overrides) return failed(overrides.error());
  options.overrides = std::move(*overrides);
  auto pep = vm::SandboxPep::start(std::move(options));
  if (!pep) return failed(pep.error());
  for (const auto& name : (*pep)->runtime().secrets->missing())
    log_info("sandbox " + o.name + ": $" + name +
             " is not set; requests to rules that inject it will be denied");
  log_info("sandbox " + o.name + ": PEP ready (pid " + std::to_string(::getpid()) + ")");
  say("ready");
  if (o.notify_fd >= 0) ::close(o.notify_fd);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  log_info("sandbox " + o.name + ": PEP stopping (signal " + std::to_string(signal_number) + ")");
  (*pep)->stop();
  return kOk;
}

// The last non-empty line of the PEP's log, for an error message.
std::string last_line(const fs::path& log) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

// `pexi reload`: asks the supervisor to restart the PEP, then waits for the new one to listen.
int run_reload(const std::string& name, unsigned timeout_seconds) {
  auto before = sandbox_status(name);
  if (!before) return report(before.error());
  const auto paths = vm::sandbox_paths(pexi_home(), name);
  const auto old_pep = before->pep;
  if (auto asked = vm::control_call(paths.control, R"({"op":"reload"})", 10s); !asked)
    return report(asked.error());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    auto now = vm::read_status(paths.status);
    if (now && now->pep && now->pep != old_pep && now->pep->alive() &&
        vm::connect_unix(paths.pep_proxy) && vm::connect_unix(paths.pep_frame)) {
      std::cout << "sandbox " << name << ": PEP restarted (pid " << now->pep->pid
                << "), configuration read again\n";
      return kOk;
    }
    std::this_thread::sleep_for(100ms);
  }
  const std::string said = last_line(paths.pep_log);
  return report(Error{
      Code::io_error,
      "sandbox " + name + ": the PEP did not come back within " + std::to_string(timeout_seconds) +
          " s; guest requests are refused until it does (the supervisor keeps "
          "retrying)",
      said.empty() ? "log " + paths.pep_log.string() : paths.pep_log.string() + ": " + said});
}

}  // namespace

std::vector<std::string> sandbox_pep_command(const std::string& name, const ConfigOptions& config,
                                             const std::optional<fs::path>& workspace) {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  std::vector<std::string> argv = {ec ? std::string("pexi") : self.string(), "__pep", "--name",
                                   name};
  if (config.config_path) {
    argv.emplace_back("--config");
    argv.push_back(fs::absolute(*config.config_path).string());
  }
  for (const auto& r : config.resolve) {
    argv.emplace_back("--resolve");
    argv.push_back(r);
  }
  if (workspace) {
    argv.emplace_back("--workspace");
    argv.push_back(workspace->string());
  }
  return argv;
}

void add_sandbox_pep_commands(CLI::App& app, Action& action) {
  // pexi __pep (hidden: started by a sandbox's supervisor)
  auto pep = std::make_shared<SandboxPepOptions>();
  auto* pep_cmd = app.add_subcommand("__pep", "");
  pep_cmd->group("");
  add_config_options(*pep_cmd, pep->config);
  pep_cmd->add_option("--name", pep->name)->required();
  pep_cmd->add_option("--proxy-socket", pep->proxy_socket)->required();
  pep_cmd->add_option("--frame-socket", pep->frame_socket)->required();
  pep_cmd->add_option("--workspace", pep->workspace);
  pep_cmd->add_option("--notify-fd", pep->notify_fd);
  pep_cmd->callback([&action, pep] { action = [pep] { return run_sandbox_pep(*pep); }; });

  // pexi reload
  auto name = std::make_shared<std::string>("default");
  auto timeout = std::make_shared<unsigned>(60);
  auto* reload_cmd = app.add_subcommand(
      "reload",
      "Restart a sandbox's PEP so that it reads its configuration and policy again; the guest "
      "keeps running (requests in flight are cancelled and audited)");
  reload_cmd->add_option("--name", *name, "Sandbox name")->capture_default_str();
  reload_cmd->add_option("--timeout", *timeout, "Seconds to wait for the new PEP")
      ->capture_default_str();
  reload_cmd->callback([&action, name, timeout] {
    action = [name, timeout] { return run_reload(*name, *timeout); };
  });
}

}  // namespace pexi::cli
