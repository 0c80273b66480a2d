#include "vm/process.hpp"

#include "vm/confine.hpp"

#include "vm/fd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace pexi::vm {

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  // "PID (COMM) S f4 f5 ...": COMM may contain spaces and parentheses, so fields count from
  // the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string_view::npos || close + 2 >= text.size()) return std::nullopt;
  std::string_view rest = text.substr(close + 2);
  ProcStat stat;
  // Field 3 is the state; field 22 the start time: the 20th field after the ')'.
  int field = 3;
  while (!rest.empty()) {
    const auto space = rest.find(' ');
    const std::string_view word = rest.substr(0, space);
    if (field == 3) {
      if (word.size() != 1) return std::nullopt;
      stat.state = word[0];
    }
    if (field == 22) {
      auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), stat.start_time);
      if (ec != std::errc{} || ptr != word.data() + word.size()) return std::nullopt;
      return stat;
    }
    if (space == std::string_view::npos) break;
    rest.remove_prefix(space + 1);
    ++field;
  }
  return std::nullopt;
}

namespace {
std::optional<ProcStat> read_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return parse_proc_stat(text.str());
}
}  // namespace

std::optional<ProcessRef> ProcessRef::of(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto stat = read_stat(pid);
  if (!stat) return std::nullopt;
  return ProcessRef{pid, stat->start_time};
}

bool ProcessRef::alive() const {
  if (pid <= 0) return false;
  auto stat = read_stat(pid);
  return stat && stat->start_time == start_time && stat->state != 'Z' && stat->state != 'X';
}

Result<pid_t> spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return fail(Code::internal_error, "spawn: no program");
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0)
    return fail(Code::io_error, "cannot start " + options.argv[0], errno_text(errno));
  UniqueFd report_read(report[0]), report_write(report[1]);
  std::vector<char*> argv;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string out = options.stdout_file.string();
  const std::string err = options.stderr_file.empty() ? out : options.stderr_file.string();
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return fail(Code::io_error, "cannot start " + options.argv[0], errno_text(errno));
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec (the parent may have threads).
    auto die = [&] {
      const int e = errno;
      [[maybe_unused]] auto n = ::write(report_write.get(), &e, sizeof e);
      ::_exit(127);
    };
    if (options.own_process_group) ::setpgid(0, 0);
    if (options.die_with_parent) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die();
      if (::getppid() != parent) ::_exit(1);  // the parent died before prctl took effect
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD}) ::signal(sig, SIG_DFL);
    const int in_fd = ::open("/dev/null", O_RDONLY);
    const int out_fd = out.empty() ? ::open("/dev/null", O_WRONLY)
                                   : ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    const int err_fd = err.empty() ? ::open("/dev/null", O_WRONLY)
                                   : ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in_fd < 0 || out_fd < 0 || err_fd < 0) die();
    ::dup2(in_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    // Everything but stdio, the kept fds and the report pipe is closed on exec.
    for (int fd = 3; fd < 4096; ++fd) {
      if (fd == report_write.get()) continue;
      if (std::find(options.keep_fds.begin(), options.keep_fds.end(), fd) !=
          options.keep_fds.end()) {
        ::fcntl(fd, F_SETFD, 0);
        continue;
      }
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    // Last, once every file the child itself opens is open: what it execs is confined.
    if (options.landlock_ruleset >= 0 && !enter_ruleset(options.landlock_ruleset)) die();
    ::execvp(argv[0], argv.data());
    die();
  }
  report_write.reset();
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(report_read.get(), &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    ::waitpid(pid, nullptr, 0);
    return fail(Code::io_error, "cannot start " + options.argv[0] + ": " + errno_text(child_errno));
  }
  return pid;
}

std::optional<int> wait_for_child(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void kill_process(const ProcessRef& ref, int signal) {
  if (!ref.alive()) return;
  if (::getpgid(ref.pid) == ref.pid) ::kill(-ref.pid, signal);
  ::kill(ref.pid, signal);
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  return "ended (wait status " + std::to_string(status) + ")";
}

}  // namespace pexi::vm
