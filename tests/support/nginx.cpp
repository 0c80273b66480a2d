#include "support/nginx.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace pexi::test {
namespace {

// A closed socket that sat on a port the kernel picked: free right now. nginx cannot bind port
// 0 and report it, so there is a small race; start_once() retries on a failed bind.
std::uint16_t pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot pick a free port");
  return ntohs(addr.sin_port);
}

bool can_connect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

Nginx::Nginx(std::string_view server_body, const TestCa& ca) {
  const auto leaf = ca.issue_leaf();
  for (int attempt = 0; attempt < 5; ++attempt)
    if (start_once(server_body, leaf)) return;
  throw std::runtime_error("nginx did not start:\n" + error_log());
}

Nginx::~Nginx() { stop(); }

std::string Nginx::url(std::string_view target) const {
  return "https://127.0.0.1:" + std::to_string(port_) + std::string(target);
}

std::string Nginx::error_log() const {
  return read_text(dir_ / "error.log") + read_text(dir_ / "stderr.log");
}

bool Nginx::start_once(std::string_view server_body, const TestCa::Leaf& leaf) {
  port_ = pick_free_port();
  const auto dir = dir_.path().string();
  std::ostringstream conf;
  conf << "daemon off;\n"
       << "master_process off;\n"
       << "pid " << dir << "/nginx.pid;\n"
       << "error_log " << dir << "/error.log info;\n"
       << "events { worker_connections 256; }\n"
       << "http {\n"
       << "  access_log off;\n"
       << "  client_body_temp_path " << dir << "/client_body;\n"
       << "  proxy_temp_path " << dir << "/proxy;\n"
       << "  fastcgi_temp_path " << dir << "/fastcgi;\n"
       << "  uwsgi_temp_path " << dir << "/uwsgi;\n"
       << "  scgi_temp_path " << dir << "/scgi;\n"
       << "  server {\n"
       << "    listen 127.0.0.1:" << port_ << " ssl http2;\n"
       << "    ssl_certificate " << leaf.cert_path.string() << ";\n"
       << "    ssl_certificate_key " << leaf.key_path.string() << ";\n"
       << "    " << server_body << "\n"
       << "  }\n"
       << "}\n";
  write_file(dir_ / "nginx.conf", conf.str());

  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  const std::string binary(kBinary);
  const std::string conf_path = dir + "/nginx.conf";
  const std::string log_path = dir + "/error.log";
  const char* argv[] = {binary.c_str(),    "-p", dir.c_str(),      "-c",
                        conf_path.c_str(), "-e", log_path.c_str(), nullptr};
  const int out =
      ::open((dir + "/stderr.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (out < 0) throw std::runtime_error("cannot create nginx stderr log");
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::execv(argv[0], const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(out);
  pid_ = pid;

  // Up to 10 s for nginx to listen; it normally takes a few milliseconds.
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: port taken or bad config
      pid_ = -1;
      return false;
    }
    if (can_connect(port_)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop();
  throw std::runtime_error("nginx did not listen within 10 s:\n" + error_log());
}

void Nginx::stop() noexcept {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {  // up to 5 s for a graceful exit
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

}  // namespace pexi::test
