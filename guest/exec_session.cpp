#include "exec_session.hpp"

#include "log.hpp"
#include "mux/exec.hpp"
#include "userdb.hpp"
#include "vm/fd.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <type_traits>
#include <variant>

extern char** environ;

namespace pexi::guest {
namespace {

namespace exec = mux::exec;
using vm::UniqueFd;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kOutputLimit = 1u << 20;  // encoded messages not yet written to sock
constexpr std::size_t kStdinLimit = 1u << 20;   // stdin bytes not yet written to the command
constexpr std::size_t kReadChunk = 256 * 1024;
// Bigger pipes mean fewer context switches per megabyte, which is what costs under TCG.
constexpr int kPipeSize = 1 << 20;
constexpr auto kOutputGrace = std::chrono::milliseconds(200);
constexpr auto kKillGrace = std::chrono::seconds(2);

struct Spawned {
  pid_t pid = -1;
  UniqueFd stdin_fd;   // pipe write end, or the pty master (dup)
  UniqueFd stdout_fd;  // pipe read end, or the pty master
  UniqueFd stderr_fd;  // pipe read end (none with a pty)
};

struct StartFailure {
  std::uint8_t status = 1;
  std::string message;
};

void reset_signals() {
  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::signal(sig, SIG_DFL);
  }
}

bool write_blocking(int fd, std::string_view data) {
  vm::set_nonblocking(fd, false);
  return vm::write_all(fd, data);
}

void send_now(int sock, const exec::Message& message) {
  std::string out;
  exec::encode(message, out);
  write_blocking(sock, out);
}

[[noreturn]] void finish_and_exit(int sock, std::string& out, const exec::Exit& exit_message) {
  exec::encode(exit_message, out);
  write_blocking(sock, out);
  ::shutdown(sock, SHUT_WR);
  ::_exit(0);
}

// Reads the REQUEST (the host sends it first). nullopt after logging when there is none.
std::optional<exec::Request> read_request(int sock, exec::Decoder& decoder, std::string& rest) {
  char buffer[64 * 1024];
  for (;;) {
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, 30'000) <= 0) return std::nullopt;
    const ssize_t n = ::read(sock, buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return std::nullopt;
    std::string_view input(buffer, static_cast<std::size_t>(n));
    auto message = decoder.next(input);
    if (!message) {
      exec::Exit bad{exec::ExitKind::not_started, 1, message.error().message.substr(0, 1000)};
      send_now(sock, bad);
      return std::nullopt;
    }
    if (*message) {
      rest.assign(input);
      return std::get<exec::Request>(std::move(**message));
    }
  }
}

std::optional<User> resolve_user(bool as_root) {
  auto passwd = read_text_file("/etc/passwd");
  auto group = read_text_file("/etc/group");
  if (!passwd || !group) return std::nullopt;
  return find_user(*passwd, *group, as_root ? "root" : "sandbox");
}

// Starts the command; on failure the reason and the status a shell would give.
std::variant<Spawned, StartFailure> spawn(const exec::Request& request, const User& user,
                                          const std::vector<std::string>& env,
                                          const std::string& cwd) {
  Spawned out;
  UniqueFd child_in, child_out, child_err, pty_master;
  std::string slave_name;
  if (request.pty) {
    pty_master.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    char name[128];
    if (!pty_master || ::grantpt(pty_master.get()) != 0 || ::unlockpt(pty_master.get()) != 0 ||
        ::ptsname_r(pty_master.get(), name, sizeof name) != 0)
      return StartFailure{1, std::string("cannot allocate a pty: ") + std::strerror(errno)};
    slave_name = name;
    winsize ws{};
    ws.ws_row = request.rows;
    ws.ws_col = request.cols;
    ::ioctl(pty_master.get(), TIOCSWINSZ, &ws);
  } else {
    int in[2], o[2], e[2];
    if (request.stdin_closed) {
      child_in.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    } else {
      if (::pipe2(in, O_CLOEXEC) != 0)
        return StartFailure{1, "pipe: " + std::string(std::strerror(errno))};
      child_in.reset(in[0]);
      out.stdin_fd.reset(in[1]);
    }
    if (::pipe2(o, O_CLOEXEC) != 0 || ::pipe2(e, O_CLOEXEC) != 0)
      return StartFailure{1, "pipe: " + std::string(std::strerror(errno))};
    child_out.reset(o[1]);
    out.stdout_fd.reset(o[0]);
    child_err.reset(e[1]);
    out.stderr_fd.reset(e[0]);
  }
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0)
    return StartFailure{1, "pipe: " + std::string(std::strerror(errno))};
  UniqueFd report_read(report[0]), report_write(report[1]);

  std::vector<char*> argv;
  for (const auto& a : request.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) return StartFailure{1, "fork: " + std::string(std::strerror(errno))};
  if (pid == 0) {
    // The child: nothing but async-signal-safe calls until exec.
    auto die = [&](int stage) {
      int info[2] = {stage, errno};
      [[maybe_unused]] auto n = ::write(report_write.get(), info, sizeof info);
      ::_exit(127);
    };
    reset_signals();
    ::setsid();
    if (request.pty) {
      const int slave = ::open(slave_name.c_str(), O_RDWR);
      if (slave < 0) die(1);
      ::ioctl(slave, TIOCSCTTY, 0);
      ::dup2(slave, 0);
      ::dup2(slave, 1);
      ::dup2(slave, 2);
      if (slave > 2) ::close(slave);
    } else {
      ::dup2(child_in.get(), 0);
      ::dup2(child_out.get(), 1);
      ::dup2(child_err.get(), 2);
    }
    if (user.uid != 0 || user.gid != 0) {
      if (::setgroups(user.groups.size(), user.groups.data()) != 0) die(2);
      if (::setgid(user.gid) != 0) die(2);
      if (::setuid(user.uid) != 0) die(2);
    }
    if (::chdir(cwd.c_str()) != 0) die(3);
    environ = envp.data();
    ::execvp(argv[0], argv.data());
    die(4);
  }
  report_write.reset();
  int info[2] = {0, 0};
  ssize_t n;
  do {
    n = ::read(report_read.get(), info, sizeof info);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof info)) {
    ::waitpid(pid, nullptr, 0);
    const std::string what = std::strerror(info[1]);
    switch (info[0]) {
      case 1:
        return StartFailure{1, "cannot open the pty: " + what};
      case 2:
        return StartFailure{1, "cannot switch to user " + user.name + ": " + what};
      case 3:
        return StartFailure{1, "cannot change directory to " + cwd + ": " + what};
      default:
        if (info[1] == ENOENT) return StartFailure{127, request.argv[0] + ": command not found"};
        return StartFailure{126, request.argv[0] + ": " + what};
    }
  }
  out.pid = pid;
  if (request.pty) {
    out.stdin_fd.reset(::dup(pty_master.get()));
    out.stdout_fd = std::move(pty_master);
  }
  return out;
}

void kill_group(pid_t pid, int sig) {
  if (::kill(-pid, sig) != 0) ::kill(pid, sig);
}

}  // namespace

void run_exec_session(int sock, const ExecContext& context) {
  reset_signals();
  ::signal(SIGPIPE, SIG_IGN);
  exec::Decoder decoder(mux::Direction::to_guest);
  std::string rest;
  auto request = read_request(sock, decoder, rest);
  if (!request) ::_exit(1);

  std::string out;  // encoded messages to the host
  auto user = resolve_user(context.as_root);
  if (!user) {
    finish_and_exit(
        sock, out,
        exec::Exit{exec::ExitKind::not_started, 1,
                   context.as_root ? "no root user" : "no user 'sandbox' in the guest"});
  }
  const auto env = command_environment(*user, context.system_env, request->env, request->clear_env,
                                       request->pty);
  std::string cwd = request->cwd;
  if (cwd.empty()) {
    struct stat st {};
    cwd = ::stat(context.default_cwd.c_str(), &st) == 0 ? context.default_cwd : user->home;
  }
  auto spawned = spawn(*request, *user, env, cwd);
  if (auto* failure = std::get_if<StartFailure>(&spawned)) {
    finish_and_exit(sock, out,
                    exec::Exit{exec::ExitKind::not_started, failure->status, failure->message});
  }
  Spawned child = std::move(std::get<Spawned>(spawned));
  exec::encode(exec::Started{static_cast<std::uint32_t>(child.pid)}, out);
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child.pid, 0)));

  vm::set_nonblocking(sock);
  for (const auto* fd : {&child.stdin_fd, &child.stdout_fd, &child.stderr_fd}) {
    if (!*fd) continue;
    vm::set_nonblocking(fd->get());
    if (!request->pty) ::fcntl(fd->get(), F_SETPIPE_SZ, kPipeSize);
  }

  std::string stdin_buffer;
  bool stdin_eof = false;     // STDIN_EOF received
  bool sock_eof = false;      // the host is gone (or finished) before EXIT
  std::optional<int> status;  // the command's wait status
  Clock::time_point exited_at{};
  const char veof = [&] {
    termios t{};
    return child.stdout_fd && request->pty && ::tcgetattr(child.stdout_fd.get(), &t) == 0
               ? static_cast<char>(t.c_cc[VEOF])
               : '\x04';
  }();

  auto handle_input = [&](std::string_view input) -> bool {
    for (;;) {
      auto message = decoder.next(input);
      if (!message) {
        log(message.error().message);
        return false;
      }
      if (!*message) return true;
      std::visit(
          [&](auto& m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, exec::StdinData>) {
              stdin_buffer += m.bytes;
            } else if constexpr (std::is_same_v<T, exec::StdinEof>) {
              stdin_eof = true;
              if (request->pty) stdin_buffer.push_back(veof);
            } else if constexpr (std::is_same_v<T, exec::Resize>) {
              winsize ws{};
              ws.ws_row = m.rows;
              ws.ws_col = m.cols;
              if (child.stdout_fd) ::ioctl(child.stdout_fd.get(), TIOCSWINSZ, &ws);
            } else if constexpr (std::is_same_v<T, exec::Signal>) {
              kill_group(child.pid, m.number);
            }
          },
          **message);
    }
  };
  if (!rest.empty() && !handle_input(rest)) sock_eof = true;

  std::string chunk(kReadChunk, '\0');
  auto read_output = [&](UniqueFd& fd, exec::MessageType type) {
    const ssize_t n = ::read(fd.get(), chunk.data(), chunk.size());
    if (n > 0) {
      exec::encode_data(type, std::string_view(chunk.data(), static_cast<std::size_t>(n)), out);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      fd.reset();  // EOF; with a pty, EIO once every holder of the terminal closed it
    }
  };

  std::string buffer(kReadChunk, '\0');
  for (;;) {
    const bool outputs_done = !child.stdout_fd && !child.stderr_fd;
    if (status && (outputs_done || Clock::now() - exited_at > kOutputGrace)) break;
    if (sock_eof) {
      // Cancelled by the host: hang up on the command, then make sure.
      kill_group(child.pid, SIGHUP);
      if (!status) {
        pollfd p{pidfd.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kKillGrace).count())) <= 0)
          kill_group(child.pid, SIGKILL);
        ::waitpid(child.pid, nullptr, 0);
      }
      ::_exit(0);
    }
    std::vector<pollfd> fds;
    fds.push_back({sock,
                   static_cast<short>((stdin_buffer.size() < kStdinLimit ? POLLIN : 0) |
                                      (out.empty() ? 0 : POLLOUT)),
                   0});
    const bool room = out.size() < kOutputLimit;
    fds.push_back({child.stdout_fd && room ? child.stdout_fd.get() : -1, POLLIN, 0});
    fds.push_back({child.stderr_fd && room ? child.stderr_fd.get() : -1, POLLIN, 0});
    fds.push_back(
        {child.stdin_fd && !stdin_buffer.empty() ? child.stdin_fd.get() : -1, POLLOUT, 0});
    fds.push_back({!status && pidfd ? pidfd.get() : -1, POLLIN, 0});
    int timeout = 1000;
    if (status) timeout = 20;
    if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) break;

    if ((fds[0].revents & POLLOUT) != 0) {
      const ssize_t n = ::send(sock, out.data(), out.size(), MSG_NOSIGNAL);
      if (n > 0) out.erase(0, static_cast<std::size_t>(n));
      if (n < 0 && errno != EAGAIN && errno != EINTR) sock_eof = true;
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t n = ::read(sock, buffer.data(), buffer.size());
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        sock_eof = true;
      } else if (n > 0 &&
                 !handle_input(std::string_view(buffer.data(), static_cast<std::size_t>(n)))) {
        sock_eof = true;  // a protocol error from the host: treat like a cancel
      }
    }
    if (fds[1].revents != 0) read_output(child.stdout_fd, exec::MessageType::stdout_data);
    if (fds[2].revents != 0) read_output(child.stderr_fd, exec::MessageType::stderr_data);
    if (fds[3].revents != 0) {
      const ssize_t n = ::write(child.stdin_fd.get(), stdin_buffer.data(), stdin_buffer.size());
      if (n > 0) {
        stdin_buffer.erase(0, static_cast<std::size_t>(n));
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        stdin_buffer.clear();  // the command closed its stdin
        if (!request->pty) child.stdin_fd.reset();
      }
    }
    if (!request->pty && stdin_eof && stdin_buffer.empty() && child.stdin_fd)
      child.stdin_fd.reset();
    if (!status && (fds[4].revents != 0 || !pidfd)) {
      int wstatus = 0;
      const pid_t r = ::waitpid(child.pid, &wstatus, pidfd ? 0 : WNOHANG);
      if (r == child.pid) {
        status = wstatus;
        exited_at = Clock::now();
      }
    }
  }
  if (!status) {  // poll failed: wait for the command the plain way
    int wstatus = 0;
    ::waitpid(child.pid, &wstatus, 0);
    status = wstatus;
  }
  // What is still buffered in the pipes goes out before EXIT.
  for (auto* p : {&child.stdout_fd, &child.stderr_fd}) {
    for (int i = 0; i < 64 && *p; ++i)
      read_output(*p, p == &child.stdout_fd ? exec::MessageType::stdout_data
                                            : exec::MessageType::stderr_data);
  }
  exec::Exit exit_message;
  if (WIFSIGNALED(*status)) {
    exit_message.kind = exec::ExitKind::signaled;
    exit_message.value = static_cast<std::uint8_t>(WTERMSIG(*status));
  } else {
    exit_message.kind = exec::ExitKind::exited;
    exit_message.value = static_cast<std::uint8_t>(WEXITSTATUS(*status));
  }
  finish_and_exit(sock, out, exit_message);
}

}  // namespace pexi::guest
