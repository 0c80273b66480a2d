#include "vm/pep_process.hpp"

#include "common/utf8.hpp"
#include "vm/unix_socket.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace pexi::vm {
namespace {

using namespace std::chrono_literals;

constexpr auto kFirstBackoff = 200ms;
constexpr auto kMaxBackoff = 10'000ms;
constexpr auto kHealthyAfter = 30s;

// The last lines of the PEP's log: what it said before it ended.
std::string log_tail_of(const std::filesystem::path& log) {
  std::ifstream in(log, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  if (text.size() > 2048) text = text.substr(text.size() - 2048);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  const auto line = text.rfind('\n');
  return line == std::string::npos ? text : text.substr(line + 1);
}

}  // namespace

PepProcess::PepProcess(EventLoop& loop, Options options)
    : loop_(loop), options_(std::move(options)) {}

PepProcess::~PepProcess() { stop(); }

Result<std::unique_ptr<PepProcess>> PepProcess::start(EventLoop& loop, Options options) {
  PEXI_TRY_ASSIGN(auto pep, spawn(loop, std::move(options)));
  PEXI_TRY(pep->wait_ready());
  return pep;
}

Result<std::unique_ptr<PepProcess>> PepProcess::spawn(EventLoop& loop, Options options) {
  std::unique_ptr<PepProcess> pep(new PepProcess(loop, std::move(options)));
  int notify[2];
  if (::pipe2(notify, O_CLOEXEC) != 0) return fail(Code::io_error, "pipe: " + errno_text(errno));
  pep->notify_.reset(notify[0]);
  UniqueFd notify_write(notify[1]);
  PEXI_TRY(pep->spawn_one(notify_write.get()));
  return pep;
}

Result<void> PepProcess::wait_ready() {
  // One line: "ready", or "error MESSAGE"; EOF means it ended without saying.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
  while (notify_ && line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      stop(1000ms);
      const auto ms = options_.ready_timeout.count();
      return fail(
          Code::io_error,
          "the sandbox's PEP did not start within " +
              (ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms"),
          "log " + options_.log.string());
    }
    pollfd p{notify_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(notify_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    line.append(buf, static_cast<std::size_t>(n));
  }
  notify_.reset();
  line = line.substr(0, line.find('\n'));
  if (line == "ready") {
    // The loop may already run on its own thread: the watch is set up there.
    loop_.post([this] { watch_exit(); });
    return {};
  }
  stop(1000ms);
  if (line.starts_with("error ")) {
    // The PEP's own words: an audit log that cannot be opened, OPA that does not start...
    return fail(Code::io_error, for_terminal(line.substr(6)), "log " + options_.log.string());
  }
  return fail(Code::io_error, "the sandbox's PEP ended while starting",
              for_terminal(log_tail_of(options_.log), false));
}

Result<void> PepProcess::spawn_one(int notify_fd) {
  SpawnOptions spawn_options;
  spawn_options.argv = options_.argv;
  if (notify_fd >= 0) {
    spawn_options.argv.push_back("--notify-fd");
    spawn_options.argv.push_back(std::to_string(notify_fd));
    spawn_options.keep_fds = {notify_fd};
  }
  spawn_options.stdout_file = options_.log;
  PEXI_TRY_ASSIGN(const pid_t pid, vm::spawn(spawn_options));
  pid_ = pid;
  started_ = std::chrono::steady_clock::now();
  pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (options_.changed) options_.changed(ProcessRef::of(pid), restarts_);
  return {};
}

void PepProcess::watch_exit() {
  if (!pidfd_) {
    // No pidfd_open (old kernel): look for its exit every 200 ms.
    exit_watch_ = loop_.after(200ms, [this] {
      exit_watch_ = 0;
      int status = 0;
      if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) return on_exit(status);
      watch_exit();
    });
    return;
  }
  exit_watch_ = loop_.watch(
      pidfd_.get(), [] { return short{POLLIN}; },
      [this](short) {
        int status = 0;
        if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) on_exit(status);
      });
}

void PepProcess::on_exit(int wait_status) {
  if (pidfd_) loop_.unwatch(exit_watch_);
  exit_watch_ = 0;
  pidfd_.reset();
  pid_ = -1;
  if (options_.changed) options_.changed(std::nullopt, restarts_);
  if (stopped_) return;
  const bool asked = restart_asked_;
  restart_asked_ = false;
  if (!asked && std::chrono::steady_clock::now() - started_ >= kHealthyAfter)
    backoff_ = kFirstBackoff;
  const auto delay = asked ? 0ms : backoff_;
  if (!asked) backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  if (options_.diag) {
    const std::string said = for_terminal(log_tail_of(options_.log), false);
    options_.diag("the sandbox's PEP " + describe_wait_status(wait_status) +
                  (asked ? " (restart asked)" : "") + "; starting it again in " +
                  std::to_string(delay.count()) + " ms" +
                  (said.empty() || asked ? "" : " (it said: " + said + ")"));
  }
  start_after(delay);
}

void PepProcess::start_after(std::chrono::milliseconds delay) {
  pending_ = loop_.after(delay, [this] {
    pending_ = 0;
    if (stopped_) return;
    ++restarts_;
    if (auto ok = spawn_one(-1); !ok) {
      if (options_.diag)
        options_.diag("cannot start the sandbox's PEP: " + ok.error().message +
                      "; trying again in " + std::to_string(backoff_.count()) + " ms");
      const auto retry = backoff_;
      backoff_ = std::min(backoff_ * 2, kMaxBackoff);
      start_after(retry);
      return;
    }
    watch_exit();
  });
}

Result<UniqueFd> PepProcess::connect(bool proxy_front) const {
  if (pid_ <= 0)
    return fail(Code::io_error,
                stopped_ ? "the sandbox's PEP has stopped" : "the sandbox's PEP is restarting");
  auto fd = connect_unix(proxy_front ? options_.proxy_socket : options_.frame_socket, true);
  if (!fd)
    return fail(Code::io_error, "the sandbox's PEP is not accepting (" + fd.error().message + ")");
  return fd;
}

void PepProcess::restart() {
  if (stopped_) return;
  if (pid_ > 0) {
    restart_asked_ = true;
    ::kill(pid_, SIGTERM);
  }
  // Down and waiting out a backoff: start it now.
  if (pid_ <= 0 && pending_ != 0) {
    loop_.cancel(pending_);
    if (options_.diag)
      options_.diag("restart asked while the sandbox's PEP is down; starting it now");
    start_after(0ms);
  }
}

void PepProcess::stop(std::chrono::milliseconds grace) {
  if (stopped_ && pid_ <= 0) return;
  stopped_ = true;
  if (pending_ != 0) loop_.cancel(pending_);
  pending_ = 0;
  if (exit_watch_ != 0) {
    if (pidfd_)
      loop_.unwatch(exit_watch_);
    else
      loop_.cancel(exit_watch_);
    exit_watch_ = 0;
  }
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!wait_for_child(pid_, grace)) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
    pidfd_.reset();
    if (options_.changed) options_.changed(std::nullopt, restarts_);
  }
}

}  // namespace pexi::vm
