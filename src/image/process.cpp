#include "image/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace pexi::image {
namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

bool executable(const std::filesystem::path& p) {
  return ::access(p.c_str(), X_OK) == 0 && std::filesystem::is_regular_file(p);
}

}  // namespace

std::optional<std::filesystem::path> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (executable(name)) return std::filesystem::path(name);
    return std::nullopt;
  }
  std::string dirs;
  if (const char* path = std::getenv("PATH"); path != nullptr) dirs = path;
  dirs += ":/usr/sbin:/sbin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = dirs.substr(start, end - start);
    if (!dir.empty()) {
      const std::filesystem::path candidate = std::filesystem::path(dir) / name;
      if (executable(candidate)) return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

std::string shell_quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

Result<int> run_logged(const Command& command, int log_fd, const std::function<void()>& tick) {
  if (command.argv.empty()) return fail(Code::internal_error, "empty command");
  const auto program = find_program(command.argv[0]);
  if (!program) {
    return fail(Code::io_error, command.argv[0] + " not found (run scripts/install-deps)");
  }
  const std::string stdin_path =
      command.stdin_file ? command.stdin_file->string() : std::string("/dev/null");
  Fd in(::open(stdin_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) {
    return fail(Code::io_error, "cannot open " + stdin_path + ": " + std::strerror(errno));
  }
  Fd out(command.stdout_file
             ? ::open(command.stdout_file->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
             : ::fcntl(log_fd, F_DUPFD_CLOEXEC, 3));
  if (out.get() < 0) {
    return fail(Code::io_error,
                "cannot open the output of " + command.argv[0] + ": " + std::strerror(errno));
  }

  // Everything the child needs is prepared before fork(): it only calls async-signal-safe
  // functions.
  const std::string program_path = program->string();
  std::vector<char*> argv;
  argv.reserve(command.argv.size() + 1);
  for (const auto& arg : command.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return fail(Code::io_error, std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    if (::dup2(in.get(), 0) < 0 || ::dup2(out.get(), 1) < 0 || ::dup2(log_fd, 2) < 0) {
      ::_exit(127);
    }
    ::execv(program_path.c_str(), argv.data());
    ::_exit(127);
  }

  int status = 0;
  // Bounded by the child's lifetime: each pass sleeps 100 ms or reaps it.
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      return fail(Code::io_error, std::string("waitpid failed: ") + std::strerror(errno));
    }
    if (tick) tick();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

}  // namespace pexi::image
