// pexi agent: OpenClaw one-shot inside a sandbox, its model calls through the sandbox's PEP,
// which injects the provider's key on the host (docs/agent.md).
//
//   1. load the configuration; [agent] names the provider and the key's host variable;
//   2. decide the provider's URL on the host with the same policy the PEP applies, and stop at
//      once when it is denied or allowed without a key (OpenClaw would retry for ~90 s);
//   3. boot the sandbox (profile agent) unless it is running; it is left running;
//   4. write OpenClaw's configuration into the guest (placeholder key) and run
//      `openclaw agent exec --json` as user sandbox, the prompt on its stdin;
//   5. print the final answer on stdout.
// The whole run is bounded by --timeout: inside the guest by `timeout` and OpenClaw's own
// deadline, on the host by a watchdog.
#include "cli/agent_setup.hpp"
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "cli/sandbox_cli.hpp"
#include "config/config.hpp"
#include "pep/runtime.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

namespace pexi::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kGuestDir = "/tmp/pexi-agent";
constexpr std::string_view kGuestConfig = "/tmp/pexi-agent/openclaw.json";
// Past --timeout, the host gives the guest this long to stop OpenClaw before giving up.
constexpr auto kWatchdogGrace = std::chrono::seconds(30);

struct AgentOptions {
  ConfigOptions config;
  std::string name = "agent";
  std::optional<std::string> model;
  unsigned timeout_seconds = 300;
  unsigned memory_mib = 2048;
  unsigned cpus = 2;  // one vCPU is too slow under TCG for OpenClaw's internal deadlines
  bool remove = false;
  bool verbose = false;
  std::string prompt;
};

int fail_with(int code, const std::string& message) {
  std::cerr << "pexi agent: " << message << '\n';
  return code;
}

// An anonymous in-memory file: stdin for a guest command, or where its output is collected
// (a write to it never blocks, unlike a pipe nobody reads yet).
class MemFile {
 public:
  MemFile() : fd_(::memfd_create("pexi-agent", MFD_CLOEXEC)) {}
  ~MemFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Writes `data` and rewinds, for use as stdin.
  bool fill(std::string_view data) {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return ::lseek(fd_, 0, SEEK_SET) == 0;
  }
  std::string contents() const {
    std::string out;
    char buffer[65536];
    off_t offset = 0;
    for (;;) {
      const ssize_t n = ::pread(fd_, buffer, sizeof buffer, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      out.append(buffer, static_cast<std::size_t>(n));
      offset += n;
    }
    return out;
  }

 private:
  int fd_;
};

// Runs `f` with stdout pointing at stderr: `up` and `down` report on stdout, which belongs to
// the answer here.
template <class F>
int with_stdout_on_stderr(F&& f) {
  std::cout.flush();
  std::fflush(stdout);
  const int saved = ::dup(STDOUT_FILENO);
  if (saved >= 0) ::dup2(STDERR_FILENO, STDOUT_FILENO);
  const int status = f();
  std::cout.flush();
  std::fflush(stdout);
  if (saved >= 0) {
    ::dup2(saved, STDOUT_FILENO);
    ::close(saved);
  }
  return status;
}

// Ends the process when the run outlives its deadline by kWatchdogGrace (the guest's own
// bounds should have stopped OpenClaw by then).
class Watchdog {
 public:
  Watchdog(Clock::time_point deadline, unsigned timeout_seconds)
      : thread_([this, deadline, timeout_seconds] {
          std::unique_lock lock(mutex_);
          if (cv_.wait_until(lock, deadline + kWatchdogGrace, [this] { return done_; })) return;
          std::cerr << "pexi agent: no answer within " << timeout_seconds
                    << " s; giving up (the sandbox is left running)\n";
          std::_Exit(kFailure);
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

// A quoted word for `sh -c`.
std::string shell_quote(std::string_view word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

// Step 2: the provider's URL decided on the host, as the sandbox's PEP will decide it.
int check_provider(const config::Config& config, const AgentOptions& o) {
  auto overrides = pep::parse_resolve_overrides(o.config.resolve);
  if (!overrides) return report(overrides.error());
  auto decider = pep::make_decider(config, *overrides, /*system_dns=*/false);
  if (!decider) return report(decider.error());
  const std::string url = agent::provider_request_url(config.agent);
  const Headers no_headers;
  const pep::RequestFacts facts{"POST", &no_headers, 0, o.name, Front::proxy};
  const pep::Verdict verdict = (*decider)->decide(url, facts, pep::NameLookup::overrides_only);
  const auto& d = verdict.decision;
  if (!d.allow)
    return fail_with(kFailure, "the policy denies the provider " + url + ": " + d.reason);
  if (d.inject.empty()) {
    return fail_with(kFailure, "the policy allows the provider " + url + " by rule " + d.rule +
                                   ", which injects no key (the provider would refuse every "
                                   "request); remove the provider's host from that rule, or let "
                                   "the agent-provider rule come first");
  }
  return kOk;
}

// Step 3: boot the sandbox, or reuse it.
int ensure_sandbox(const AgentOptions& o) {
  if (sandbox_running(o.name)) {
    std::cerr << "pexi agent: using the running sandbox " << o.name
              << " (its PEP keeps the configuration and key it was started with)\n";
    return kOk;
  }
  UpOptions up;
  up.config = o.config;
  up.name = o.name;
  up.profile = "agent";
  up.memory_mib = o.memory_mib;
  up.cpus = o.cpus;
  const int status = with_stdout_on_stderr([&] { return run_up(up); });
  if (status != kOk) return fail_with(status, "sandbox " + o.name + " did not come up");
  if (!o.remove) {
    std::cerr << "pexi agent: sandbox " << o.name << " is left running for the next prompt "
              << "(stop it with 'pexi down --name " << o.name << "')\n";
  }
  return kOk;
}

// Runs `command` in the sandbox; `stdin_text` on its stdin; output collected.
struct GuestResult {
  int status = 0;
  std::string out;
  std::string err;
};
Result<GuestResult> run_in_guest(const AgentOptions& o, std::string user,
                                 std::vector<std::string> command, std::string_view stdin_text,
                                 std::vector<std::string> env = {}) {
  MemFile in, out, err;
  if (!in.ok() || !out.ok() || !err.ok() || !in.fill(stdin_text))
    return fail(Code::io_error, std::string("memfd: ") + std::strerror(errno));
  ExecOptions e;
  e.name = o.name;
  e.user = std::move(user);
  e.command = std::move(command);
  e.env = std::move(env);
  e.stdin_fd = in.fd();
  e.stdout_fd = out.fd();
  e.stderr_fd = err.fd();
  GuestResult result;
  result.status = exec_in_sandbox(e);
  result.out = out.contents();
  result.err = err.contents();
  return result;
}

int run_agent(const AgentOptions& o) {
  const auto started = Clock::now();
  const auto deadline = started + std::chrono::seconds(o.timeout_seconds);
  if (o.prompt.find_first_not_of(" \t\r\n") == std::string::npos)
    return fail_with(kUsage, "the prompt is empty");

  // 1. The configuration.
  auto loaded = config::load(o.config.config_path);
  if (!loaded) return report(loaded.error());
  config::Config& config = *loaded;
  if (!config.agent.configured) {
    return fail_with(kUsage, std::string("the configuration") +
                                 (config.source.empty() ? "" : " " + config.source.string()) +
                                 " has no [agent] table naming the model provider (see "
                                 "docs/agent.md; give the file with --config)");
  }
  const std::string model = o.model.value_or(config.agent.model);
  if (model.empty() || model.find_first_of("\"\\\r\n") != std::string::npos)
    return fail_with(kUsage, "--model: not a model name");

  // 2. The provider, decided on the host.
  if (const int status = check_provider(config, o); status != kOk) return status;

  Watchdog watchdog(deadline, o.timeout_seconds);

  // 3. The sandbox. Its PEP reads the key from this process's environment when it starts.
  if (!sandbox_running(o.name)) {
    const char* key = std::getenv(config.agent.key_env.c_str());
    if (key == nullptr || *key == '\0') {
      return fail_with(kUsage, "$" + config.agent.key_env +
                                   " is not set: the PEP injects it on the host for the "
                                   "provider (it never enters the sandbox)");
    }
  }
  if (const int status = ensure_sandbox(o); status != kOk) return status;
  const auto finish = [&](int status) {
    if (o.remove) with_stdout_on_stderr([&] { return run_down(o.name, 30); });
    return status;
  };

  // 4. OpenClaw's configuration, written as root. The image has already fixed the installed
  // OpenClaw (its lifecycle marker, its model-catalog deadline: src/image/profiles/agent.toml).
  const std::string setup =
      "set -e\n"
      "command -v openclaw >/dev/null || { echo 'OpenClaw is not installed in this sandbox "
      "(start it with --profile agent)' >&2; exit 3; }\n"
      "mkdir -p " +
      shell_quote(kGuestDir) + "\numask 077\ncat > " + shell_quote(kGuestConfig) +
      "\nchown -R sandbox:sandbox " + shell_quote(kGuestDir) + "\nchmod 700 " +
      shell_quote(kGuestDir) + "\n";
  auto prepared =
      run_in_guest(o, "root", {"sh", "-c", setup}, agent::openclaw_config(config.agent, model));
  if (!prepared) return finish(report(prepared.error()));
  if (prepared->status != 0) {
    const std::string why = agent::tail_lines(prepared->err, 3);
    return finish(
        fail_with(kFailure, "cannot prepare sandbox " + o.name + ": " +
                                (why.empty() ? "exit status " + std::to_string(prepared->status)
                                             : why.substr(0, why.size() - 1))));
  }

  // 5. The run, bounded inside the guest by `timeout` (which signals OpenClaw's whole process
  // group) and by OpenClaw's own deadline a little earlier.
  const auto left =
      std::chrono::duration_cast<std::chrono::seconds>(deadline - Clock::now()).count();
  if (left < 15)
    return finish(fail_with(kFailure, "no time left for OpenClaw within --timeout " +
                                          std::to_string(o.timeout_seconds) + " s"));
  std::vector<std::string> command = {"timeout",
                                      "-k",
                                      "5",
                                      std::to_string(left),
                                      "openclaw",
                                      "agent",
                                      "exec",
                                      "--config",
                                      std::string(kGuestConfig),
                                      "--json",
                                      "--timeout",
                                      std::to_string(left - 5),
                                      "--message-file",
                                      "-"};
  std::vector<std::string> env = {"OPENCLAW_PROXY_URL=" + std::string(agent::kGuestProxyUrl),
                                  "OPENCLAW_NO_AUTO_UPDATE=1"};
  auto ran = run_in_guest(o, "sandbox", std::move(command), o.prompt, std::move(env));
  if (!ran) return finish(report(ran.error()));
  if (o.verbose) std::cerr << ran->err;
  const agent::Outcome outcome = agent::parse_envelope(ran->out);
  if (outcome.ok) {
    std::cout << outcome.final_text;
    if (outcome.final_text.empty() || outcome.final_text.back() != '\n') std::cout << '\n';
    std::cout.flush();
    return finish(kOk);
  }
  std::string why;
  if (Clock::now() >= deadline - std::chrono::seconds(6) &&
      (ran->status == 124 || ran->status == 137 || outcome.status == "timeout")) {
    why = "no answer within " + std::to_string(o.timeout_seconds) + " s";
  } else if (outcome.status == "timeout") {
    why = "OpenClaw gave up: " + outcome.error;
  } else {
    why = "OpenClaw failed (exit status " + std::to_string(ran->status) + "): " + outcome.error;
  }
  const std::string diagnostics = o.verbose ? "" : agent::tail_lines(ran->err, 8);
  if (!diagnostics.empty()) std::cerr << "pexi agent: OpenClaw's last words:\n" << diagnostics;
  return finish(fail_with(kFailure, why));
}

}  // namespace

void add_agent_commands(CLI::App& app, Action& action) {
  auto o = std::make_shared<AgentOptions>();
  auto* cmd = app.add_subcommand(
      "agent",
      "Run OpenClaw one-shot on PROMPT in a sandbox (profile agent) and print its answer.\n"
      "The model provider is [agent] of the configuration; the provider's key stays on the "
      "host: the PEP injects it (rule agent-provider). The sandbox is booted when it is not "
      "running and left running afterwards (--rm stops it)");
  add_config_options(*cmd, o->config);
  cmd->get_option("--resolve")->allow_extra_args(false);
  cmd->add_option("--name", o->name, "Sandbox name")->capture_default_str();
  cmd->add_option("--model", o->model, "Model name (default: [agent] model)");
  cmd->add_option("--timeout", o->timeout_seconds,
                  "Seconds for the whole run, boot included; then it fails")
      ->capture_default_str()
      ->check(CLI::Range(10u, 86400u));
  cmd->add_option("--memory", o->memory_mib, "Guest memory in MiB when booting")
      ->capture_default_str()
      ->check(CLI::Range(512u, 1024u * 1024u));
  cmd->add_option("--cpus", o->cpus, "Virtual CPUs when booting")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  cmd->add_flag("--rm", o->remove, "Stop the sandbox afterwards");
  cmd->add_flag("-v,--verbose", o->verbose, "Show OpenClaw's diagnostics (stderr)");
  cmd->add_option("PROMPT", o->prompt, "What to ask the agent")->required();
  cmd->callback([&action, o] { action = [o] { return run_agent(*o); }; });
}

}  // namespace pexi::cli
