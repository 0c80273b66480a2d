// pexi up / exec / shell / run / status / down: sandboxes (docs/vm.md).
//
// `up` starts a detached supervisor (this binary again, as the hidden `pexi __supervise`, in a
// session of its own) and waits for it to report the guest READY; `run` runs the supervisor in
// its own process instead. `exec`, `shell`, `status` and `down` talk to a supervisor through
// its control socket.
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "cli/sandbox_cli.hpp"
#include "common/log.hpp"
#include "common/paths.hpp"
#include "common/utf8.hpp"
#include "config/config.hpp"
#include "image/image.hpp"
#include "mux/exec.hpp"
#include "pep/runtime.hpp"
#include "tls/ca.hpp"
#include "vm/control.hpp"
#include "vm/fd.hpp"
#include "vm/state.hpp"
#include "vm/supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <variant>

namespace pexi::cli {
namespace {

namespace fs = std::filesystem;
namespace exec = mux::exec;
using vm::UniqueFd;
using namespace std::chrono_literals;

constexpr int kSandboxGone = 255;    // `pexi exec`: the sandbox went away mid-command (like ssh)
constexpr int kSandboxFailed = 125;  // `pexi run`: the sandbox did not come up (like docker run)

// --- options ---------------------------------------------------------------------------------

void add_up_options(CLI::App& command, UpOptions& o, bool with_name) {
  add_config_options(command, o.config);
  // One value per --resolve, so that `--resolve A=1 -- CMD` leaves CMD alone.
  command.get_option("--resolve")->allow_extra_args(false);
  if (with_name) command.add_option("--name", o.name, "Sandbox name")->capture_default_str();
  command.add_option("--cpus", o.cpus, "Virtual CPUs")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  command.add_option("--memory", o.memory_mib, "Memory in MiB")
      ->capture_default_str()
      ->check(CLI::Range(128u, 1024u * 1024u));
  command.add_option("--workspace", o.workspace,
                     "Host directory shared read-write as /workspace in the guest (9p)");
  command.add_option("--accel", o.accel, "auto (KVM when a probe guest boots with it), kvm, tcg")
      ->capture_default_str();
  command.add_option("--profile", o.profile, "Image profile")->capture_default_str();
  command.add_flag("--guest-debug", o.guest_debug, "Log pexi-guest's boot steps to console.log");
}

void add_exec_options(CLI::App& command, ExecOptions& o, bool with_name, bool with_tty) {
  if (with_name) command.add_option("--name", o.name, "Sandbox name")->capture_default_str();
  command.add_option("--user", o.user, "sandbox (uid 1000) or root")->capture_default_str();
  command.add_option("-e,--env", o.env, "NAME=VALUE for the command (repeatable)")
      ->allow_extra_args(false);
  command.add_option("-w,--cwd", o.cwd, "Working directory in the guest (default /workspace)");
  if (with_tty) command.add_flag("-t,--tty", o.tty, "Run on a pseudo-terminal");
  command.add_flag("--no-stdin", o.no_stdin, "Give the command /dev/null as stdin");
}

// --- shared ----------------------------------------------------------------------------------

// $PEXI_GUEST, else pexi-guest next to this pexi binary (the build puts it there).
Result<fs::path> find_guest_binary() {
  if (const char* env = std::getenv("PEXI_GUEST"); env != nullptr && *env != '\0') {
    return fs::path(env);
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& candidate :
         {self.parent_path() / "pexi-guest", self.parent_path() / "guest" / "pexi-guest",
          self.parent_path() / ".." / "lib" / "pexi" / "pexi-guest"}) {
      if (fs::is_regular_file(candidate, ec)) return candidate;
    }
  }
  return fail(Code::usage_error, "pexi-guest not found next to " +
                                     (ec ? std::string("pexi") : self.string()) +
                                     " (build it, or set PEXI_GUEST)");
}

// The guest may write anything in its workspace, so the workspace must not hold what decides or
// records its own policy, nor pexi's keys and images: refused when it is, contains, or lies
// inside any of these.
Result<void> check_workspace(const fs::path& workspace, const ConfigOptions& options,
                             const config::Config& config) {
  std::vector<std::pair<std::string, fs::path>> guarded = {
      {"pexi's home (CA key, sandbox state)", pexi_home()},
      {"the image cache", cache_dir()},
      {"the audit log", config.audit.path},
  };
  std::error_code ec;
  if (options.config_path) {
    guarded.emplace_back("the configuration file", *options.config_path);
  } else if (fs::exists("pexi.toml", ec)) {
    guarded.emplace_back("the configuration file", "pexi.toml");
  }
  if (!config.policy.opa.policy_dir.empty())
    guarded.emplace_back("the OPA policy directory", config.policy.opa.policy_dir);
  auto within = [](const fs::path& inner, const fs::path& outer) {
    auto [end, _] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
    return end == outer.end();
  };
  for (const auto& [what, path] : guarded) {
    const fs::path absolute = fs::weakly_canonical(fs::absolute(path, ec), ec);
    if (ec) continue;
    if (within(absolute, workspace) || within(workspace, absolute))
      return fail(Code::usage_error, "workspace " + workspace.string() + " would expose " + what +
                                         " (" + absolute.string() +
                                         ") to the guest, which could change it; share a "
                                         "directory that does not hold it");
  }
  return {};
}

// Everything a sandbox needs, checked before anything starts: the config (errors are usage
// errors, exit 2), the workspace, pexi-guest and the image (built on first use).
Result<vm::SandboxOptions> prepare(const UpOptions& o, bool show_image_progress) {
  vm::SandboxOptions s;
  PEXI_TRY(vm::check_sandbox_name(o.name));
  s.name = o.name;
  s.home = pexi_home();
  PEXI_TRY_ASSIGN(s.config, config::load(o.config.config_path));
  PEXI_TRY(pep::parse_resolve_overrides(o.config.resolve));  // the PEP parses them again
  s.cpus = o.cpus;
  s.memory_mib = o.memory_mib;
  PEXI_TRY_ASSIGN(s.accel, vm::parse_accel_request(o.accel));
  s.guest_debug = o.guest_debug;
  if (const char* extra = std::getenv("PEXI_KERNEL_APPEND")) s.kernel_append = extra;
  if (const char* qemu = std::getenv("PEXI_QEMU"); qemu != nullptr && *qemu != '\0')
    s.qemu_binary = qemu;
  if (const char* raw = std::getenv("PEXI_BENCH_RAW_PORT"); raw != nullptr && *raw == '/')
    s.raw_port_socket = fs::path(raw);
  if (o.workspace) {
    std::error_code ec;
    const fs::path dir = fs::absolute(*o.workspace, ec);
    if (ec || !fs::is_directory(dir, ec))
      return fail(Code::usage_error, "workspace " + *o.workspace + " is not a directory");
    s.workspace = fs::canonical(dir, ec);
    if (ec) return fail(Code::usage_error, "workspace " + *o.workspace + ": " + ec.message());
    PEXI_TRY(check_workspace(*s.workspace, o.config, s.config));
  }
  s.pep_command = sandbox_pep_command(o.name, o.config, s.workspace);
  PEXI_TRY_ASSIGN(s.guest_binary, find_guest_binary());
  image::EnsureOptions image_options;
  image_options.profile = o.profile;
  image_options.progress = show_image_progress ? stderr : nullptr;
  // The image holds no CA (it comes with each boot); the key check still makes sure the CA key
  // is in no artefact.
  PEXI_TRY_ASSIGN(auto ca, tls::CertificateAuthority::load_or_create(s.home / "ca"));
  image_options.ca_cert = ca.cert_path();
  image_options.ca_key = ca.cert_path().parent_path() / "ca.key";
  PEXI_TRY_ASSIGN(s.image, image::ensure(image_options));
  return s;
}

std::string seconds_text(std::int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000.0);
  return buf;
}

// Signals for a command that must clean up (exec forwards them, run shuts the VM down): blocked
// in every thread and collected by one thread that writes their numbers into a pipe.
class SignalPipe {
 public:
  SignalPipe() {
    sigset_t set = signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0) {
      read_.reset(p[0]);
      write_.reset(p[1]);
    }
    std::thread([fd = write_.get(), set] {
      for (;;) {
        int number = 0;
        if (sigwait(&set, &number) != 0) continue;
        const unsigned char byte = static_cast<unsigned char>(number);
        [[maybe_unused]] auto n = ::write(fd, &byte, 1);
      }
    }).detach();  // lives until the process ends, and so must the pipe's write end (below)
  }
  // The signal thread may still write after this: its write end stays open (a reused descriptor
  // number must never receive its bytes), and with no reader left a write just fails.
  ~SignalPipe() { (void)write_.release(); }
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;
  int fd() const { return read_.get(); }
  // Signal numbers received so far.
  std::vector<int> drain() const {
    std::vector<int> out;
    unsigned char buf[64];
    ssize_t n;
    while ((n = ::read(read_.get(), buf, sizeof buf)) > 0)
      for (ssize_t i = 0; i < n; ++i) out.push_back(buf[i]);
    return out;
  }
  static sigset_t signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&set, sig);
    return set;
  }

 private:
  UniqueFd read_;
  UniqueFd write_;
};

// While a sandbox boots in this process: an interrupt (not a window resize) calls `interrupted`,
// which ends the process.
class BootWatch {
 public:
  BootWatch(const SignalPipe& signals, std::function<void()> interrupted)
      : thread_([this, &signals, interrupted = std::move(interrupted)] {
          pollfd p{signals.fd(), POLLIN, 0};
          while (!done_.load()) {
            if (::poll(&p, 1, 200) <= 0 || done_.load()) continue;
            for (int sig : signals.drain())
              if (sig != SIGWINCH) interrupted();
          }
        }) {}
  ~BootWatch() {
    done_.store(true);
    thread_.join();
  }
  BootWatch(const BootWatch&) = delete;
  BootWatch& operator=(const BootWatch&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Raw mode on the local terminal for `shell`, restored on every way out.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (::isatty(fd) == 0 || ::tcgetattr(fd, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(fd, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

std::pair<std::uint16_t, std::uint16_t> terminal_size() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
    return {ws.ws_row, ws.ws_col};
  if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
    return {ws.ws_row, ws.ws_col};
  return {24, 80};
}

// --- the exec client -------------------------------------------------------------------------

// Speaks the exec protocol over a control connection that the supervisor turned into an `exec`
// stream; returns pexi exec's exit status.
int run_exec_client(UniqueFd sock, const ExecOptions& o, const SignalPipe& signals) {
  exec::Request request;
  request.argv = o.command;
  request.env = o.env;
  if (o.cwd) request.cwd = *o.cwd;
  request.pty = o.tty;
  request.stdin_closed = o.no_stdin;
  if (o.tty) {
    std::tie(request.rows, request.cols) = terminal_size();
    if (const char* term = std::getenv("TERM"); term != nullptr && *term != '\0')
      request.env.insert(request.env.begin(), std::string("TERM=") + term);
  }
  if (auto ok = exec::check(request); !ok)
    return report(Error{Code::usage_error, ok.error().message});
  std::string out;
  exec::encode(request, out);

  std::optional<RawTerminal> raw;
  if (o.tty) raw.emplace(o.stdin_fd);
  vm::set_nonblocking(sock.get());
  bool stdin_open = !o.no_stdin;
  exec::Decoder decoder(mux::Direction::to_host);
  std::optional<exec::Exit> exit_message;
  int interrupts = 0;
  bool stdout_ok = true, stderr_ok = true;
  std::string buffer_storage(256 * 1024, '\0');
  char* buffer = buffer_storage.data();
  const std::size_t buffer_size = buffer_storage.size();

  auto write_local = [](int fd, bool& ok, std::string_view data) {
    if (ok) ok = vm::write_all(fd, data);
  };

  while (!exit_message) {
    pollfd fds[3] = {
        {sock.get(), static_cast<short>(POLLIN | (out.empty() ? 0 : POLLOUT)), 0},
        {stdin_open && out.size() < 256 * 1024 ? o.stdin_fd : -1, POLLIN, 0},
        {signals.fd(), POLLIN, 0},
    };
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if ((fds[2].revents & POLLIN) != 0) {
      for (int sig : signals.drain()) {
        if (sig == SIGWINCH) {
          if (o.tty) {
            auto [rows, cols] = terminal_size();
            exec::encode(exec::Resize{rows, cols}, out);
          }
          continue;
        }
        // Forwarded to the command's process group; the third interrupt gives up on it (the
        // connection closes, and the guest hangs up on the command).
        if (++interrupts >= 3) {
          std::cerr << "pexi: giving up on the command\n";
          return kInterrupted;
        }
        exec::encode(exec::Signal{static_cast<std::uint8_t>(sig)}, out);
      }
    }
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t n = ::read(o.stdin_fd, buffer, buffer_size);
      if (n > 0) {
        exec::encode_data(exec::MessageType::stdin_data,
                          std::string_view(buffer, static_cast<std::size_t>(n)), out);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        stdin_open = false;
        exec::encode(exec::StdinEof{}, out);
      }
    }
    if ((fds[0].revents & POLLOUT) != 0) {
      const ssize_t n = ::send(sock.get(), out.data(), out.size(), MSG_NOSIGNAL);
      if (n > 0) out.erase(0, static_cast<std::size_t>(n));
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t n = ::read(sock.get(), buffer, buffer_size);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
      std::string_view input(buffer, n > 0 ? static_cast<std::size_t>(n) : 0);
      while (!input.empty() && !exit_message) {
        auto message = decoder.next(input);
        if (!message) {
          raw.reset();
          return report(
              Error{Code::io_error, "bad answer from the guest: " + message.error().message});
        }
        if (!*message) break;
        std::visit(
            [&](auto& m) {
              using T = std::decay_t<decltype(m)>;
              if constexpr (std::is_same_v<T, exec::StdoutData>) {
                write_local(o.stdout_fd, stdout_ok, m.bytes);
              } else if constexpr (std::is_same_v<T, exec::StderrData>) {
                write_local(o.stderr_fd, stderr_ok, m.bytes);
              } else if constexpr (std::is_same_v<T, exec::Exit>) {
                exit_message = m;
              }
            },
            **message);
      }
    }
  }
  raw.reset();
  if (!exit_message) {
    std::cerr << "pexi: the sandbox went away before the command finished\n";
    return kSandboxGone;
  }
  if (exit_message->kind == exec::ExitKind::not_started)
    std::cerr << "pexi: " << for_terminal(exit_message->message) << '\n';  // guest-written
  return exec::exit_status(*exit_message);
}

std::string exec_request_line(const ExecOptions& o) {
  return boost::json::serialize(boost::json::object{{"op", "exec"}, {"user", o.user}});
}

Result<vm::Status> running_status(const std::string& name) {
  PEXI_TRY(vm::check_sandbox_name(name));
  const auto paths = vm::sandbox_paths(pexi_home(), name);
  auto status = vm::read_status(paths.status);
  if (!status)
    return fail(Code::io_error, "no sandbox named " + name + " (start it with 'pexi up" +
                                    (name == "default" ? "" : " --name " + name) + "')");
  const auto observed = vm::observe(*status);
  if (observed.state != vm::State::running)
    return fail(Code::io_error, "sandbox " + name + " is " + vm::state_name(observed.state) +
                                    (observed.reason.empty() ? "" : " (" + observed.reason + ")"));
  return status;
}

int exec_in(const std::string& name, const ExecOptions& o, const SignalPipe& signals) {
  if (o.user != "sandbox" && o.user != "root")
    return report(Error{Code::usage_error, "--user must be sandbox or root"});
  if (o.command.empty()) return report(Error{Code::usage_error, "no command given"});
  const auto paths = vm::sandbox_paths(pexi_home(), name);
  UniqueFd sock;
  auto answer = vm::control_call(paths.control, exec_request_line(o), 60s, &sock);
  if (!answer) return report(answer.error());
  return run_exec_client(std::move(sock), o, signals);
}

// --- up / __supervise ------------------------------------------------------------------------

std::vector<std::string> supervise_args(const UpOptions& o, int notify_fd) {
  std::vector<std::string> a = {"__supervise",
                                "--name",
                                o.name,
                                "--cpus",
                                std::to_string(o.cpus),
                                "--memory",
                                std::to_string(o.memory_mib),
                                "--accel",
                                o.accel,
                                "--profile",
                                o.profile,
                                "--notify-fd",
                                std::to_string(notify_fd)};
  if (o.config.config_path) {
    a.push_back("--config");
    a.push_back(fs::absolute(*o.config.config_path).string());
  }
  for (const auto& r : o.config.resolve) {
    a.push_back("--resolve");
    a.push_back(r);
  }
  if (o.workspace) {
    a.push_back("--workspace");
    a.push_back(fs::absolute(*o.workspace).string());
  }
  if (o.guest_debug) a.push_back("--guest-debug");
  return a;
}

void notify(int fd, const std::string& line) {
  if (fd >= 0) vm::write_all(fd, line + "\n");
}

int run_supervise(const UpOptions& o, int notify_fd) {
  // Signals end the sandbox cleanly once it is up; while it boots they end this process (and
  // QEMU with it, through its parent-death signal).
  SignalPipe signals;
  auto options = prepare(o, false);
  if (!options) {
    notify(notify_fd, "error " + options.error().message);
    return report(options.error());
  }
  std::optional<BootWatch> watch(std::in_place, signals, [notify_fd] {
    notify(notify_fd, "error interrupted while booting");
    std::_Exit(kInterrupted);
  });
  auto supervisor = vm::Supervisor::boot(std::move(*options), [notify_fd](const std::string& line) {
    notify(notify_fd, "progress " + line);
  });
  watch.reset();
  if (!supervisor) {
    std::string line = "error " + supervisor.error().message;
    notify(notify_fd, line);
    if (!supervisor.error().detail.empty())
      notify(notify_fd, "detail " + supervisor.error().detail);
    return report(supervisor.error());
  }
  const auto status = (*supervisor)->status();
  notify(notify_fd, "ready " + std::to_string(status.boot_ms.value_or(0)) + " " + status.accel);
  if (notify_fd >= 0) ::close(notify_fd);
  log_info("sandbox " + o.name + " is up");
  // Turns a signal into a clean shutdown; joined before the supervisor goes away (a detached one
  // could wake during the process's exit and use it after it was freed).
  int done_pipe[2];
  if (::pipe2(done_pipe, O_CLOEXEC) != 0)
    return report(Error{Code::io_error, "pipe: " + vm::errno_text(errno)});
  UniqueFd done_read(done_pipe[0]), done_write(done_pipe[1]);
  std::thread stopper([&] {
    pollfd p[2] = {{signals.fd(), POLLIN, 0}, {done_read.get(), POLLIN, 0}};
    while (::poll(p, 2, -1) <= 0) {
    }
    if (p[1].revents != 0) return;  // the sandbox ended by itself
    log_info("sandbox " + o.name + ": signal received, shutting down");
    (*supervisor)->shutdown();
  });
  const auto final_status = (*supervisor)->wait();
  done_write.reset();  // EOF wakes the stopper
  stopper.join();
  log_info("sandbox " + o.name + ": " + vm::state_name(final_status.state) + ": " +
           final_status.reason);
  return final_status.state == vm::State::stopped ? kOk : kFailure;
}

// Reads the supervisor's notify lines until ready or error; prints progress on stderr.
int wait_for_supervisor(int fd, const UpOptions& o, const vm::SandboxPaths& paths) {
  std::string pending;
  char buffer[4096];
  std::string error, detail;
  const auto started = std::chrono::steady_clock::now();
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buffer, static_cast<std::size_t>(n));
    std::size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      const std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      if (line.starts_with("progress ")) {
        std::cerr << "pexi up: " << line.substr(9) << '\n';
      } else if (line.starts_with("ready ")) {
        std::string rest = line.substr(6);
        const auto space = rest.find(' ');
        std::int64_t ms = 0;
        std::from_chars(rest.data(), rest.data() + std::min(space, rest.size()), ms);
        const std::string accel = space == std::string::npos ? "" : rest.substr(space + 1);
        std::cout << "sandbox " << o.name << " is up: ready in " << seconds_text(ms) << " ("
                  << accel << ")\n";
        return kOk;
      } else if (line.starts_with("error ")) {
        error = line.substr(6);
      } else if (line.starts_with("detail ")) {
        detail += line.substr(7) + "\n";
      } else if (!line.empty()) {
        detail += line + "\n";
      }
    }
  }
  (void)started;
  if (error.empty()) error = "the sandbox supervisor exited during boot";
  std::cerr << "pexi: " << error << '\n';
  if (!detail.empty()) std::cerr << detail;
  std::cerr << "(logs: " << paths.dir.string() << ")\n";
  return kFailure;
}

}  // namespace

int run_up(const UpOptions& o) {
  if (auto ok = vm::check_sandbox_name(o.name); !ok) return report(ok.error());
  const auto paths = vm::sandbox_paths(pexi_home(), o.name);
  if (vm::StateLock::held(paths))
    return report(Error{Code::io_error, "sandbox " + o.name + " is already running"});
  // Checked here so that config and image errors reach the user directly (exit 2 for usage).
  auto options = prepare(o, true);
  if (!options) return report(options.error());
  if (auto ok = ensure_private_dir(paths.dir); !ok) return report(ok.error());

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    return report(Error{Code::io_error, "pipe: " + vm::errno_text(errno)});
  UniqueFd notify_read(pipe_fds[0]), notify_write(pipe_fds[1]);
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  auto args = supervise_args(o, 3);
  std::vector<std::string> argv_store = {self.string()};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = paths.supervisor_log.string();

  // Double fork: the supervisor is nobody's child and in a session of its own, so closing the
  // terminal or ending `pexi up` does not touch it.
  const pid_t child = ::fork();
  if (child < 0) return report(Error{Code::io_error, "fork: " + vm::errno_text(errno)});
  if (child == 0) {
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    const int null_fd = ::open("/dev/null", O_RDWR);
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(null_fd, 0);
    ::dup2(log_fd >= 0 ? log_fd : null_fd, 1);
    ::dup2(log_fd >= 0 ? log_fd : null_fd, 2);
    ::dup2(notify_write.get(), 3);  // dup2 clears close-on-exec on 3
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  notify_write.reset();
  ::waitpid(child, nullptr, 0);
  return wait_for_supervisor(notify_read.get(), o, paths);
}

namespace {

// --- run -------------------------------------------------------------------------------------

int run_run(UpOptions up, const ExecOptions& e, bool keep_name) {
  if (e.command.empty()) return report(Error{Code::usage_error, "no command given"});
  if (e.user != "sandbox" && e.user != "root")
    return report(Error{Code::usage_error, "--user must be sandbox or root"});
  if (!keep_name) up.name = "run-" + std::to_string(::getpid());
  SignalPipe signals;
  // `run` keeps stderr for the command; the image's progress shows on a terminal only.
  auto options = prepare(up, ::isatty(STDERR_FILENO) != 0);
  if (!options) return report(options.error());
  std::optional<BootWatch> watch(std::in_place, signals, [] {
    std::cerr << "pexi: interrupted while booting\n";
    std::_Exit(kInterrupted);  // QEMU dies with us (parent-death signal)
  });
  auto supervisor = vm::Supervisor::boot(std::move(*options), [](const std::string& line) {
    if (::isatty(STDERR_FILENO) != 0) std::cerr << "pexi run: " << line << '\n';
  });
  watch.reset();
  if (!supervisor) {
    const auto& error = supervisor.error();
    std::cerr << "pexi: " << error.message << '\n';
    if (!error.detail.empty()) std::cerr << error.detail << '\n';
    return kSandboxFailed;
  }
  const int status = exec_in(up.name, e, signals);
  (*supervisor)->shutdown();
  const auto final_status = (*supervisor)->wait();
  if (final_status.state != vm::State::stopped)
    std::cerr << "pexi: sandbox " << up.name << " " << vm::state_name(final_status.state) << ": "
              << final_status.reason << '\n';
  if (!keep_name) {
    std::error_code ec;
    fs::remove_all((*supervisor)->paths().dir, ec);  // a run's sandbox is not kept
  }
  return status;
}

// --- status / down ---------------------------------------------------------------------------

std::string uptime_text(std::int64_t seconds) {
  char buf[32];
  if (seconds < 60)
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(seconds));
  else if (seconds < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(seconds / 60),
                  static_cast<long long>(seconds % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(seconds / 3600),
                  static_cast<long long>(seconds / 60 % 60));
  return buf;
}

int run_status(bool as_json) {
  const auto all = vm::list_sandboxes(pexi_home());
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  if (as_json) {
    boost::json::array out;
    for (const auto& s : all) {
      const auto observed = vm::observe(s);
      auto value = boost::json::parse(vm::to_json(s));
      auto& o = value.as_object();
      o["state"] = vm::state_name(observed.state);
      o["reason"] = observed.reason;
      out.push_back(std::move(value));
    }
    std::cout << boost::json::serialize(out) << '\n';
    return kOk;
  }
  if (all.empty()) {
    std::cout << "no sandboxes (start one with 'pexi up')\n";
    return kOk;
  }
  std::printf("%-20s %-9s %-8s %-8s %-5s %-4s %-7s %-7s %s\n", "NAME", "STATE", "PID", "UPTIME",
              "ACCEL", "CPUS", "MEMORY", "BOOT", "NOTE");
  for (const auto& s : all) {
    const auto observed = vm::observe(s);
    const bool live = observed.state == vm::State::running ||
                      observed.state == vm::State::booting || observed.state == vm::State::stopping;
    const std::string pid = live && s.supervisor ? std::to_string(s.supervisor->pid) : "-";
    const std::string uptime = live ? uptime_text(now - s.started_unix) : "-";
    const std::string boot = s.boot_ms ? seconds_text(*s.boot_ms) : "-";
    const std::string memory = std::to_string(s.memory_mib) + "M";
    std::printf("%-20s %-9s %-8s %-8s %-5s %-4u %-7s %-7s %s\n", s.name.c_str(),
                vm::state_name(observed.state).c_str(), pid.c_str(), uptime.c_str(),
                s.accel.empty() ? "-" : s.accel.c_str(), s.cpus, memory.c_str(), boot.c_str(),
                live ? "" : observed.reason.c_str());
  }
  return kOk;
}

}  // namespace

int run_down(const std::string& name, unsigned timeout_seconds) {
  if (auto ok = vm::check_sandbox_name(name); !ok) return report(ok.error());
  const auto paths = vm::sandbox_paths(pexi_home(), name);
  auto status = vm::read_status(paths.status);
  if (!status) return report(Error{Code::io_error, "no sandbox named " + name});
  const auto observed = vm::observe(*status);
  const bool live = observed.state == vm::State::running || observed.state == vm::State::booting ||
                    observed.state == vm::State::stopping;
  bool forced = false;
  if (live && status->supervisor) {
    auto asked = vm::control_call(paths.control, R"({"op":"shutdown"})", 10s);
    if (!asked) log_info("pexi down: " + asked.error().message + "; stopping it the hard way");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
    while (status->supervisor->alive() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(50ms);
    if (status->supervisor->alive()) {
      // Its QEMU dies with it (parent-death signal).
      vm::kill_process(*status->supervisor, SIGKILL);
      forced = true;
      for (int i = 0; i < 100 && status->supervisor->alive(); ++i)
        std::this_thread::sleep_for(20ms);
    }
  }
  // Whatever the supervisor recorded must be gone, crashed or not.
  if (status->qemu && status->qemu->alive()) {
    vm::kill_process(*status->qemu, SIGKILL);
    forced = true;
  }
  // The state directory is the lock holder's: when a new `up` of this name holds it by now, its
  // status and sockets are its own and stay as they are.
  auto lock = vm::StateLock::acquire(paths, name);
  if (!lock) {
    std::cout << "sandbox " << name << (forced ? " killed" : " stopped")
              << " (and started again since)\n";
    return kOk;
  }
  auto final_status = vm::read_status(paths.status);
  vm::Status s = final_status ? *final_status : *status;
  if (s.state != vm::State::stopped && s.state != vm::State::crashed) {
    s.state = forced ? vm::State::crashed : vm::State::stopped;
    s.reason = forced ? "killed by 'pexi down'" : "stopped by 'pexi down'";
  }
  s.supervisor.reset();
  s.qemu.reset();
  if (auto ok = vm::write_status(paths.status, s); !ok) return report(ok.error());
  ::unlink(paths.control.c_str());
  ::unlink(paths.channel.c_str());
  if (!live)
    std::cout << "sandbox " << name << " was not running (" << vm::state_name(observed.state)
              << ")\n";
  else
    std::cout << "sandbox " << name << (forced ? " killed" : " stopped") << '\n';
  return kOk;
}

bool sandbox_running(const std::string& name) { return running_status(name).has_value(); }

Result<vm::Status> sandbox_status(const std::string& name) { return running_status(name); }

Result<void> check_workspace_exposure(const fs::path& workspace, const ConfigOptions& options,
                                      const config::Config& config) {
  return check_workspace(workspace, options, config);
}

int exec_in_sandbox(const ExecOptions& o) {
  static SignalPipe signals;  // one signal thread per process
  auto status = running_status(o.name);
  if (!status) return report(status.error());
  return exec_in(o.name, o, signals);
}

void add_vm_commands(CLI::App& app, Action& action) {
  // pexi up
  auto up = std::make_shared<UpOptions>();
  auto* up_cmd = app.add_subcommand(
      "up",
      "Boot a sandbox VM (no network device; its only way out is this host's PEP) and "
      "wait until it is ready");
  add_up_options(*up_cmd, *up, true);
  up_cmd->callback([&action, up] { action = [up] { return run_up(*up); }; });

  // pexi __supervise (hidden: the detached supervisor started by `up`)
  auto sup = std::make_shared<UpOptions>();
  auto notify_fd = std::make_shared<int>(-1);
  auto* sup_cmd = app.add_subcommand("__supervise", "");
  sup_cmd->group("");
  add_up_options(*sup_cmd, *sup, true);
  sup_cmd->add_option("--notify-fd", *notify_fd);
  sup_cmd->callback([&action, sup, notify_fd] {
    action = [sup, notify_fd] { return run_supervise(*sup, *notify_fd); };
  });

  // pexi exec
  auto ex = std::make_shared<ExecOptions>();
  auto* exec_cmd = app.add_subcommand(
      "exec", "Run a command in a sandbox; stdin, stdout, stderr and the exit status pass through");
  add_exec_options(*exec_cmd, *ex, true, true);
  exec_cmd->add_option("command", ex->command, "CMD [ARG...] (after --)")->required();
  exec_cmd->callback([&action, ex] {
    action = [ex] {
      SignalPipe signals;
      auto status = running_status(ex->name);
      if (!status) return report(status.error());
      return exec_in(ex->name, *ex, signals);
    };
  });

  // pexi shell
  auto sh = std::make_shared<ExecOptions>();
  auto* shell_cmd = app.add_subcommand("shell", "An interactive bash in a sandbox (on a pty)");
  add_exec_options(*shell_cmd, *sh, true, false);
  shell_cmd->callback([&action, sh] {
    action = [sh] {
      ExecOptions o = *sh;
      o.tty = true;
      o.command = {"bash", "-l"};
      SignalPipe signals;
      auto status = running_status(o.name);
      if (!status) return report(status.error());
      return exec_in(o.name, o, signals);
    };
  });

  // pexi run
  auto run_up_options = std::make_shared<UpOptions>();
  auto run_exec = std::make_shared<ExecOptions>();
  auto* run_cmd = app.add_subcommand(
      "run",
      "Boot a sandbox, run one command in it, stop it: up + exec + down. The exit status "
      "is the command's");
  add_up_options(*run_cmd, *run_up_options, false);
  auto* run_name = run_cmd->add_option("--name", run_up_options->name,
                                       "Sandbox name (default: run-PID, removed afterwards)");
  add_exec_options(*run_cmd, *run_exec, false, true);
  run_cmd->add_option("command", run_exec->command, "CMD [ARG...] (after --)")->required();
  run_cmd->callback([&action, run_up_options, run_exec, run_name] {
    const bool keep_name = run_name->count() > 0;
    action = [run_up_options, run_exec, keep_name] {
      return run_run(*run_up_options, *run_exec, keep_name);
    };
  });

  // pexi status
  auto as_json = std::make_shared<bool>(false);
  auto* status_cmd = app.add_subcommand("status", "List sandboxes: running, crashed or stopped");
  status_cmd->add_flag("--json", *as_json, "One JSON array");
  status_cmd->callback([&action, as_json] { action = [as_json] { return run_status(*as_json); }; });

  // pexi down
  auto down_name = std::make_shared<std::string>("default");
  auto down_timeout = std::make_shared<unsigned>(30);
  auto* down_cmd = app.add_subcommand(
      "down", "Stop a sandbox: the guest powers off; after the timeout it is killed");
  down_cmd->add_option("--name", *down_name, "Sandbox name")->capture_default_str();
  down_cmd->add_option("--timeout", *down_timeout, "Seconds to wait for a clean poweroff")
      ->capture_default_str();
  down_cmd->callback([&action, down_name, down_timeout] {
    action = [down_name, down_timeout] { return run_down(*down_name, *down_timeout); };
  });
}

}  // namespace pexi::cli
