#include "policy/opa_server.hpp"

#include "common/log.hpp"
#include "common/paths.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifndef PEXI_OPA_VERSION
#error "PEXI_OPA_VERSION must be defined (CMake reads it from scripts/install-opa)"
#endif

namespace pexi::policy::opa {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kKeptLines = 12;       // OPA stderr lines quoted in a startup failure
constexpr std::size_t kMaxLineBytes = 4096;  // longer lines are cut when relayed
constexpr auto kHealthTimeout = 500ms;       // one /health probe
constexpr auto kHealthInterval = 25ms;       // between probes while starting
constexpr auto kWatchInterval = 250ms;       // liveness check while healthy (stderr EOF is faster)
constexpr auto kHealthyResetsBackoff = 60s;  // a run this long resets the restart backoff
constexpr auto kTermGrace = 3s;              // SIGTERM -> SIGKILL
constexpr std::size_t kMaxSocketDirBytes = 80;  // sun_path holds 108 bytes with the file name

bool is_executable_file(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Socket directories of pexi processes that were killed outright (no destructor ran):
// "pexi-opa-<pid>-XXXXXX" of this user whose pid no longer exists.
void remove_stale_socket_dirs(const std::string& base) {
  std::error_code ec;
  const std::string prefix = "pexi-opa-";
  for (const auto& entry : std::filesystem::directory_iterator(base, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix)) continue;
    const auto dash = name.find('-', prefix.size());
    if (dash == std::string::npos) continue;
    const std::string pid_text = name.substr(prefix.size(), dash - prefix.size());
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos ||
        pid_text.size() > 9)
      continue;
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::getuid())
      continue;
    const auto pid = static_cast<pid_t>(std::stol(pid_text));
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      std::filesystem::remove_all(entry.path(), ignored);
    }
  }
}

Result<std::filesystem::path> make_socket_dir() {
  std::vector<std::string> bases;
  if (const char* tmp = std::getenv("TMPDIR"); tmp != nullptr && tmp[0] == '/')
    bases.emplace_back(tmp);
  bases.emplace_back("/tmp");
  std::string last_error;
  for (const auto& base : bases) {
    if (base.size() > kMaxSocketDirBytes) continue;
    remove_stale_socket_dirs(base);
    std::string path = base + "/pexi-opa-" + std::to_string(::getpid()) + "-XXXXXX";
    if (::mkdtemp(path.data()) != nullptr) return std::filesystem::path(path);  // mode 0700
    last_error = errno_text(path.c_str());
  }
  return fail(Code::io_error, "cannot create a private directory for OPA's socket", last_error);
}

int poll_for(std::initializer_list<int> fds, std::chrono::milliseconds timeout,
             std::array<bool, 2>& readable) {
  std::array<pollfd, 2> p{};
  nfds_t n = 0;
  for (int fd : fds) p[n++] = pollfd{fd, POLLIN, 0};
  const int rc = ::poll(p.data(), n, static_cast<int>(timeout.count()));
  readable = {false, false};
  for (nfds_t i = 0; i < n && rc > 0; ++i)
    readable[i] = (p[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
  return rc;
}

// OPA's JSON log lines as one readable line ("warning: OPA running with uid or gid 0 ...");
// anything else (load errors are plain text on stdout) as it came.
std::string readable(const std::string& line) {
  boost::system::error_code ec;
  const boost::json::value entry = boost::json::parse(line, ec);
  if (ec || !entry.is_object()) return line;
  const auto& object = entry.get_object();
  const auto* msg = object.if_contains("msg");
  if (msg == nullptr || !msg->is_string()) return line;
  std::string out;
  if (const auto* level = object.if_contains("level"); level != nullptr && level->is_string())
    out = std::string(level->get_string()) + ": ";
  out += msg->get_string();
  if (const auto* err = object.if_contains("err"); err != nullptr && err->is_string())
    out += " (" + std::string(err->get_string()) + ")";
  return out;
}

}  // namespace

std::string_view pinned_opa_version() noexcept { return PEXI_OPA_VERSION; }

Result<std::filesystem::path> find_opa_binary(const std::optional<std::string>& explicit_binary) {
  if (explicit_binary) {
    if (is_executable_file(*explicit_binary)) return std::filesystem::path(*explicit_binary);
    return fail(Code::config_error,
                "OPA binary " + *explicit_binary + " does not exist or is not executable");
  }
  if (const char* env = std::getenv("PEXI_OPA"); env != nullptr && *env != '\0') {
    if (is_executable_file(env)) return std::filesystem::path(env);
    return fail(Code::config_error,
                std::string("PEXI_OPA: ") + env + " does not exist or is not executable");
  }
  const auto cached = cache_dir() / "opa" / std::string(pinned_opa_version()) / "opa";
  if (is_executable_file(cached)) return cached;
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string_view rest(path);
    // Bounded: every round consumes one PATH entry.
    while (true) {
      const auto colon = rest.find(':');
      const std::string_view entry = rest.substr(0, colon);
      if (!entry.empty()) {
        const auto candidate = std::filesystem::path(entry) / "opa";
        if (is_executable_file(candidate)) return candidate;
      }
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  return fail(Code::config_error,
              "no OPA binary found: set PEXI_OPA, run scripts/install-opa (builds OPA " +
                  std::string(pinned_opa_version()) + " into " + cached.string() +
                  "), or put opa on PATH");
}

ManagedServer::ManagedServer(ManagedOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<ManagedServer>> ManagedServer::start(ManagedOptions options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(options.policy_dir, ec))
    return fail(Code::config_error,
                "policy.opa.policy_dir: " + options.policy_dir.string() + " is not a directory");
  options.policy_dir = std::filesystem::absolute(options.policy_dir, ec);
  if (!is_executable_file(options.binary))
    return fail(Code::config_error,
                "OPA binary " + options.binary.string() + " does not exist or is not executable");

  std::unique_ptr<ManagedServer> server(new ManagedServer(std::move(options)));
  PEXI_TRY_ASSIGN(server->dir_, make_socket_dir());
  server->endpoint_ = Endpoint{"http://opa", (server->dir_ / "opa.sock").string()};
  server->health_ = std::make_unique<Client>(server->endpoint_, kHealthTimeout);
  if (::pipe2(server->stop_pipe_, O_CLOEXEC | O_NONBLOCK) != 0)
    return fail(Code::io_error, "cannot start OPA", errno_text("pipe2"));

  // The supervisor blocks every signal: pexi's signal handling (sigwait in the main thread,
  // Asio's signal_set) must never see SIGTERM land on this thread and kill the process.
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  server->thread_ = std::thread([raw = server.get()] { raw->run(); });
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);

  std::unique_lock lock(server->mutex_);
  // Bounded by supervise()'s own start deadline; the extra margin only guards against a bug.
  const bool done = server->started_cv_.wait_for(lock, server->options_.start_timeout + 30s,
                                                 [&] { return server->start_done_; });
  if (!done) return fail(Code::config_error, "OPA did not start (supervisor did not report)");
  if (server->start_failure_) return *server->start_failure_;
  return server;
}

ManagedServer::~ManagedServer() {
  if (thread_.joinable()) {
    const char byte = 'x';
    [[maybe_unused]] const auto n = ::write(stop_pipe_[1], &byte, 1);
    thread_.join();
  }
  for (int fd : stop_pipe_)
    if (fd >= 0) ::close(fd);
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

bool ManagedServer::wait_stop(std::chrono::milliseconds d) {
  std::array<bool, 2> readable{};
  return poll_for({stop_pipe_[0]}, d, readable) > 0 && readable[0];
}

void ManagedServer::run() {
  bool first = true;
  auto backoff = options_.min_backoff;
  // Bounded by the stop pipe: every round either ends on stop or waits `backoff` first.
  while (true) {
    int stderr_fd = -1;
    const auto started = Clock::now();
    auto pid = spawn(stderr_fd);
    if (!pid) {
      if (first) {
        std::lock_guard lock(mutex_);
        start_failure_ = pid.error();
        start_done_ = true;
        started_cv_.notify_all();
        return;
      }
      log_error("opa: cannot restart OPA: " + pid.error().detail);
    } else {
      pid_.store(*pid);
      const Exit exit = supervise(*pid, stderr_fd, first);
      ::close(stderr_fd);
      pid_.store(0);
      healthy_.store(false);
      if (exit == Exit::stopped) return;
      if (first && exit == Exit::never_healthy) return;  // start() reports the failure
      first = false;
      if (Clock::now() - started > kHealthyResetsBackoff) backoff = options_.min_backoff;
    }
    log_error("opa: restarting OPA in " + std::to_string(backoff.count()) +
              " ms; decisions are denied until it is back");
    if (wait_stop(backoff)) return;
    backoff = std::min(backoff * 2, options_.max_backoff);
    restarts_.fetch_add(1);
  }
}

Result<pid_t> ManagedServer::spawn(int& stderr_fd) {
  // Everything the child needs is prepared here: between fork and exec only async-signal-safe
  // calls are allowed (other threads may hold locks).
  const std::string addr = "unix://" + endpoint_.unix_socket;
  std::vector<std::string> args = {options_.binary.string(),
                                   "run",
                                   "--server",
                                   "--addr",
                                   addr,
                                   "--unix-socket-perm",
                                   "600",
                                   "--skip-version-check",
                                   "--watch",
                                   "--ignore",
                                   "*_test.rego",
                                   "--ignore",
                                   ".*",
                                   "--log-level",
                                   "error",
                                   "--log-format",
                                   "json",
                                   "--shutdown-grace-period",
                                   "1",
                                   options_.policy_dir.string()};
  std::vector<std::string> env;
  for (const char* name : {"PATH", "HOME", "TMPDIR", "TZ", "ZONEINFO"}) {
    if (const char* value = std::getenv(name); value != nullptr)
      env.push_back(std::string(name) + "=" + value);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  sigset_t none;
  sigemptyset(&none);

  // A socket left by an OPA that was killed would make the new one fail to listen.
  ::unlink(endpoint_.unix_socket.c_str());

  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0)
    return fail(Code::config_error, "cannot start OPA", errno_text("pipe2"));
  const int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) {
    ::close(err[0]);
    ::close(err[1]);
    return fail(Code::config_error, "cannot start OPA", errno_text("/dev/null"));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // pexi died before the line above
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGXFSZ, SIGINT, SIGTERM, SIGHUP, SIGQUIT})
      ::sigaction(sig, &dfl, nullptr);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the supervisor thread blocks everything
    ::dup2(devnull, 0);
    ::dup2(err[1], 1);  // OPA prints load errors on stdout
    ::dup2(err[1], 2);
    ::execve(argv[0], argv.data(), envp.data());
    static constexpr char kExecFailed[] = "pexi: cannot execute OPA\n";
    [[maybe_unused]] const auto n = ::write(2, kExecFailed, sizeof(kExecFailed) - 1);
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::close(err[1]);
  ::close(devnull);
  if (pid < 0) {
    ::close(err[0]);
    errno = fork_errno;
    return fail(Code::config_error, "cannot start OPA", errno_text("fork"));
  }
  ::setpgid(pid, pid);  // also from here, so kill(-pid) works even before the child ran
  ::fcntl(err[0], F_SETFL, ::fcntl(err[0], F_GETFL) | O_NONBLOCK);
  stderr_fd = err[0];
  return pid;
}

ManagedServer::Exit ManagedServer::supervise(pid_t pid, int stderr_fd, bool first) {
  const auto deadline = Clock::now() + options_.start_timeout;
  bool healthy = false;
  bool stderr_open = true;
  // Bounded: ends when OPA exits, when asked to stop, or at `deadline` before it is healthy.
  while (true) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      relay(stderr_fd);
      if (!healthy) {
        if (first) {
          std::lock_guard lock(mutex_);
          std::string lines;
          for (const auto& line : last_lines_) lines += (lines.empty() ? "" : " | ") + line;
          start_failure_ = Error{
              Code::config_error,
              "OPA did not start on " + options_.policy_dir.string() + ": it " + exit_text(status),
              lines};
          start_done_ = true;
          started_cv_.notify_all();
        } else {
          log_error("opa: OPA (pid " + std::to_string(pid) + ") " + exit_text(status) +
                    " before it was healthy");
        }
        return Exit::never_healthy;
      }
      log_error("opa: OPA (pid " + std::to_string(pid) + ") " + exit_text(status));
      return Exit::died;
    }

    if (!healthy) {
      auto answer = health_->request("/health", nullptr, 4096);
      if (answer && answer->status == 200) {
        healthy = true;
        healthy_.store(true);
        if (first) {
          std::lock_guard lock(mutex_);
          start_done_ = true;
          started_cv_.notify_all();
        } else {
          log_info("opa: OPA is back (pid " + std::to_string(pid) + ")");
        }
      } else if (Clock::now() > deadline) {
        terminate(pid);
        const std::string what =
            "OPA was not healthy within " + std::to_string(options_.start_timeout.count()) + " ms";
        if (first) {
          std::lock_guard lock(mutex_);
          start_failure_ = Error{Code::config_error, what, answer ? "" : answer.error().detail};
          start_done_ = true;
          started_cv_.notify_all();
        } else {
          log_error("opa: " + what + "; killed it");
        }
        return Exit::never_healthy;
      }
    }

    std::array<bool, 2> readable{};
    const auto wait = healthy ? std::chrono::milliseconds(kWatchInterval) : kHealthInterval;
    if (stderr_open)
      poll_for({stop_pipe_[0], stderr_fd}, wait, readable);
    else
      poll_for({stop_pipe_[0]}, wait, readable);
    if (readable[0]) {
      terminate(pid);
      return Exit::stopped;
    }
    // EOF on stderr (OPA exited or closed it): stop polling it; waitpid notices the exit.
    if (stderr_open && readable[1] && relay(stderr_fd)) stderr_open = false;
  }
}

bool ManagedServer::relay(int stderr_fd) {
  std::array<char, 16384> buffer{};
  // Bounded: reads until the non-blocking pipe is empty (or at EOF).
  while (true) {
    const ssize_t n = ::read(stderr_fd, buffer.data(), buffer.size());
    if (n == 0) return true;
    if (n < 0) return false;
    for (ssize_t i = 0; i < n; ++i) {
      const char c = buffer[static_cast<std::size_t>(i)];
      if (c != '\n' && partial_line_.size() < kMaxLineBytes) {
        if (c != '\r') partial_line_.push_back(c);
        continue;
      }
      if (c != '\n') continue;  // over-long line: the rest is dropped up to its end
      if (!partial_line_.empty()) {
        log_info("opa: " + readable(partial_line_));
        std::lock_guard lock(mutex_);
        last_lines_.push_back(std::move(partial_line_));
        if (last_lines_.size() > kKeptLines) last_lines_.pop_front();
      }
      partial_line_.clear();
    }
  }
}

void ManagedServer::terminate(pid_t pid) {
  if (::kill(-pid, SIGTERM) != 0) ::kill(pid, SIGTERM);
  const auto deadline = Clock::now() + kTermGrace;
  int status = 0;
  // Bounded by kTermGrace, then SIGKILL, which cannot be ignored.
  while (Clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return;
    std::this_thread::sleep_for(20ms);
  }
  if (::kill(-pid, SIGKILL) != 0) ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
}

std::string ManagedServer::exit_text(int status) const {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

}  // namespace pexi::policy::opa
